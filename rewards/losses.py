"""Reward-model losses: Bradley-Terry over ranked pairs plus a per-aspect score loss.

ImageReward (§3.2) and HIVE (§3.1) train the reward on ranked pairs with
-log sigmoid(r_w - r_l), the Bradley-Terry likelihood of the human choice. A tie kept
with tie_mode="soft" is a target t = 0.5 in the binary cross-entropy form
-[t log sigmoid(d) + (1 - t) log sigmoid(-d)], which is the same loss at t = 1.
The Multi-Reward paper's 0-5 aspect scores are fitted by regression (MSE) or by an
all-threshold ordinal loss (Rennie & Srebro 2005) on the same 0-5 prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rewards.config import ASPECT_LOSSES
from rewards.dataset import JudgementBatch
from rewards.reward_model import RewardOutput

# Boundaries between the integer scores 0..5, on the 0-5 prediction scale.
ORDINAL_THRESHOLDS = (0.5, 1.5, 2.5, 3.5, 4.5)


def bradley_terry_loss(
    winner: torch.Tensor,
    loser: torch.Tensor,
    target: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted mean of -[t log s(d) + (1-t) log s(-d)], d = r_w - r_l (t = 1 by default)."""
    difference = winner - loser
    target = torch.ones_like(difference) if target is None else target.to(difference)
    weight = torch.ones_like(difference) if weight is None else weight.to(difference)
    # softplus(-d) = -log sigmoid(d), computed without overflow.
    per_pair = target * F.softplus(-difference) + (1 - target) * F.softplus(difference)
    total = weight.sum()
    if total <= 0:
        return difference.sum() * 0.0  # no pairs: zero, but still part of the graph
    return (weight * per_pair).sum() / total


def mse_aspect_loss(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean squared error over the scores the annotators gave (mask True)."""
    mask = mask.to(prediction.dtype)
    count = mask.sum()
    if count <= 0:
        return prediction.sum() * 0.0
    return (mask * (prediction - target.to(prediction)) ** 2).sum() / count


def ordinal_aspect_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    sharpness: float = 4.0,
) -> torch.Tensor:
    """All-threshold ordinal loss: for each boundary k + 0.5 between integer scores, the
    prediction should sit on the same side as the target; softplus of the signed margin,
    summed over boundaries, averaged over the given scores."""
    thresholds = torch.tensor(ORDINAL_THRESHOLDS, dtype=prediction.dtype, device=prediction.device)
    side = torch.where(target.to(prediction).unsqueeze(-1) > thresholds, 1.0, -1.0)
    margin = side * (prediction.unsqueeze(-1) - thresholds) * sharpness
    per_score = F.softplus(-margin).sum(-1)
    mask = mask.to(prediction.dtype)
    count = mask.sum()
    if count <= 0:
        return prediction.sum() * 0.0
    return (mask * per_score).sum() / count


def aspect_loss(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "mse"
) -> torch.Tensor:
    if kind == "mse":
        return mse_aspect_loss(prediction, target, mask)
    if kind == "ordinal":
        return ordinal_aspect_loss(prediction, target, mask)
    raise ValueError(f"aspect loss {kind!r} is not one of {ASPECT_LOSSES}")


@dataclass
class LossParts:
    total: torch.Tensor
    bradley_terry: torch.Tensor
    aspect: torch.Tensor


def reward_loss(
    output: RewardOutput,
    batch: JudgementBatch,
    bt_weight: float = 1.0,
    aspect_weight: float = 1.0,
    aspect_kind: str = "mse",
) -> LossParts:
    """total = bt_weight * BT + aspect_weight * aspect (aspect is 0 for `coarse` heads)."""
    overall = output.overall
    bt = bradley_terry_loss(
        overall[batch.pair_winner], overall[batch.pair_loser], batch.pair_target, batch.pair_weight
    )
    if output.aspects is None:
        aspects = overall.sum() * 0.0
    else:
        aspects = aspect_loss(output.aspects, batch.aspect_target, batch.aspect_mask, aspect_kind)
    return LossParts(bt_weight * bt + aspect_weight * aspects, bt, aspects)
