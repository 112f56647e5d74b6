"""Reward-model metrics against human judgements, and the human agreement ceiling.

Plain functions over plain records (rewards/dataset.py) and model scores
(`{variant_id: {"overall": float, "aspects": {aspect: float}}}`); numpy only.

- Tie-aware pairwise accuracy, acc_eq (Deutsch, Dror & Roth 2023, "Ties Matter", §3):
  over *all* pairs of a ranking, human ties included, the model is right when its relation
  (>, <, or = when |Δ| ≤ ε) equals the human one. ε is calibrated on val (§4: the ε that
  maximises acc_eq) and reused on test; uncalibrated, ε = 0.
- Non-tied pairwise accuracy: ImageReward's preference accuracy, over pairs the human did
  not tie; a model tie (Δ = 0) counts one half.
- ROC-AUC over non-tied pairs: each pair enters twice, (r_w - r_l, positive) and
  (r_l - r_w, negative), so the value does not depend on which side is listed first; it is
  the Mann-Whitney probability that a positive difference beats a negative one.
- Spearman and Kendall tau-b per ranking, averaged over judgements (rankings where either
  side is all ties have no correlation and are left out).
- Per-aspect MAE over every (judgement, variant, aspect) score.

`human_ceiling` computes the same numbers between annotators of the same task: each
judgement is the reference in turn, each other judgement of its task the "prediction"
(its tiers as scores, its scores as aspect predictions), weighted 1 / (other judgements) so
every reference judgement weighs 1, as it does for the model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from rewards.dataset import JudgementRecord

Scores = Mapping[int, Mapping[str, Any]]


# --- rank statistics -------------------------------------------------------------------


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties sharing the mean of their positions (as scipy.stats.rankdata)."""
    array = np.asarray(values, dtype=float)
    order = np.argsort(array, kind="mergesort")
    ranks = np.empty(len(array))
    sorted_values = array[order]
    start = 0
    while start < len(array):
        end = start
        while end + 1 < len(array) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of average ranks; nan when either side is constant."""
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """(C - D) / sqrt((n0 - n1)(n0 - n2)), n1/n2 the pairs tied in x/y; nan if undefined."""
    concordant = discordant = tied_x = tied_y = 0
    n0 = 0
    for i, j in combinations(range(len(x)), 2):
        n0 += 1
        sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        tied_x += sx == 0
        tied_y += sy == 0
        concordant += sx * sy > 0
        discordant += sx * sy < 0
    denominator = np.sqrt(float((n0 - tied_x) * (n0 - tied_y)))
    return float((concordant - discordant) / denominator) if denominator > 0 else float("nan")


def weighted_auc(
    positives: np.ndarray,
    negatives: np.ndarray,
    positive_weights: np.ndarray | None = None,
    negative_weights: np.ndarray | None = None,
) -> float:
    """P(positive > negative) + 0.5 P(equal), each side weighted; nan if a side is empty."""
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan")
    wp = np.ones(len(positives)) if positive_weights is None else np.asarray(positive_weights)
    wn = np.ones(len(negatives)) if negative_weights is None else np.asarray(negative_weights)
    order = np.argsort(negatives, kind="mergesort")
    sorted_neg, cumulative = (
        np.asarray(negatives)[order],
        np.concatenate([[0], np.cumsum(wn[order])]),
    )
    below = cumulative[np.searchsorted(sorted_neg, positives, side="left")]
    below_or_equal = cumulative[np.searchsorted(sorted_neg, positives, side="right")]
    credit = below + 0.5 * (below_or_equal - below)
    return float((wp * credit).sum() / (wp.sum() * wn.sum()))


# --- per-judgement comparisons -------------------------------------------------------------


@dataclass
class _Tally:
    """Pair-level and judgement-level figures, accumulated with weights."""

    human: list[int] = field(default_factory=list)  # +1: first of the pair ranked higher; 0 tie
    delta: list[float] = field(default_factory=list)  # prediction(first) - prediction(second)
    pair_weight: list[float] = field(default_factory=list)
    spearman: list[tuple[float, float]] = field(default_factory=list)  # (value, weight)
    kendall: list[tuple[float, float]] = field(default_factory=list)
    errors: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    judgements: float = 0

    def add(
        self,
        record: JudgementRecord,
        overall: Mapping[int, float],
        aspects: Mapping[int, Mapping[str, float]],
        weight: float = 1.0,
    ) -> None:
        tier = record.tier_of
        variants = sorted(tier)
        for a, b in combinations(variants, 2):
            self.human.append(int(np.sign(tier[b] - tier[a])))
            self.delta.append(float(overall[a]) - float(overall[b]))
            self.pair_weight.append(weight)
        human_scores = [-tier[v] for v in variants]
        predicted = [float(overall[v]) for v in variants]
        for target, value in ((self.spearman, spearman), (self.kendall, kendall_tau_b)):
            correlation = value(human_scores, predicted)
            if not np.isnan(correlation):
                target.append((correlation, weight))
        for variant, given in record.scores.items():
            for aspect, truth in given.items():
                if aspect in aspects.get(variant, {}):
                    error = abs(float(aspects[variant][aspect]) - float(truth))
                    self.errors[aspect].append((error, weight))
        self.judgements += weight

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.asarray(self.human), np.asarray(self.delta), np.asarray(self.pair_weight)

    def summary(self, epsilon: float) -> dict[str, Any]:
        human, delta, weight = self.arrays()
        return {
            "pairwise_accuracy": _acc_eq(human, delta, weight, epsilon),
            "pairwise_accuracy_nontied": _nontied_accuracy(human, delta, weight),
            "epsilon": epsilon,
            "roc_auc": _pair_auc(human, delta, weight),
            "spearman": _weighted_mean(self.spearman),
            "kendall_tau_b": _weighted_mean(self.kendall),
            "aspect_mae": {a: _weighted_mean(e) for a, e in sorted(self.errors.items())},
            "judgements": round(self.judgements, 6),
            "pairs": int(len(human)),
            "tied_pairs": int((human == 0).sum()) if len(human) else 0,
        }


def _weighted_mean(values: list[tuple[float, float]]) -> float:
    if not values:
        return float("nan")
    data = np.asarray(values)
    return float((data[:, 0] * data[:, 1]).sum() / data[:, 1].sum())


def _model_relation(delta: np.ndarray, epsilon: float) -> np.ndarray:
    return np.where(np.abs(delta) <= epsilon, 0, np.sign(delta)).astype(int)


def _acc_eq(human: np.ndarray, delta: np.ndarray, weight: np.ndarray, epsilon: float) -> float:
    if len(human) == 0:
        return float("nan")
    right = _model_relation(delta, epsilon) == human
    return float((weight * right).sum() / weight.sum())


def _nontied_accuracy(human: np.ndarray, delta: np.ndarray, weight: np.ndarray) -> float:
    keep = human != 0
    if not keep.any():
        return float("nan")
    agreement = np.sign(delta[keep]) * human[keep]
    credit = np.where(agreement > 0, 1.0, np.where(agreement == 0, 0.5, 0.0))
    return float((weight[keep] * credit).sum() / weight[keep].sum())


def _pair_auc(human: np.ndarray, delta: np.ndarray, weight: np.ndarray) -> float:
    keep = human != 0
    oriented = delta[keep] * human[keep]  # r_winner - r_loser
    return weighted_auc(oriented, -oriented, weight[keep], weight[keep])


# --- public API --------------------------------------------------------------------------


def _usable(records: Iterable[JudgementRecord], include_unsure: bool) -> list[JudgementRecord]:
    return [r for r in records if include_unsure or not r.unsure]


def _model_predictions(
    scores: Scores, record: JudgementRecord
) -> tuple[dict[int, float], dict[int, Mapping[str, float]]]:
    missing = [v for v in record.variants if v not in scores]
    if missing:
        raise KeyError(f"judgement {record.judgement_id}: no model score for variants {missing}")
    overall = {v: float(scores[v]["overall"]) for v in record.variants}
    aspects = {v: scores[v].get("aspects") or {} for v in record.variants}
    return overall, aspects


def model_tally(
    scores: Scores, records: Iterable[JudgementRecord], include_unsure: bool = False
) -> _Tally:
    tally = _Tally()
    for record in _usable(records, include_unsure):
        tally.add(record, *_model_predictions(scores, record))
    return tally


def calibrate_epsilon(
    scores: Scores, records: Iterable[JudgementRecord], include_unsure: bool = False
) -> tuple[float, float]:
    """(ε, acc_eq at ε): the tie threshold that maximises acc_eq on these (val) records.

    Deutsch et al. 2023 §4: candidates are 0 and every |Δ| seen; the smallest best one wins.
    """
    human, delta, weight = model_tally(scores, records, include_unsure).arrays()
    if len(human) == 0:
        return 0.0, float("nan")
    candidates = np.unique(np.concatenate([[0.0], np.abs(delta)]))
    accuracies = [_acc_eq(human, delta, weight, float(c)) for c in candidates]
    best = int(np.argmax(accuracies))
    return float(candidates[best]), float(accuracies[best])


def multiply_judged(records: Iterable[JudgementRecord]) -> list[JudgementRecord]:
    """Records of tasks with at least two judgements: the items a human ceiling exists for."""
    records = list(records)
    per_task: dict[int, int] = defaultdict(int)
    for record in records:
        per_task[record.task_id] += 1
    return [r for r in records if per_task[r.task_id] >= 2]


def reward_metrics(
    scores: Scores,
    records: Iterable[JudgementRecord],
    epsilon: float | None = None,
    include_unsure: bool = False,
) -> dict[str, Any]:
    """The model's metrics on `records`, plus the same on the ceiling's items only.

    epsilon: the tie threshold calibrated on val (`calibrate_epsilon`); None means 0.
    """
    records = _usable(records, include_unsure)
    epsilon = 0.0 if epsilon is None else float(epsilon)
    metrics = model_tally(scores, records, include_unsure=True).summary(epsilon)
    same_items = multiply_judged(records)
    metrics["ceiling_items"] = model_tally(scores, same_items, include_unsure=True).summary(epsilon)
    return metrics


def human_ceiling(
    records: Iterable[JudgementRecord], include_unsure: bool = False
) -> dict[str, Any]:
    """The same metrics between annotators of one task (tasks with >= 2 judgements)."""
    by_task: dict[int, list[JudgementRecord]] = defaultdict(list)
    for record in _usable(records, include_unsure):
        by_task[record.task_id].append(record)
    tally = _Tally()
    for group in by_task.values():
        for reference in group:
            others = [r for r in group if r is not reference]
            for other in others:
                overall = {v: -float(t) for v, t in other.tier_of.items()}
                tally.add(reference, overall, other.scores, weight=1.0 / len(others))
    summary = tally.summary(0.0)  # an annotator's tie is a real tie: no ε
    summary["tasks"] = sum(1 for group in by_task.values() if len(group) >= 2)
    return summary
