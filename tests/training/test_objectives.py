"""Each objective on the tiny editor: what it computes, and that optimising it lowers it."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from training.multireward import MultiRewardCondition, enable_multireward
from training.objectives import (
    NO_DROPOUT,
    ConditioningDropout,
    EditBatch,
    PreferenceBatch,
    apply_conditioning_dropout,
    conditional_reward_loss,
    denoising_errors,
    dpo_loss,
    multireward_loss,
    quality_suffix,
    reward_levels,
    reward_weights,
    supervised_loss,
    weighted_reward_loss,
)
from training.pix2pix import EditorParts
from training.tiny import build_tiny_editor

Objective = Callable[[], tuple[torch.Tensor, dict[str, float]]]
FIXED_SEED = 1234


@pytest.fixture
def parts() -> EditorParts:
    return build_tiny_editor(seed=0)


def smooth_images(seed: int, count: int = 4) -> torch.Tensor:
    """Photo-like test images: random 4x4 colour fields upsampled to 32x32, in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 4, 4, generator=generator) * 2 - 1
    return F.interpolate(coarse, size=32, mode="bilinear")


@pytest.fixture
def edit_batch() -> EditBatch:
    source = smooth_images(0)
    return EditBatch(
        source=source,
        edited=(source + 0.5).clamp(-1, 1),  # "make it brighter"
        instructions=["make it brighter"] * 4,
        rewards=torch.tensor([0.0, 1.0, 2.0, 3.0]),
        aspects=torch.tensor([[5.0, 4.0, 3.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0, 5, 5]]),
        quality_levels=[1, 2, 3, 5],
    )


@pytest.fixture
def preference_batch(edit_batch: EditBatch) -> PreferenceBatch:
    return PreferenceBatch(
        source=edit_batch.source,
        chosen=edit_batch.edited,
        rejected=(edit_batch.source - 0.5).clamp(-1, 1),
        instructions=edit_batch.instructions,
        weights=torch.ones(4),
    )


def seeded(objective: Objective, seed: int = FIXED_SEED) -> tuple[torch.Tensor, dict]:
    """The objective with its noise, timesteps and dropout draws fixed by `seed`."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return objective()


def optimise_on_fixed_batch(
    objective: Objective, unet: torch.nn.Module, steps: int = 6, lr: float = 1e-3
) -> list[float]:
    """Adam steps on one batch with the same noise every step: a deterministic function of
    the weights, so a correct gradient must bring it down."""
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss, _ = seeded(objective)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def assert_went_down(losses: list[float]) -> None:
    assert sum(losses[-3:]) / 3 < 0.8 * losses[0], losses


# --- conditioning dropout ------------------------------------------------------------------


def test_dropout_drops_text_image_or_both_in_separate_five_percent_shares() -> None:
    text, latents, null = torch.ones(20_000, 1, 1), torch.ones(20_000, 1, 1, 1), torch.zeros(1, 1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        dropped_text, dropped_latents = apply_conditioning_dropout(
            text, latents, null, ConditioningDropout()
        )
    no_text = dropped_text.flatten() == 0
    no_image = dropped_latents.flatten() == 0
    for share in (no_text & ~no_image, ~no_text & no_image, no_text & no_image):
        assert share.float().mean().item() == pytest.approx(0.05, abs=0.006)


def test_dropout_replaces_text_by_the_empty_prompt_and_zeroes_the_source() -> None:
    text, latents, null = torch.ones(3, 2, 4), torch.ones(3, 4, 2, 2), torch.full((1, 2, 4), 7.0)
    dropped_text, dropped_latents = apply_conditioning_dropout(
        text, latents, null, ConditioningDropout(text_only=0.0, image_only=0.0, both=1.0)
    )
    assert torch.equal(dropped_text, torch.full((3, 2, 4), 7.0))
    assert torch.count_nonzero(dropped_latents) == 0
    kept_text, kept_latents = apply_conditioning_dropout(text, latents, null, NO_DROPOUT)
    assert torch.equal(kept_text, text) and torch.equal(kept_latents, latents)


# --- supervised -------------------------------------------------------------------------------


def test_supervised_loss_goes_down_on_a_fixed_batch(parts, edit_batch) -> None:
    losses = optimise_on_fixed_batch(
        lambda: supervised_loss(parts, parts.unet, edit_batch), parts.unet
    )
    assert_went_down(losses)


def test_supervised_loss_goes_down_with_fresh_noise_each_step(parts, edit_batch) -> None:
    optimizer = torch.optim.AdamW(parts.unet.parameters(), lr=1e-3)
    torch.manual_seed(0)
    losses = []
    for _ in range(8):
        loss, extras = supervised_loss(parts, parts.unet, edit_batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert_went_down(losses)
    assert extras["mse"] == pytest.approx(losses[-1])


def test_v_prediction_targets_the_velocity(parts, edit_batch) -> None:
    epsilon, _ = seeded(lambda: supervised_loss(parts, parts.unet, edit_batch))
    parts.noise_scheduler.register_to_config(prediction_type="v_prediction")
    velocity, _ = seeded(lambda: supervised_loss(parts, parts.unet, edit_batch))
    assert not torch.isclose(epsilon, velocity)
    parts.noise_scheduler.register_to_config(prediction_type="sample")
    with pytest.raises(ValueError, match="prediction_type"):
        supervised_loss(parts, parts.unet, edit_batch)


# --- HIVE weighted reward ------------------------------------------------------------------


def test_reward_weights_average_one_grow_with_reward_and_are_clipped() -> None:
    rewards = torch.tensor([0.0, 1.0, 2.0, 3.0])
    weights = reward_weights(rewards, eta=2.0, weight_clip=100.0)
    assert weights.mean().item() == pytest.approx(1.0)
    assert torch.all(weights[1:] > weights[:-1])
    assert weights[3] / weights[2] == pytest.approx(torch.exp(torch.tensor(0.5)).item())
    assert reward_weights(rewards, eta=0.1, weight_clip=2.5).max().item() == 2.5
    # A huge η is plain supervised training: every weight 1.
    assert torch.allclose(reward_weights(rewards, 1e9, 5.0), torch.ones(4))


def test_weighted_loss_is_the_weighted_mean_of_per_example_errors(parts, edit_batch) -> None:
    errors = seeded(
        lambda: (denoising_errors(parts, parts.unet, edit_batch, ConditioningDropout()), {})
    )[0]
    loss, extras = seeded(
        lambda: weighted_reward_loss(parts, parts.unet, edit_batch, eta=1.0, weight_clip=5.0)
    )
    expected = (reward_weights(edit_batch.rewards, 1.0, 5.0) * errors).mean()
    assert torch.isclose(loss, expected)
    assert extras["weight_max"] > 1 > extras["weight_min"]


def test_weighted_loss_with_equal_rewards_is_the_supervised_loss(parts, edit_batch) -> None:
    edit_batch.rewards = torch.full((4,), 2.0)
    weighted, _ = seeded(lambda: weighted_reward_loss(parts, parts.unet, edit_batch))
    supervised, _ = seeded(lambda: supervised_loss(parts, parts.unet, edit_batch))
    assert torch.isclose(weighted, supervised)


def test_weighted_loss_goes_down_on_a_fixed_batch(parts, edit_batch) -> None:
    losses = optimise_on_fixed_batch(
        lambda: weighted_reward_loss(parts, parts.unet, edit_batch), parts.unet
    )
    assert_went_down(losses)


# --- HIVE conditional reward ---------------------------------------------------------------


def test_quality_suffix_spells_the_level() -> None:
    assert quality_suffix(5) == ", image quality is five out of five"
    assert quality_suffix(1) == ", image quality is one out of five"
    with pytest.raises(ValueError, match="level"):
        quality_suffix(0)


@pytest.mark.parametrize(
    ("rewards", "levels"),
    [
        ([0.0, 1.0, 2.0, 3.0, 4.0], [1, 2, 3, 4, 5]),
        ([4.0, 3.0, 2.0, 1.0, 0.0], [5, 4, 3, 2, 1]),
        (list(range(10)), [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]),
        ([2.5, 2.5, 2.5], [5, 5, 5]),  # no spread: all "five", like sampling
        ([], []),
    ],
)
def test_reward_levels_are_quantile_bins(rewards: list[float], levels: list[int]) -> None:
    assert reward_levels([float(r) for r in rewards]) == levels


def test_conditional_loss_trains_on_the_instruction_with_its_quality_suffix(
    parts, edit_batch
) -> None:
    conditional, extras = seeded(lambda: conditional_reward_loss(parts, parts.unet, edit_batch))
    suffixed = copy.copy(edit_batch)
    suffixed.instructions = [
        text + quality_suffix(level)
        for text, level in zip(edit_batch.instructions, edit_batch.quality_levels, strict=True)
    ]
    expected, _ = seeded(lambda: supervised_loss(parts, parts.unet, suffixed))
    plain, _ = seeded(lambda: supervised_loss(parts, parts.unet, edit_batch))
    assert torch.isclose(conditional, expected)
    assert not torch.isclose(conditional, plain)
    assert extras["mean_level"] == 2.75


def test_conditional_loss_goes_down_on_a_fixed_batch(parts, edit_batch) -> None:
    losses = optimise_on_fixed_batch(
        lambda: conditional_reward_loss(parts, parts.unet, edit_batch), parts.unet
    )
    assert_went_down(losses)


# --- multi-reward ---------------------------------------------------------------------------


def test_multireward_loss_goes_down_and_trains_the_condition_mlp(parts, edit_batch) -> None:
    condition = MultiRewardCondition(features_per_score=8)
    enable_multireward(parts.unet, condition)
    mlp_before = copy.deepcopy(parts.unet.class_embedding.state_dict())
    losses = optimise_on_fixed_batch(
        lambda: multireward_loss(parts, parts.unet, edit_batch, condition), parts.unet
    )
    assert_went_down(losses)
    changed = [
        not torch.equal(tensor, parts.unet.class_embedding.state_dict()[name])
        for name, tensor in mlp_before.items()
    ]
    assert all(changed)


def test_multireward_loss_needs_scores(parts, edit_batch) -> None:
    edit_batch.aspects = None
    with pytest.raises(ValueError, match="aspect"):
        multireward_loss(parts, parts.unet, edit_batch, MultiRewardCondition())


# --- Diffusion-DPO ------------------------------------------------------------------------------


def test_dpo_starts_at_log_two_with_no_margin(parts, preference_batch) -> None:
    reference = copy.deepcopy(parts.unet)
    loss, extras = dpo_loss(parts, parts.unet, reference, preference_batch)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-6)
    assert extras["reward_margin"] == 0 and extras["implicit_accuracy"] == 0


def test_dpo_learns_to_prefer_the_chosen_edit(parts, preference_batch) -> None:
    # given a frozen reference copy of the starting UNet
    reference = copy.deepcopy(parts.unet).requires_grad_(False)

    def objective() -> tuple[torch.Tensor, dict[str, float]]:
        return dpo_loss(parts, parts.unet, reference, preference_batch, beta=2500.0)

    # when the model is optimised on the fixed batch
    losses = optimise_on_fixed_batch(objective, parts.unet, lr=1e-5)

    # then the loss falls below log 2, the margin favours chosen, and swapping the pair
    # (rejected as chosen) is now worse than chance
    assert_went_down(losses)
    _, extras = seeded(objective)
    assert extras["implicit_accuracy"] == 1.0
    assert extras["chosen_reward"] > extras["rejected_reward"]
    swapped = copy.copy(preference_batch)
    swapped.chosen, swapped.rejected = preference_batch.rejected, preference_batch.chosen
    swapped_loss, _ = seeded(lambda: dpo_loss(parts, parts.unet, reference, swapped))
    assert swapped_loss.item() > torch.log(torch.tensor(2.0)).item()


def test_dpo_weights_decide_which_pairs_count(parts, preference_batch) -> None:
    reference = copy.deepcopy(parts.unet).requires_grad_(False)
    with torch.no_grad():  # any change, so the pairs' losses differ
        parts.unet.conv_out.bias.add_(0.05)
    preference_batch.weights = torch.tensor([1.0, 0.0, 0.0, 0.0])
    weighted, _ = seeded(lambda: dpo_loss(parts, parts.unet, reference, preference_batch))
    preference_batch.weights = torch.ones(4)
    unweighted, _ = seeded(lambda: dpo_loss(parts, parts.unet, reference, preference_batch))
    assert not torch.isclose(weighted, unweighted)
