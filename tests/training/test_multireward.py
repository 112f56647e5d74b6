"""The multi-reward condition: encoding, installing it on a UNet, baking (5, 5, 5) in."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel

from training.multireward import (
    MultiRewardCondition,
    aspect_scores,
    bake_reward_condition,
    condition_from_unet,
    enable_multireward,
)
from training.tiny import tiny_unet


def seeded_unet() -> UNet2DConditionModel:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return tiny_unet().eval()


def unet_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(2, 8, 16, 16, generator=generator), torch.randn(
        2, 32, 32, generator=generator
    )


def predict(unet: UNet2DConditionModel, class_labels: torch.Tensor | None = None) -> torch.Tensor:
    sample, text = unet_inputs()
    with torch.no_grad():
        return unet(sample, 500, encoder_hidden_states=text, class_labels=class_labels).sample


def test_each_score_gets_its_own_sinusoidal_block() -> None:
    condition = MultiRewardCondition(features_per_score=8)
    features = condition(torch.tensor([[5.0, 5.0, 5.0], [5.0, 5.0, 4.9], [0.0, 0.0, 0.0]]))
    assert features.shape == (3, 24)
    # Changing the quality score by a tenth moves only the quality block.
    assert torch.equal(features[0, :16], features[1, :16])
    assert not torch.allclose(features[0, 16:], features[1, 16:], atol=1e-3)
    # Score 0 encodes as sin 0 = 0 and cos 0 = 1.
    assert torch.equal(features[2], torch.tensor([0.0] * 4 + [1.0] * 4).repeat(3))


def test_the_condition_refuses_a_wrong_shape_and_odd_widths() -> None:
    with pytest.raises(ValueError, match="scores"):
        MultiRewardCondition()(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="features_per_score"):
        MultiRewardCondition(features_per_score=7)


@pytest.mark.parametrize(
    ("aspects", "message"),
    [
        ({"following": 5, "preserving": 5}, "missing"),
        ({"following": 6, "preserving": 1, "quality": 1}, "within 0..5"),
    ],
)
def test_aspect_scores_must_be_complete_and_on_the_scale(aspects: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        aspect_scores(aspects)


def test_a_freshly_enabled_condition_leaves_the_editor_unchanged(tmp_path: Path) -> None:
    # given a UNet and its output before the condition exists
    unet = seeded_unet()
    before = predict(unet)
    condition = MultiRewardCondition(features_per_score=8)

    # when the multi-reward MLP is installed (zero output layer)
    enable_multireward(unet, condition)
    scores = torch.tensor([[1.0, 2.0, 3.0], [5.0, 0.0, 5.0]])

    # then any scores give the old output, and the config round-trips through diffusers
    assert torch.allclose(predict(unet, condition(scores)), before, atol=1e-6)
    unet.save_pretrained(tmp_path)
    reloaded = UNet2DConditionModel.from_pretrained(tmp_path)
    assert reloaded.config.class_embed_type == "projection"
    assert condition_from_unet(reloaded).out_features == 24


def test_baking_gives_exactly_the_conditioned_output_without_class_labels() -> None:
    # given a multi-reward UNet whose MLP has learned something (random weights here)
    unet = seeded_unet()
    condition = MultiRewardCondition(features_per_score=8)
    enable_multireward(unet, condition)
    with torch.no_grad():
        for parameter in unet.class_embedding.parameters():
            parameter.normal_(0, 0.5)
    best = condition(torch.tensor([[5.0, 5.0, 5.0]] * 2))
    worst = condition(torch.tensor([[0.0, 0.0, 0.0]] * 2))

    # when (5, 5, 5) is baked into the time embedding
    baked = bake_reward_condition(unet, (5.0, 5.0, 5.0))

    # then the plain UNet matches the conditioned one at (5, 5, 5) and not at (0, 0, 0)
    assert baked.class_embedding is None and baked.config.class_embed_type is None
    assert torch.allclose(predict(baked), predict(unet, best), atol=1e-5)
    assert not torch.allclose(predict(baked), predict(unet, worst), atol=1e-3)
    assert unet.class_embedding is not None  # the original is untouched


def test_baking_refuses_a_unet_without_the_condition() -> None:
    with pytest.raises(ValueError, match="multi-reward"):
        bake_reward_condition(seeded_unet())
