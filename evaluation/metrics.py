"""Reward-model metrics against human judgements, and the human agreement ceiling.

Plain functions over plain records (rewards/dataset.py) and model scores
(`{variant_id: {"overall": float, "aspects": {aspect: float}}}`). The rank correlations come
from scipy and the ROC-AUC from scikit-learn; the tie-aware accuracies are written here, as
no library has them.

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
  side is all ties, or a score is NaN, have no correlation and are left out).
- Per-aspect MAE over every (judgement, variant, aspect) score.

Undefined is not a number (issue 11): a metric with nothing to stand on (no pairs, no
non-tied pairs, every ranking constant on one side, no aspect scores) is None, and a sibling
key ``<metric>_undefined`` says why; a per-ranking mean that had to leave rankings out gives
``<metric>_skipped`` (how many). Nothing here returns NaN or inf, so the summaries go into a
JSON column as they are; `json_safe` is the net for anything else a caller stores.

`human_ceiling` computes the same numbers between annotators of the same task: each
judgement is the reference in turn, each other judgement of its task the "prediction"
(its tiers as scores, its scores as aspect predictions), weighted 1 / (other judgements) so
every reference judgement weighs 1, as it does for the model.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from rewards.dataset import JudgementRecord

Scores = Mapping[int, Mapping[str, Any]]

# Why a ranking has no rank correlation (the first that applies).
ONE_VARIANT = "one variant"
ALL_TIED = "all variants tied by the annotator"
CONSTANT_SCORES = "constant scores"
NAN_SCORES = "NaN scores"


# --- rank statistics -------------------------------------------------------------------
# scipy and scikit-learn cost ~1.5 s to import: loaded on first use, not with this module.


def why_no_correlation(human: Sequence[float], predicted: Sequence[float]) -> str | None:
    """Why Spearman and Kendall tau-b are undefined on this ranking; None when they are not.
    Both need two items, some spread on each side (their denominators are the spreads) and
    no NaN score (it has no rank)."""
    if len(human) < 2:
        return ONE_VARIANT
    if len(set(human)) == 1:
        return ALL_TIED
    if any(math.isnan(value) for value in predicted):
        return NAN_SCORES
    if len(set(predicted)) == 1:
        return CONSTANT_SCORES
    return None


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """scipy's Spearman rho (Pearson correlation of average ranks); None when undefined."""
    if why_no_correlation(x, y) is not None:  # scipy would warn and return NaN
        return None
    from scipy.stats import spearmanr

    return finite_or_none(float(spearmanr(x, y).statistic))


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """scipy's Kendall tau-b, (C - D) / sqrt((n0 - n1)(n0 - n2)); None when undefined."""
    if why_no_correlation(x, y) is not None:
        return None
    from scipy.stats import kendalltau

    return finite_or_none(float(kendalltau(x, y, variant="b").statistic))


def weighted_auc(
    positives: np.ndarray,
    negatives: np.ndarray,
    positive_weights: np.ndarray | None = None,
    negative_weights: np.ndarray | None = None,
) -> float | None:
    """scikit-learn's weighted ROC-AUC: P(positive > negative) + 0.5 P(equal), each side
    weighted. None when a class is empty or weighs nothing (with one class there is nothing
    to rank against), or when a score is NaN (it has no order)."""
    if len(positives) == 0 or len(negatives) == 0:
        return None
    wp = np.ones(len(positives)) if positive_weights is None else np.asarray(positive_weights)
    wn = np.ones(len(negatives)) if negative_weights is None else np.asarray(negative_weights)
    scores = np.concatenate([positives, negatives]).astype(float)
    if not float(wp.sum() * wn.sum()) > 0 or np.isnan(scores).any():
        return None
    from sklearn.metrics import roc_auc_score

    # AUC depends on the order alone: ranks keep it (ties too) and make ±inf, which
    # scikit-learn refuses, finite.
    ranks = np.unique(scores, return_inverse=True)[1]
    labels = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    auc = roc_auc_score(labels, ranks, sample_weight=np.concatenate([wp, wn]))
    return finite_or_none(float(auc))


# --- undefined values ------------------------------------------------------------------------


def finite_or_none(value: float | None) -> float | None:
    """A finite float, or None for None/NaN/±inf (JSON has no NaN; Postgres refuses it)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def json_safe(value: Any) -> Any:
    """`value` with every NaN/inf float, at any depth of dicts/lists/tuples, turned into None:
    the last guard before a JSONField, so a run never fails on a number it cannot store."""
    if isinstance(value, float | np.floating):
        return finite_or_none(float(value))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Mapping):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def _tally_of(reasons: Counter[str], total: int, unit: str = "rankings") -> str:
    parts = ", ".join(f"{why} on {count}" for why, count in reasons.most_common())
    return f"{parts} of {total} {unit}"


# --- per-judgement comparisons -------------------------------------------------------------


@dataclass
class _Tally:
    """Pair-level and judgement-level figures, accumulated with weights."""

    human: list[int] = field(default_factory=list)  # +1: first of the pair ranked higher; 0 tie
    delta: list[float] = field(default_factory=list)  # prediction(first) - prediction(second)
    pair_weight: list[float] = field(default_factory=list)
    spearman: list[tuple[float, float]] = field(default_factory=list)  # (value, weight)
    kendall: list[tuple[float, float]] = field(default_factory=list)
    no_correlation: Counter[str] = field(default_factory=Counter)  # why -> rankings
    rankings: int = 0
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
        self._add_correlations(
            [-tier[v] for v in variants], [float(overall[v]) for v in variants], weight
        )
        for variant, given in record.scores.items():
            for aspect, truth in given.items():
                if aspect in aspects.get(variant, {}):
                    error = abs(float(aspects[variant][aspect]) - float(truth))
                    self.errors[aspect].append((error, weight))
        self.judgements += weight

    def _add_correlations(self, human: list[float], predicted: list[float], weight: float) -> None:
        self.rankings += 1
        reason = why_no_correlation(human, predicted)
        if reason is not None:
            self.no_correlation[reason] += 1
            return
        for target, value in ((self.spearman, spearman), (self.kendall, kendall_tau_b)):
            target.append((value(human, predicted), weight))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.asarray(self.human), np.asarray(self.delta), np.asarray(self.pair_weight)

    def summary(self, epsilon: float, nothing: str = "no judgements") -> dict[str, Any]:
        """Every metric, None with a ``<name>_undefined`` reason where it has no value.
        ``nothing`` is the reason when there were no judgements at all."""
        human, delta, weight = self.arrays()
        summary: dict[str, Any] = {}
        _put(summary, "pairwise_accuracy", *_acc_eq(human, delta, weight, epsilon))
        _put(summary, "pairwise_accuracy_nontied", *_nontied_accuracy(human, delta, weight))
        summary["epsilon"] = epsilon
        _put(summary, "roc_auc", *_pair_auc(human, delta, weight))
        for name, values in (("spearman", self.spearman), ("kendall_tau_b", self.kendall)):
            self._put_correlation(summary, name, values)
        summary["aspect_mae"] = {a: _weighted_mean(e) for a, e in sorted(self.errors.items())}
        if not self.errors:
            summary["aspect_mae_undefined"] = "no judgement scores an aspect the model predicts"
        summary.update(
            judgements=round(self.judgements, 6),
            pairs=int(len(human)),
            tied_pairs=int((human == 0).sum()) if len(human) else 0,
        )
        if not self.rankings:  # one plain reason instead of "no pairs" everywhere
            for key in [k for k in summary if k.endswith("_undefined")]:
                summary[key] = nothing
        return summary

    def _put_correlation(
        self, summary: dict[str, Any], name: str, values: list[tuple[float, float]]
    ) -> None:
        skipped = sum(self.no_correlation.values())
        if values:
            summary[name] = _weighted_mean(values)
            if skipped:
                summary[f"{name}_skipped"] = skipped
            return
        summary[name] = None
        summary[f"{name}_undefined"] = (
            _tally_of(self.no_correlation, self.rankings) if self.rankings else "no rankings"
        )


def _put(summary: dict[str, Any], name: str, value: float | None, why: str | None) -> None:
    summary[name] = value
    if value is None:
        summary[f"{name}_undefined"] = why


def _weighted_mean(values: list[tuple[float, float]]) -> float | None:
    if not values:
        return None
    data = np.asarray(values, dtype=float)
    return finite_or_none(float((data[:, 0] * data[:, 1]).sum() / data[:, 1].sum()))


def _model_relation(delta: np.ndarray, epsilon: float) -> np.ndarray:
    # A NaN score has no relation: 2 equals no human relation, so the pair counts as wrong.
    relation = np.where(np.abs(delta) <= epsilon, 0, np.sign(delta))
    return np.where(np.isnan(delta), 2, relation).astype(int)


NO_PAIRS = "no pairs: every ranking has one variant"
ALL_PAIRS_TIED = "every pair is tied by the annotators"


def _acc_eq(
    human: np.ndarray, delta: np.ndarray, weight: np.ndarray, epsilon: float
) -> tuple[float | None, str | None]:
    # Hand-written: no library has the tie-aware acc_eq of Deutsch et al. 2023.
    if len(human) == 0:
        return None, NO_PAIRS
    right = _model_relation(delta, epsilon) == human
    return finite_or_none(float((weight * right).sum() / weight.sum())), "pairs weigh nothing"


def _nontied_accuracy(
    human: np.ndarray, delta: np.ndarray, weight: np.ndarray
) -> tuple[float | None, str | None]:
    # Hand-written: no library scores a model tie as half a right answer (ImageReward).
    keep = human != 0
    if not keep.any():
        return None, NO_PAIRS if len(human) == 0 else ALL_PAIRS_TIED
    agreement = np.sign(delta[keep]) * human[keep]
    credit = np.where(agreement > 0, 1.0, np.where(agreement == 0, 0.5, 0.0))
    return finite_or_none(float((weight[keep] * credit).sum() / weight[keep].sum())), (
        "pairs weigh nothing"
    )


def _pair_auc(
    human: np.ndarray, delta: np.ndarray, weight: np.ndarray
) -> tuple[float | None, str | None]:
    keep = human != 0
    if not keep.any():  # no non-tied pair: one class only
        return None, NO_PAIRS if len(human) == 0 else ALL_PAIRS_TIED
    oriented = delta[keep] * human[keep]  # r_winner - r_loser
    if np.isnan(oriented).any():
        return None, NAN_SCORES
    return weighted_auc(oriented, -oriented, weight[keep], weight[keep]), "pairs weigh nothing"


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
) -> tuple[float, float | None]:
    """(ε, acc_eq at ε): the tie threshold that maximises acc_eq on these (val) records;
    (0.0, None) when they hold no pair to calibrate on.

    Deutsch et al. 2023 §4: candidates are 0 and every |Δ| seen; the smallest best one wins.
    """
    # Hand-written: no library calibrates the tie threshold of acc_eq.
    human, delta, weight = model_tally(scores, records, include_unsure).arrays()
    finite = np.isfinite(delta)  # a non-finite score cannot set a threshold
    if len(human) == 0 or not finite.any():
        return 0.0, None
    candidates = np.unique(np.concatenate([[0.0], np.abs(delta[finite])]))
    accuracies = [_acc_eq(human, delta, weight, float(c))[0] for c in candidates]
    ranked = [-1.0 if a is None else a for a in accuracies]
    best = int(np.argmax(ranked))
    return float(candidates[best]), accuracies[best]


def multiply_judged(records: Iterable[JudgementRecord]) -> list[JudgementRecord]:
    """Records of tasks with at least two judgements: the items a human ceiling exists for."""
    records = list(records)
    per_task: dict[int, int] = defaultdict(int)
    for record in records:
        per_task[record.task_id] += 1
    return [r for r in records if per_task[r.task_id] >= 2]


ONE_ANNOTATOR = "no task has two judgements (one annotator per item): no ceiling to compare"


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
    metrics["ceiling_items"] = model_tally(scores, same_items, include_unsure=True).summary(
        epsilon, nothing=ONE_ANNOTATOR
    )
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
    summary = tally.summary(0.0, nothing=ONE_ANNOTATOR)  # an annotator's tie is a real tie: no ε
    summary["tasks"] = sum(1 for group in by_task.values() if len(group) >= 2)
    return summary
