"""Agreement between annotators, accuracy against gold, and how annotators work.

Plain functions over plain `JudgementRow` records (the Django glue builds them from
Judgement, Assignment.display_order and EditTask.gold_ranking); no Django and no torch, so
the stats endpoint can call them cheaply. Kendall's τ-b comes from scipy, Krippendorff's α
from `krippendorff`, Fleiss' κ from statsmodels; the tie-aware pairwise agreement (as
metrics.py's acc_eq) is written here, as no library has it.

Conventions shared by every function:
- A ranking is a list of tiers best→worst; two variants in one tier are tied. Pairs of
  variants are compared with the same tie-aware relation as evaluation/metrics.py (acc_eq of
  Deutsch, Dror & Roth 2023, "Ties Matter"): +1 (first ranked higher), -1 (lower), 0 (tie),
  and two judgements agree on a pair when their relations are equal, ties included.
- Only variants that both rankings name are compared.
- Between annotators, each annotator counts once per task: when someone judged a task twice,
  their latest judgement (highest judgement_id) is used.
- Judgements flagged `unsure` are left out unless `include_unsure=True`, as in metrics.py.
- "Not enough data" is None, never NaN (a task with one annotator has no agreement; a
  per-annotator dict leaves out annotators with no figure), so results serialise as JSON.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal

import krippendorff
import numpy as np

ASPECTS = ("following", "preserving", "quality")
TIMING_PARTS = ("ranking", "scoring", "total")
SCORE_LEVELS = range(6)
Metric = Literal["nominal", "ordinal", "interval"]


@dataclass(frozen=True)
class JudgementRow:
    judgement_id: int
    task_id: int
    annotator_id: int
    ranking: list[list[int]]  # tiers best→worst of variant ids
    scores: dict[int, dict[str, int]]  # variant → aspect → 0..5
    display_order: list[int]  # variant ids as shown (first shown = position 0)
    ranking_ms: int | None = None
    scoring_ms: int | None = None
    total_ms: int | None = None
    gold_ranking: list[list[int]] | None = None  # set when the task is a gold task
    unsure: bool = False


# --- pair relations ------------------------------------------------------------------------


def tier_of(ranking: Sequence[Sequence[int]]) -> dict[int, int]:
    """Variant id → tier index (0 = best)."""
    return {variant: index for index, tier in enumerate(ranking) for variant in tier}


def shared_variants(*rankings: Sequence[Sequence[int]]) -> list[int]:
    """Sorted ids of the variants every ranking names."""
    common = set(tier_of(rankings[0]))
    for ranking in rankings[1:]:
        common &= set(tier_of(ranking))
    return sorted(common)


def pair_relations(ranking: Sequence[Sequence[int]], variants: Sequence[int]) -> list[int]:
    """For each pair (a, b) of `variants` in order: +1 a ranked higher, -1 lower, 0 tied."""
    tier = tier_of(ranking)
    return [int(np.sign(tier[b] - tier[a])) for a, b in combinations(variants, 2)]


def relation_agreement(
    first: Sequence[Sequence[int]], second: Sequence[Sequence[int]]
) -> tuple[int, int]:
    """(pairs on which the two rankings have the same relation, pairs compared)."""
    variants = shared_variants(first, second)
    x, y = pair_relations(first, variants), pair_relations(second, variants)
    return sum(a == b for a, b in zip(x, y, strict=True)), len(x)


def ranking_tau_b(first: Sequence[Sequence[int]], second: Sequence[Sequence[int]]) -> float | None:
    """scipy's Kendall τ-b (Kendall 1945) of two rankings over the variants both name; None
    when either ranking puts them all in one tier (or names fewer than two)."""
    variants = shared_variants(first, second)
    x = [-tier_of(first)[v] for v in variants]
    y = [-tier_of(second)[v] for v in variants]
    if len(set(x)) < 2 or len(set(y)) < 2:  # scipy would warn and return NaN
        return None
    from scipy.stats import kendalltau  # ~1.5 s to import: not for every web process

    return float(kendalltau(x, y, variant="b").statistic)


# --- grouping --------------------------------------------------------------------------------


def usable(rows: Iterable[JudgementRow], include_unsure: bool = False) -> list[JudgementRow]:
    return [row for row in rows if include_unsure or not row.unsure]


def latest_by_task(rows: Iterable[JudgementRow]) -> dict[int, dict[int, JudgementRow]]:
    """task → annotator → that annotator's latest judgement of the task."""
    by_task: dict[int, dict[int, JudgementRow]] = defaultdict(dict)
    for row in sorted(rows, key=lambda r: r.judgement_id):
        by_task[row.task_id][row.annotator_id] = row
    return dict(by_task)


def annotator_pairs(rows: Iterable[JudgementRow]) -> Iterator[tuple[JudgementRow, JudgementRow]]:
    """Every pair of distinct annotators' judgements of the same task."""
    for judgements in latest_by_task(rows).values():
        ordered = [judgements[a] for a in sorted(judgements)]
        yield from combinations(ordered, 2)


class _Share:
    """hits / total, accumulated; None while nothing was counted."""

    def __init__(self) -> None:
        self.hits = 0.0
        self.total = 0

    def add(self, hits: float, total: int) -> None:
        self.hits += hits
        self.total += total

    @property
    def value(self) -> float | None:
        return self.hits / self.total if self.total else None


class _Mean:
    """Mean of added values; None while empty."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def add(self, value: float | None) -> None:
        if value is not None:
            self.values.append(value)

    @property
    def value(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None


def _values(groups: Mapping[Any, _Share | _Mean]) -> dict[Any, float]:
    return {key: group.value for key, group in sorted(groups.items()) if group.value is not None}


# --- 1, 8. tie-aware pairwise agreement ---------------------------------------------------------


def pairwise_agreement(
    rows: Iterable[JudgementRow], *, include_unsure: bool = False
) -> float | None:
    """Share of (annotator pair, variant pair) comparisons of one task with the same relation.

    Every comparison weighs the same, so a task with more annotators or variants weighs more
    (metrics.human_ceiling instead weighs each reference judgement 1). None: no task has two
    annotators.
    """
    share = _Share()
    for first, second in annotator_pairs(usable(rows, include_unsure)):
        share.add(*relation_agreement(first.ranking, second.ranking))
    return share.value


def pairwise_agreement_by_annotator(
    rows: Iterable[JudgementRow], *, include_unsure: bool = False
) -> dict[int, float]:
    """Each annotator's agreement with the others on the tasks they share; sole raters absent."""
    shares: dict[int, _Share] = defaultdict(_Share)
    for first, second in annotator_pairs(usable(rows, include_unsure)):
        counts = relation_agreement(first.ranking, second.ranking)
        shares[first.annotator_id].add(*counts)
        shares[second.annotator_id].add(*counts)
    return _values(shares)


def task_agreement(
    rows: Iterable[JudgementRow], *, include_unsure: bool = False
) -> dict[int, float]:
    """Per task, the pairwise agreement of its annotators (tasks with >= 2 of them): the
    lowest values are the disagreement queue."""
    shares: dict[int, _Share] = defaultdict(_Share)
    for first, second in annotator_pairs(usable(rows, include_unsure)):
        shares[first.task_id].add(*relation_agreement(first.ranking, second.ranking))
    return _values(shares)


def disputed_tasks(
    rows: Iterable[JudgementRow], limit: int = 20, *, include_unsure: bool = False
) -> list[dict[str, float | int]]:
    """The `limit` tasks with the lowest agreement, lowest first (ties by task id)."""
    ranked = sorted(
        task_agreement(rows, include_unsure=include_unsure).items(),
        key=lambda item: (item[1], item[0]),
    )
    return [{"task_id": task, "agreement": value} for task, value in ranked[:limit]]


# --- 2. Kendall τ-b between annotators ---------------------------------------------------------


def kendall_tau_between_rankings(
    rows: Iterable[JudgementRow], *, include_unsure: bool = False
) -> float | None:
    """Mean τ-b over pairs of annotators of the same task (pairs where τ-b is undefined,
    because one ranking is all ties, are left out, as in metrics.py)."""
    mean = _Mean()
    for first, second in annotator_pairs(usable(rows, include_unsure)):
        mean.add(ranking_tau_b(first.ranking, second.ranking))
    return mean.value


def kendall_tau_by_annotator(
    rows: Iterable[JudgementRow], *, include_unsure: bool = False
) -> dict[int, float]:
    """Each annotator's mean τ-b against the others on the tasks they share."""
    means: dict[int, _Mean] = defaultdict(_Mean)
    for first, second in annotator_pairs(usable(rows, include_unsure)):
        value = ranking_tau_b(first.ranking, second.ranking)
        means[first.annotator_id].add(value)
        means[second.annotator_id].add(value)
    return _values(means)


# --- 3. Krippendorff's alpha --------------------------------------------------------------------


METRICS = ("nominal", "ordinal", "interval")


def value_counts(
    units: Mapping[Hashable, Mapping[Hashable, int | None]], levels: Sequence[int]
) -> np.ndarray:
    """Units × levels: how many coders gave each value in each unit (None: missing)."""
    index = {level: position for position, level in enumerate(levels)}
    counts = np.zeros((len(units), len(levels)))
    for row, (unit, values) in enumerate(units.items()):
        present = [value for value in values.values() if value is not None]
        unknown = [value for value in present if value not in index]
        if unknown:
            raise ValueError(f"unit {unit!r}: values {unknown} are not among levels {levels}")
        for value in present:
            counts[row, index[value]] += 1
    return counts


def krippendorff_alpha(
    units: Mapping[Hashable, Mapping[Hashable, int | None]],
    metric: Metric = "ordinal",
    levels: Sequence[int] = SCORE_LEVELS,
) -> float | None:
    """Krippendorff's α = 1 − D_o / D_e (the `krippendorff` package) over unit → coder →
    value (None or absent: missing).

    Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": only pairable units
    (two values or more) count. `levels` are the possible values in order. None when no unit
    is pairable or the pairable values never differ (D_e = 0: α is undefined, not 1).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: use nominal, ordinal or interval")
    levels = list(levels)
    counts = value_counts(units, levels)
    pairable = counts[counts.sum(axis=1) >= 2]
    if np.count_nonzero(pairable.sum(axis=0)) < 2:  # the package raises or returns NaN
        return None
    return float(
        krippendorff.alpha(value_counts=pairable, value_domain=levels, level_of_measurement=metric)
    )


def krippendorff_alpha_ordinal(
    units: Mapping[Hashable, Mapping[Hashable, int | None]],
    levels: Sequence[int] = SCORE_LEVELS,
) -> float | None:
    return krippendorff_alpha(units, "ordinal", levels)


def score_units(rows: Iterable[JudgementRow], aspect: str) -> dict[tuple[int, int], dict[int, int]]:
    """(task, variant) → annotator → score on `aspect` (latest judgement per annotator)."""
    units: dict[tuple[int, int], dict[int, int]] = defaultdict(dict)
    for task, judgements in latest_by_task(rows).items():
        for annotator, row in judgements.items():
            for variant, given in row.scores.items():
                if given.get(aspect) is not None:
                    units[(task, int(variant))][annotator] = int(given[aspect])
    return dict(units)


def score_alpha_by_aspect(
    rows: Iterable[JudgementRow],
    aspects: Sequence[str] = ASPECTS,
    *,
    include_unsure: bool = False,
) -> dict[str, float | None]:
    """Ordinal α of the 0–5 scores per aspect; a unit is (task, variant), coders annotators."""
    rows = usable(rows, include_unsure)
    return {aspect: krippendorff_alpha_ordinal(score_units(rows, aspect)) for aspect in aspects}


# --- 4. Fleiss' kappa for pairwise choices -----------------------------------------------------


def fleiss_kappa(table: Sequence[Sequence[int]]) -> float | None:
    """Fleiss (1971) κ (statsmodels) over subjects × categories counts, every subject rated
    n >= 2 times. None for no subjects, or when every rating falls in one category (P̄_e = 1).
    """
    counts = np.asarray(table, dtype=float)
    if counts.size == 0:
        return None
    raters = counts.sum(axis=1)
    if np.any(raters != raters[0]) or raters[0] < 2:
        raise ValueError(f"every subject needs the same number (>= 2) of ratings, got {raters}")
    if np.count_nonzero(counts.sum(axis=0)) < 2:  # statsmodels would divide 0 by 0
        return None
    from statsmodels.stats import inter_rater  # ~1.7 s to import: not for every web process

    return float(inter_rater.fleiss_kappa(counts, method="fleiss"))


CHOICES = ("first_better", "tie", "second_better")  # first = the lower variant id


def pairwise_choice(ranking: Sequence[Sequence[int]]) -> int:
    """Category index in CHOICES of a two-variant ranking."""
    (relation,) = pair_relations(ranking, shared_variants(ranking))
    return {1: 0, 0: 1, -1: 2}[relation]


def choice_table(
    rows: Iterable[JudgementRow],
) -> dict[int, list[int]]:
    """task → counts per CHOICES over its annotators, for tasks of exactly two variants."""
    table: dict[int, list[int]] = {}
    for task, judgements in latest_by_task(rows).items():
        rankings = [row.ranking for row in judgements.values()]
        if any(len(tier_of(ranking)) != 2 for ranking in rankings):
            continue
        counts = [0] * len(CHOICES)
        for ranking in rankings:
            counts[pairwise_choice(ranking)] += 1
        table[task] = counts
    return table


def pairwise_choice_kappa(
    rows: Iterable[JudgementRow], *, include_unsure: bool = False
) -> dict[str, Any]:
    """Fleiss' κ of pairwise (K = 2) choices: subjects are tasks, categories CHOICES.

    Fleiss' κ needs the same number of raters per subject. Unequal counts: the most common
    count n >= 2 is used (the larger one on a tie) and tasks with another count are left
    out (`tasks_left_out`); nothing is subsampled. `alpha_nominal`, Krippendorff's α over
    the same choices, uses every task with >= 2 raters whatever its count.
    """
    table = choice_table(usable(rows, include_unsure))
    rated = {task: counts for task, counts in table.items() if sum(counts) >= 2}
    frequency = Counter(sum(counts) for counts in rated.values())
    raters = max(frequency, key=lambda n: (frequency[n], n)) if frequency else None
    subjects = [counts for counts in rated.values() if sum(counts) == raters]
    units = {task: dict(enumerate(_expand(counts))) for task, counts in rated.items()}
    return {
        "kappa": fleiss_kappa(subjects) if subjects else None,
        "alpha_nominal": krippendorff_alpha(units, "nominal", range(len(CHOICES))),
        "raters": raters,
        "tasks": len(subjects),
        "tasks_left_out": len(rated) - len(subjects),
    }


def _expand(counts: Sequence[int]) -> list[int]:
    """[2, 0, 1] → [0, 0, 2]: one category value per rating."""
    return [category for category, count in enumerate(counts) for _ in range(count)]


# --- 5. accuracy against gold --------------------------------------------------------------------


def _gold_shares(rows: Iterable[JudgementRow]) -> dict[int, _Share]:
    shares: dict[int, _Share] = defaultdict(_Share)
    for row in rows:
        if row.gold_ranking is not None:
            shares[row.annotator_id].add(*relation_agreement(row.ranking, row.gold_ranking))
    return shares


def gold_accuracy(
    rows: Iterable[JudgementRow], *, include_unsure: bool = False
) -> dict[int, float]:
    """Per annotator, the tie-aware pairwise accuracy of their rankings of gold tasks against
    the gold ranking (every gold judgement counts, repeats too); no gold judgement: absent."""
    return _values(_gold_shares(usable(rows, include_unsure)))


def overall_gold_accuracy(
    rows: Iterable[JudgementRow], *, include_unsure: bool = False
) -> float | None:
    """The same accuracy pooled over every gold pair of every annotator."""
    total = _Share()
    for share in _gold_shares(usable(rows, include_unsure)).values():
        total.add(share.hits, share.total)
    return total.value


def gold_judgements(rows: Iterable[JudgementRow], *, include_unsure: bool = False) -> Counter:
    """annotator → gold judgements."""
    usable_rows = usable(rows, include_unsure)
    return Counter(row.annotator_id for row in usable_rows if row.gold_ranking is not None)


# --- 6. time taken ------------------------------------------------------------------------------


def median_times(rows: Iterable[JudgementRow]) -> dict[str, float | None]:
    """Median ms per part (ranking, scoring, total) over the rows that recorded it.

    Unsure judgements count: the time was spent either way.
    """
    rows = list(rows)
    medians: dict[str, float | None] = {}
    for part in TIMING_PARTS:
        values = [value for row in rows if (value := getattr(row, f"{part}_ms")) is not None]
        medians[part] = float(statistics.median(values)) if values else None
    return medians


def median_times_by_annotator(
    rows: Iterable[JudgementRow],
) -> dict[int, dict[str, float | None]]:
    by_annotator: dict[int, list[JudgementRow]] = defaultdict(list)
    for row in rows:
        by_annotator[row.annotator_id].append(row)
    return {annotator: median_times(own) for annotator, own in sorted(by_annotator.items())}


# --- 7. position bias ---------------------------------------------------------------------------


def position_bias(
    rows: Iterable[JudgementRow], *, include_unsure: bool = False
) -> dict[str, float | int | None]:
    """How often the first-shown variant lands in the top tier, against chance.

    chance: the expected share if position did not matter, i.e. the mean over rows of
    |top tier| / K (a tied top tier holds the first-shown variant more often).
    z: (wins − Σ p) / sqrt(Σ p (1 − p)) with p = |top tier| / K, a normal approximation of
    the Poisson-binomial count of wins; it treats rows as independent, which judgements by
    the same annotator are not, so read it as optimistic. Rows without a display order whose
    first variant is ranked are left out.
    """
    wins, chances = [], []
    for row in usable(rows, include_unsure):
        ranked = tier_of(row.ranking)
        if not row.display_order or row.display_order[0] not in ranked:
            continue
        top = set(row.ranking[0])
        wins.append(row.display_order[0] in top)
        chances.append(len(top) / len(ranked))
    return _bias_summary(wins, chances)


def _bias_summary(wins: list[bool], chances: list[float]) -> dict[str, float | int | None]:
    if not wins:
        return {"first_shown_wins": None, "chance": None, "z": None, "rows": 0}
    variance = sum(p * (1 - p) for p in chances)
    excess = sum(wins) - sum(chances)
    return {
        "first_shown_wins": sum(wins) / len(wins),
        "chance": statistics.fmean(chances),
        "z": excess / math.sqrt(variance) if variance > 0 else None,
        "rows": len(wins),
    }


# --- 8. per annotator -----------------------------------------------------------------------------


def shared_task_counts(rows: Iterable[JudgementRow]) -> Counter:
    """annotator → tasks they judged that someone else judged too."""
    counts: Counter = Counter()
    for judgements in latest_by_task(rows).values():
        if len(judgements) >= 2:
            counts.update(judgements.keys())
    return counts


def annotator_quality(
    rows: Iterable[JudgementRow], min_items: int = 5, *, include_unsure: bool = False
) -> dict[int, dict[str, Any]]:
    """Per annotator: judgements (all, unsure included), unsure, gold_items, gold_accuracy,
    shared_tasks, agreement, kendall_tau_b. A figure resting on fewer than `min_items` items
    (gold judgements for accuracy, shared tasks for the others) is None: too few to judge a
    person by. Everyone who judged anything is listed."""
    rows = list(rows)
    sure = usable(rows, include_unsure)
    gold, gold_items = gold_accuracy(sure), gold_judgements(sure)
    agreement, tau = pairwise_agreement_by_annotator(sure), kendall_tau_by_annotator(sure)
    shared = shared_task_counts(sure)
    judgements = Counter(row.annotator_id for row in rows)
    unsure = Counter(row.annotator_id for row in rows if row.unsure)
    report = {}
    for annotator in sorted(judgements):
        enough_gold, enough_shared = (
            gold_items[annotator] >= min_items,
            shared[annotator] >= min_items,
        )
        report[annotator] = {
            "judgements": judgements[annotator],
            "unsure": unsure[annotator],
            "gold_items": gold_items[annotator],
            "gold_accuracy": gold.get(annotator) if enough_gold else None,
            "shared_tasks": shared[annotator],
            "agreement": agreement.get(annotator) if enough_shared else None,
            "kendall_tau_b": tau.get(annotator) if enough_shared else None,
        }
    return report


# --- 9. the project report ---------------------------------------------------------------------


def project_report(
    rows: Iterable[JudgementRow],
    aspects: Sequence[str] = ASPECTS,
    *,
    min_items: int = 5,
    include_unsure: bool = False,
    disputed: int = 20,
) -> dict[str, Any]:
    """Everything above for one project, JSON-ready: ids as string keys, None for no data."""
    rows = list(rows)
    sure = usable(rows, include_unsure)
    by_task = latest_by_task(sure)
    return {
        "judgements": len(rows),
        "unsure_judgements": sum(row.unsure for row in rows),
        "tasks": len({row.task_id for row in rows}),
        "multiply_judged_tasks": sum(len(judgements) >= 2 for judgements in by_task.values()),
        "annotators": len({row.annotator_id for row in rows}),
        "ranking": {
            "pairwise_agreement": pairwise_agreement(sure),
            "kendall_tau_b": kendall_tau_between_rankings(sure),
            "pairwise_choice": pairwise_choice_kappa(sure),
        },
        "scores": {"alpha_ordinal": score_alpha_by_aspect(sure, aspects)},
        "gold": {
            "accuracy": overall_gold_accuracy(sure),
            "judgements": sum(gold_judgements(sure).values()),
        },
        "position_bias": position_bias(sure),
        "median_times_ms": median_times(rows),
        "by_annotator": _annotator_report(rows, min_items, include_unsure),
        "disputed_tasks": disputed_tasks(sure, disputed),
    }


def _annotator_report(
    rows: list[JudgementRow], min_items: int, include_unsure: bool
) -> dict[str, dict[str, Any]]:
    quality = annotator_quality(rows, min_items, include_unsure=include_unsure)
    times = median_times_by_annotator(rows)
    return {
        str(annotator): {**figures, "median_times_ms": times[annotator]}
        for annotator, figures in quality.items()
    }
