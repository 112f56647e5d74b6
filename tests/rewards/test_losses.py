"""Losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from rewards.dataset import JudgementBatch
from rewards.losses import (
    aspect_loss,
    bradley_terry_loss,
    mse_aspect_loss,
    ordinal_aspect_loss,
    reward_loss,
)
from rewards.reward_model import RewardOutput


def log1p_exp(x: float) -> float:
    return math.log(1 + math.exp(x))


def test_it_is_minus_log_sigmoid_of_the_difference() -> None:
    loss = bradley_terry_loss(torch.tensor([2.0]), torch.tensor([1.0]))
    # -log sigmoid(1) = log(1 + e^-1)
    assert loss.item() == pytest.approx(log1p_exp(-1.0))


def test_it_weights_pairs() -> None:
    winner, loser = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    loss = bradley_terry_loss(winner, loser, weight=torch.tensor([0.25, 0.75]))
    expected = (0.25 * log1p_exp(-1.0) + 0.75 * log1p_exp(2.0)) / 1.0
    assert loss.item() == pytest.approx(expected)


def test_a_soft_tie_target_is_symmetric() -> None:
    # t = 0.5: 0.5 * softplus(-d) + 0.5 * softplus(d), the same for d and -d
    d = 0.8
    a = bradley_terry_loss(torch.tensor([d]), torch.tensor([0.0]), torch.tensor([0.5]))
    b = bradley_terry_loss(torch.tensor([0.0]), torch.tensor([d]), torch.tensor([0.5]))
    assert a.item() == pytest.approx(0.5 * log1p_exp(-d) + 0.5 * log1p_exp(d))
    assert a.item() == pytest.approx(b.item())


def test_it_is_zero_without_pairs_and_keeps_the_graph() -> None:
    winner = torch.zeros(0, requires_grad=True)
    loss = bradley_terry_loss(winner, torch.zeros(0))
    assert loss.item() == 0.0
    assert loss.requires_grad


def test_mse_counts_only_given_scores() -> None:
    prediction = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[2.0, 0.0], [3.0, 1.0]])
    mask = torch.tensor([[True, False], [True, True]])
    # (1-2)^2 + (3-3)^2 + (4-1)^2 over 3 scores
    assert mse_aspect_loss(prediction, target, mask).item() == pytest.approx(10 / 3)


def test_ordinal_loss_sums_softplus_over_the_score_boundaries() -> None:
    prediction, target = torch.tensor([[2.0]]), torch.tensor([[3.0]])
    mask = torch.tensor([[True]])
    # boundaries 0.5..4.5; target 3 is above 0.5, 1.5, 2.5 and below 3.5, 4.5
    expected = sum(
        log1p_exp(-side * (2.0 - threshold) * 4.0)
        for threshold, side in ((0.5, 1), (1.5, 1), (2.5, 1), (3.5, -1), (4.5, -1))
    )
    assert ordinal_aspect_loss(prediction, target, mask).item() == pytest.approx(expected)
    assert aspect_loss(prediction, target, mask, "ordinal").item() == pytest.approx(expected)


def test_it_refuses_an_unknown_aspect_loss() -> None:
    with pytest.raises(ValueError, match="huber"):
        aspect_loss(
            torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1, dtype=torch.bool), "huber"
        )


def _batch(aspect_target: torch.Tensor, aspect_mask: torch.Tensor) -> JudgementBatch:
    empty = torch.zeros(0)
    return JudgementBatch(
        input_ids=empty, attention_mask=empty, source=empty, edited=empty, group=empty,
        variant_ids=[1, 2], pair_winner=torch.tensor([0]), pair_loser=torch.tensor([1]),
        pair_target=torch.tensor([1.0]), pair_weight=torch.tensor([1.0]),
        aspect_target=aspect_target, aspect_mask=aspect_mask,
    )  # fmt: skip


def test_total_is_the_weighted_sum() -> None:
    output = RewardOutput(overall=torch.tensor([1.0, 0.0]), aspects=torch.tensor([[4.0], [1.0]]))
    batch = _batch(torch.tensor([[5.0], [1.0]]), torch.tensor([[True], [True]]))
    parts = reward_loss(output, batch, bt_weight=2.0, aspect_weight=0.5)
    assert parts.bradley_terry.item() == pytest.approx(log1p_exp(-1.0))
    assert parts.aspect.item() == pytest.approx(0.5)  # ((4-5)^2 + 0) / 2
    assert parts.total.item() == pytest.approx(2 * log1p_exp(-1.0) + 0.5 * 0.5)


def test_coarse_heads_have_no_aspect_loss() -> None:
    output = RewardOutput(overall=torch.tensor([1.0, 0.0]), aspects=None)
    batch = _batch(torch.zeros(2, 1), torch.ones(2, 1, dtype=torch.bool))
    assert reward_loss(output, batch).aspect.item() == 0.0
