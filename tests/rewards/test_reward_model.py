"""BlipRewardModel: heads, freezing, forward from cached features, save/load, bases."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from rewards.reward_model import BlipRewardModel, RewardModelConfig
from rewards.tiny import save_tiny_blip


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    gradient = Image.linear_gradient("L").resize((80, 60)).convert("RGB")
    return [gradient, gradient.rotate(90), Image.new("RGB", (50, 70), (200, 30, 30))]


def inputs(model: BlipRewardModel, images: list[Image.Image]) -> dict:
    ids, mask = model.tokenize(["make it brighter", "blur the background behind the cat"])
    pixels = model.preprocess(images)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "edited": pixels,
        "source": pixels[:2],
        "group": torch.tensor([0, 0, 1]),
    }


@pytest.mark.parametrize("heads", ["coarse", "fine", "cbm"])
def test_heads_give_an_overall_score_and_aspects_on_the_zero_to_five_scale(
    heads: str, images: list[Image.Image]
) -> None:
    model = BlipRewardModel.from_base("tiny", heads=heads).eval()
    output = model(**inputs(model, images))
    assert output.overall.shape == (3,)
    if heads == "coarse":
        assert output.aspects is None and model.aspects == []
        return
    assert output.aspects.shape == (3, 3)
    assert bool(((output.aspects >= 0) & (output.aspects <= 5)).all())
    if heads == "cbm":  # the overall score is the learned aggregate of the aspects
        expected = model.aggregate(output.aspects).squeeze(-1)
        assert torch.allclose(output.overall, expected)


def test_aspects_are_configurable() -> None:
    model = BlipRewardModel.from_base("tiny", aspects=["realism", "fidelity"])
    assert model.aspects == ["realism", "fidelity"] and set(model.aspect_heads) == set(
        model.aspects
    )


def test_lower_layers_are_frozen_by_fraction() -> None:
    model = BlipRewardModel.from_base("tiny", freeze_fraction=0.5)
    assert model.n_frozen_vision_layers == 2 and model.n_frozen_text_layers == 2
    assert not model.vision.embeddings.patch_embedding.weight.requires_grad
    assert not any(p.requires_grad for p in model.vision.encoder.layers[1].parameters())
    assert all(p.requires_grad for p in model.vision.encoder.layers[2].parameters())
    assert not model.text.embeddings.word_embeddings.weight.requires_grad
    assert all(p.requires_grad for p in model.text.encoder.layer[2].parameters())
    assert all(p.requires_grad for p in model.overall_head.parameters())


def test_frozen_parts_stay_in_eval_mode_while_training() -> None:
    model = BlipRewardModel.from_base("tiny").train()
    assert not model.vision.encoder.layers[0].training
    assert model.vision.encoder.layers[-1].training and model.overall_head.training


def test_nothing_is_frozen_at_fraction_zero() -> None:
    model = BlipRewardModel.from_base("tiny", freeze_fraction=0.0)
    assert all(p.requires_grad for p in model.parameters())
    assert not model.has_frozen_vision
    with pytest.raises(ValueError, match="nothing is frozen"):
        model.encode_frozen(torch.zeros(1, 3, 64, 64))


@pytest.mark.parametrize("fusion", ["late", "diff"])
def test_cached_frozen_features_give_the_same_scores_as_pixels(
    fusion: str, images: list[Image.Image]
) -> None:
    model = BlipRewardModel.from_base("tiny", fusion=fusion).eval()
    given = inputs(model, images)
    from_pixels = model(**given)
    given["edited"] = model.encode_frozen(given["edited"])
    given["source"] = model.encode_frozen(given["source"])
    from_features = model(**given, from_features=True)
    assert torch.allclose(from_pixels.overall, from_features.overall, atol=1e-5)
    assert torch.allclose(from_pixels.aspects, from_features.aspects, atol=1e-5)


def test_a_shared_source_scores_like_one_source_per_edit(images: list[Image.Image]) -> None:
    model = BlipRewardModel.from_base("tiny").eval()
    grouped = inputs(model, images)
    expanded = dict(grouped)
    expanded["source"] = grouped["source"][grouped["group"]]
    expanded["input_ids"] = grouped["input_ids"][grouped["group"]]
    expanded["attention_mask"] = grouped["attention_mask"][grouped["group"]]
    expanded["group"] = None
    assert torch.allclose(model(**grouped).overall, model(**expanded).overall, atol=1e-5)


def test_tiny_models_are_labelled_random_init() -> None:
    model = BlipRewardModel.from_base("tiny")
    assert model.config.base == "tiny" and model.is_random_init
    assert "tiny random-init model" in model.describe()
    assert model.config_dict()["is_random_init"] is True


def test_it_refuses_unknown_options() -> None:
    with pytest.raises(ValueError, match="heads"):
        RewardModelConfig(heads="medium")
    with pytest.raises(ValueError, match="freeze_fraction"):
        RewardModelConfig(freeze_fraction=1.5)


def test_a_saved_version_loads_without_its_base(tmp_path: Path, images: list[Image.Image]) -> None:
    model = BlipRewardModel.from_base("tiny", heads="cbm", seed=2).eval()
    with torch.no_grad():  # make the heads differ from a fresh init
        model.aggregate.weight.add_(0.5)
    model.save(tmp_path / "v1")
    loaded = BlipRewardModel.load(tmp_path / "v1")
    assert loaded.config_dict() == model.config_dict() and loaded.is_random_init
    given = inputs(model, images)
    assert torch.allclose(model(**given).overall, loaded(**given).overall, atol=1e-6)
    assert loaded.frozen_fingerprint == model.frozen_fingerprint


def test_a_blip_directory_loads_through_the_real_checkpoint_path(
    tmp_path: Path, images: list[Image.Image]
) -> None:
    # save_pretrained writes what a real blip-itm checkpoint holds; base=PATH reads it with
    # BlipForImageTextRetrieval / AutoTokenizer / BlipImageProcessorPil.from_pretrained.
    directory = save_tiny_blip(tmp_path / "blip-tiny", seed=0)
    from_directory = BlipRewardModel.from_base(directory).eval()
    in_memory = BlipRewardModel.from_base("tiny", seed=0).eval()
    assert from_directory.config.base == str(directory) and not from_directory.is_random_init
    assert from_directory.frozen_fingerprint == in_memory.frozen_fingerprint
    given = inputs(in_memory, images)
    assert torch.allclose(from_directory(**given).overall, in_memory(**given).overall, atol=1e-6)
    from_directory.save(tmp_path / "version")
    assert BlipRewardModel.load(tmp_path / "version").config.base == str(directory)


def test_a_missing_base_directory_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="base='tiny'"):
        BlipRewardModel.from_base(tmp_path / "nowhere")
