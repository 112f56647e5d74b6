"""Each agreement figure against a case worked out by hand in the comments, plus published
examples (Krippendorff 2011, Fleiss' kappa on Wikipedia) and cross-checks against scipy and
evaluation/metrics.py. No database needed."""

from __future__ import annotations

import json
import math
import random
from fractions import Fraction

import numpy as np
import pytest
from scipy.stats import kendalltau

from evaluation.agreement import (
    JudgementRow,
    annotator_quality,
    disputed_tasks,
    fleiss_kappa,
    gold_accuracy,
    kendall_tau_between_rankings,
    kendall_tau_by_annotator,
    krippendorff_alpha,
    krippendorff_alpha_ordinal,
    median_times,
    median_times_by_annotator,
    overall_gold_accuracy,
    pairwise_agreement,
    pairwise_agreement_by_annotator,
    pairwise_choice_kappa,
    position_bias,
    project_report,
    ranking_tau_b,
    score_alpha_by_aspect,
    task_agreement,
)

ALICE, BOB, CAROL, DAVE = 10, 20, 30, 40

_ids = iter(range(1, 10_000))


def row(
    task: int,
    annotator: int,
    ranking: list[list[int]],
    *,
    judgement_id: int | None = None,
    scores: dict[int, dict[str, int]] | None = None,
    display: list[int] | None = None,
    gold: list[list[int]] | None = None,
    unsure: bool = False,
    times: tuple[int | None, int | None, int | None] = (None, None, None),
) -> JudgementRow:
    variants = [v for tier in ranking for v in tier]
    return JudgementRow(
        judgement_id=judgement_id if judgement_id is not None else next(_ids),
        task_id=task,
        annotator_id=annotator,
        ranking=ranking,
        scores=scores or {},
        display_order=display if display is not None else sorted(variants),
        ranking_ms=times[0],
        scoring_ms=times[1],
        total_ms=times[2],
        gold_ranking=gold,
        unsure=unsure,
    )


# Task 1 (variants 1, 2, 3); relations on the pairs (1,2) (1,3) (2,3):
#   alice [[1],[2],[3]]  → + + +
#   bob   [[1],[2,3]]    → + + 0
#   carol [[3],[2],[1]]  → − − −
# alice–bob agree on 2 of 3, alice–carol 0 of 3, bob–carol 0 of 3 (bob's tie is not carol's −).
# Task 3 (variants 4, 5): alice and bob both tie them → 1 of 1.
# Task 2: dave is its only rater → no agreement to measure, dave appears nowhere.
PANEL = [
    row(1, ALICE, [[1], [2], [3]]),
    row(1, BOB, [[1], [2, 3]]),
    row(1, CAROL, [[3], [2], [1]]),
    row(3, ALICE, [[4, 5]]),
    row(3, BOB, [[4, 5]]),
    row(2, DAVE, [[6], [7]]),
]


# --- pairwise agreement ----------------------------------------------------------------------


def test_it_pools_agreement_over_annotator_pairs_and_variant_pairs() -> None:
    # (2 + 0 + 0 + 1) agreeing comparisons of (3 + 3 + 3 + 1)
    assert pairwise_agreement(PANEL) == pytest.approx(3 / 10)


def test_it_gives_each_annotator_their_agreement_with_the_others() -> None:
    # alice: 2/3 with bob, 0/3 with carol, 1/1 on task 3 → 3/7; bob the same; carol 0/6
    assert pairwise_agreement_by_annotator(PANEL) == pytest.approx(
        {ALICE: 3 / 7, BOB: 3 / 7, CAROL: 0.0}
    )


def test_it_leaves_out_an_annotator_who_is_the_only_rater() -> None:
    assert DAVE not in pairwise_agreement_by_annotator(PANEL)
    assert pairwise_agreement([row(2, DAVE, [[6], [7]])]) is None
    assert pairwise_agreement([]) is None


def test_task_agreement_feeds_the_disagreement_queue_lowest_first() -> None:
    assert task_agreement(PANEL) == pytest.approx({1: 2 / 9, 3: 1.0})
    assert disputed_tasks(PANEL) == [
        {"task_id": 1, "agreement": pytest.approx(2 / 9)},
        {"task_id": 3, "agreement": 1.0},
    ]
    assert disputed_tasks(PANEL, limit=1) == [{"task_id": 1, "agreement": pytest.approx(2 / 9)}]


def test_identical_rankings_agree_fully_and_reversed_ones_not_at_all() -> None:
    same = [row(1, ALICE, [[1], [2, 3], [4]]), row(1, BOB, [[1], [3, 2], [4]])]
    reversed_ = [row(1, ALICE, [[1], [2], [3]]), row(1, BOB, [[3], [2], [1]])]
    assert pairwise_agreement(same) == 1.0
    assert pairwise_agreement(reversed_) == 0.0


def test_only_an_annotators_latest_judgement_of_a_task_counts() -> None:
    # carol first agreed with alice, then reversed herself: only the reversal counts
    rows = [
        row(1, ALICE, [[1], [2]], judgement_id=1),
        row(1, CAROL, [[1], [2]], judgement_id=2),
        row(1, CAROL, [[2], [1]], judgement_id=3),
    ]
    assert pairwise_agreement(rows) == 0.0
    assert pairwise_agreement(list(reversed(rows))) == 0.0  # by id, not by list order


def test_unsure_judgements_are_left_out_unless_asked_for() -> None:
    rows = [row(1, ALICE, [[1], [2]]), row(1, BOB, [[2], [1]], unsure=True)]
    assert pairwise_agreement(rows) is None
    assert pairwise_agreement(rows, include_unsure=True) == 0.0


def test_only_variants_both_rankings_name_are_compared() -> None:
    # variant 3 only in bob's ranking: the one shared pair (1, 2) agrees
    rows = [row(1, ALICE, [[1], [2]]), row(1, BOB, [[3], [1], [2]])]
    assert pairwise_agreement(rows) == 1.0


def test_equal_to_the_human_ceiling_in_metrics_when_every_task_has_two_annotators() -> None:
    from evaluation.metrics import human_ceiling
    from rewards.dataset import ImageRef, JudgementRecord

    rng = random.Random(3)
    rows = [row(t, a, _random_ranking(rng, 4)) for t in range(30) for a in (ALICE, BOB)]
    ref = ImageRef("unused.png", "0" * 64)
    records = [
        JudgementRecord(
            r.judgement_id, r.task_id, r.annotator_id, "test", "x", ref,
            {v: ref for tier in r.ranking for v in tier}, r.ranking,
        )
        for r in rows
    ]  # fmt: skip
    ceiling = human_ceiling(records)["pairwise_accuracy"]
    assert 0 < ceiling < 1  # random rankings: a case that can tell the two apart
    assert pairwise_agreement(rows) == pytest.approx(ceiling)


# --- Kendall tau-b ---------------------------------------------------------------------------


def test_tau_b_between_annotators_matches_the_hand_computation() -> None:
    # alice–bob: C = 2, D = 0, untied pairs 3 and 2 → 2 / sqrt(6)
    # alice–carol: C = 0, D = 3 → −3 / sqrt(9) = −1
    # bob–carol: C = 0, D = 2 → −2 / sqrt(2 · 3)
    # task 3: both rankings all ties → τ-b undefined, left out
    r = 2 / math.sqrt(6)
    assert kendall_tau_between_rankings(PANEL) == pytest.approx((r - 1 - r) / 3)
    assert kendall_tau_by_annotator(PANEL) == pytest.approx(
        {ALICE: (r - 1) / 2, BOB: 0.0, CAROL: (-1 - r) / 2}
    )


def test_tau_b_is_none_when_every_pair_is_undefined() -> None:
    assert kendall_tau_between_rankings([row(3, ALICE, [[4, 5]]), row(3, BOB, [[5], [4]])]) is None


def _random_ranking(rng: random.Random, size: int) -> list[list[int]]:
    variants = list(range(1, size + 1))
    rng.shuffle(variants)
    tiers: list[list[int]] = [[variants[0]]]
    for variant in variants[1:]:
        if rng.random() < 0.3:
            tiers[-1].append(variant)  # ties
        else:
            tiers.append([variant])
    return tiers


def test_tau_b_agrees_with_scipy_and_metrics_on_random_tied_rankings() -> None:
    from evaluation.metrics import kendall_tau_b

    rng = random.Random(7)
    checked = 0
    for _ in range(200):
        first, second = _random_ranking(rng, 5), _random_ranking(rng, 5)
        ours = ranking_tau_b(first, second)
        x, y = _tier_scores(first), _tier_scores(second)
        reference = kendalltau(x, y, variant="b").statistic
        if math.isnan(reference):
            assert ours is None
            continue
        assert ours == pytest.approx(reference)
        assert ours == pytest.approx(kendall_tau_b(x, y))
        checked += 1
    assert checked > 150


def _tier_scores(ranking: list[list[int]]) -> list[int]:
    tier = {v: i for i, t in enumerate(ranking) for v in t}
    return [-tier[v] for v in sorted(tier)]


# --- Krippendorff's alpha --------------------------------------------------------------------


def test_alpha_reproduces_krippendorff_2011_worked_example() -> None:
    # Krippendorff (2011) "Computing Krippendorff's Alpha-Reliability", §C–E: 4 observers,
    # 12 units, values 1..5, missing data. Published: nominal .743, interval .849; ordinal
    # .815 (checked against the independent `krippendorff` PyPI package: 0.81539).
    n = None
    observers = {
        "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        "C": [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    }
    units = {u: {name: values[u] for name, values in observers.items()} for u in range(12)}
    levels = range(1, 6)
    assert krippendorff_alpha(units, "nominal", levels) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "interval", levels) == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha_ordinal(units, levels) == pytest.approx(0.8154, abs=5e-4)


# Units (coder → value), levels 0..2:
#   u1 a=0 b=0;  u2 a=0 b=1;  u3 a=2 b=2;  u4 a=1 alone (not pairable, ignored)
# Coincidences (each unit m_u = 2, so each ordered pair weighs 1/(2-1) = 1):
#   o00 = 2, o01 = o10 = 1, o22 = 2  →  n0 = 3, n1 = 1, n2 = 2, n = 6
# Ordinal δ²: δ01 = (n0 + n1 − (n0 + n1)/2)² = 2² = 4
#             δ12 = (n1 + n2 − (n1 + n2)/2)² = 1.5² = 2.25
#             δ02 = (n0 + n1 + n2 − (n0 + n2)/2)² = (6 − 2.5)² = 12.25
# Σ o δ² = 1·4 + 1·4 = 8;  Σ n_c n_k δ² = 2 (3·1·4 + 1·2·2.25 + 3·2·12.25) = 180
# α = 1 − (n − 1) · 8 / 180 = 1 − 40/180 = 7/9
# Nominal: Σ o δ² = 2; Σ n_c n_k δ² = n² − Σ n_c² = 36 − 14 = 22; α = 1 − 5·2/22 = 6/11
SMALL = {
    "u1": {"a": 0, "b": 0},
    "u2": {"a": 0, "b": 1},
    "u3": {"a": 2, "b": 2},
    "u4": {"a": 1},
}


def test_ordinal_alpha_matches_the_hand_computation() -> None:
    assert krippendorff_alpha_ordinal(SMALL, levels=range(3)) == pytest.approx(7 / 9)
    # unused levels 3..5 have n_g = 0 and lie outside every δ² above: same α
    assert krippendorff_alpha_ordinal(SMALL) == pytest.approx(7 / 9)
    assert krippendorff_alpha(SMALL, "nominal") == pytest.approx(6 / 11)


def test_alpha_is_one_for_perfect_agreement_and_negative_for_systematic_disagreement() -> None:
    assert krippendorff_alpha_ordinal({1: {"a": 0, "b": 0}, 2: {"a": 3, "b": 3}}) == 1.0
    # u1 a=0 b=5, u2 a=5 b=0: o05 = o50 = 2, n0 = n5 = 2, n = 4;
    # δ05 = (4 − 2)² = 4; Σ o δ² = 16; Σ n n δ² = 2·2·2·4 = 32; α = 1 − 3·16/32 = −0.5
    flipped = {1: {"a": 0, "b": 5}, 2: {"a": 5, "b": 0}}
    assert krippendorff_alpha_ordinal(flipped) == pytest.approx(-0.5)


def test_alpha_is_none_without_pairable_or_varying_values() -> None:
    assert krippendorff_alpha_ordinal({}) is None
    assert krippendorff_alpha_ordinal({1: {"a": 3}, 2: {"b": 4}}) is None  # sole coders
    assert krippendorff_alpha_ordinal({1: {"a": 3, "b": 3}, 2: {"a": 3, "b": None}}) is None


def _hand_alpha(units: dict, metric: str, levels: list[int]) -> float | None:
    """Krippendorff (2011) §C–E written out: coincidences o_ck, marginals n_c, δ²_ck."""
    index = {level: i for i, level in enumerate(levels)}
    o = np.zeros((len(levels), len(levels)))
    for values in units.values():
        present = [index[v] for v in values.values() if v is not None]
        if len(present) >= 2:
            counts = np.bincount(present, minlength=len(levels))
            o += (np.outer(counts, counts) - np.diag(counts)) / (len(present) - 1)
    n_c = o.sum(axis=1)
    if metric == "nominal":
        delta = 1.0 - np.eye(len(levels))
    elif metric == "interval":
        values = np.asarray(levels, dtype=float)
        delta = (values[:, None] - values[None, :]) ** 2
    else:  # ordinal: (Σ_{g=c..k} n_g − (n_c + n_k) / 2)²
        delta = np.zeros((len(levels), len(levels)))
        for c in range(len(levels)):
            for k in range(len(levels)):
                low, high = min(c, k), max(c, k)
                delta[c, k] = (n_c[low : high + 1].sum() - (n_c[c] + n_c[k]) / 2) ** 2
    expected = (np.outer(n_c, n_c) * delta).sum()
    if n_c.sum() < 2 or expected <= 0:
        return None
    return 1.0 - (n_c.sum() - 1) * (o * delta).sum() / expected


def test_alpha_matches_the_2011_formulas_on_random_units_with_missing_values() -> None:
    rng = random.Random(11)
    levels = list(range(6))
    for _ in range(40):
        units = {
            u: {c: rng.choice([None, *levels]) for c in "abcd" if rng.random() < 0.7}
            for u in range(rng.randint(1, 8))
        }
        for metric in ("nominal", "ordinal", "interval"):
            expected = _hand_alpha(units, metric, levels)
            ours = krippendorff_alpha(units, metric, levels)  # type: ignore[arg-type]
            assert ours == (None if expected is None else pytest.approx(expected)), units


def test_alpha_refuses_a_value_outside_the_levels() -> None:
    with pytest.raises(ValueError, match="not among levels"):
        krippendorff_alpha_ordinal({1: {"a": 6, "b": 5}})
    with pytest.raises(ValueError, match="unknown metric"):
        krippendorff_alpha(SMALL, "ratio")  # type: ignore[arg-type]


def test_score_alpha_takes_task_variant_units_and_annotator_coders() -> None:
    # "following" rebuilds SMALL: (task 1, v1) 0/0, (task 1, v2) 0/1, (task 2, v3) 2/2, and
    # (task 3, v4) scored by alice alone → 7/9. "quality" is 4 everywhere → no variation: None.
    def scores(following: dict[int, int]) -> dict[int, dict[str, int]]:
        return {v: {"following": s, "quality": 4} for v, s in following.items()}

    rows = [
        row(1, ALICE, [[1], [2]], scores=scores({1: 0, 2: 0})),
        row(1, BOB, [[1], [2]], scores=scores({1: 0, 2: 1})),
        row(2, ALICE, [[3]], scores=scores({3: 2})),
        row(2, BOB, [[3]], scores=scores({3: 2})),
        row(3, ALICE, [[4]], scores=scores({4: 1})),
        row(2, CAROL, [[3]], scores=scores({3: 0}), unsure=True),  # left out
    ]
    alphas = score_alpha_by_aspect(rows, ["following", "quality", "preserving"])
    assert alphas == {"following": pytest.approx(7 / 9), "quality": None, "preserving": None}


# --- Fleiss' kappa ---------------------------------------------------------------------------


def test_fleiss_kappa_reproduces_the_wikipedia_example() -> None:
    # 10 subjects, 14 raters, 5 categories (Wikipedia, "Fleiss' kappa", worked example)
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    # P_i = (Σ_j n_ij² − 14) / (14·13): numerators 182 46 56 80 60 84 44 32 52 52 = 688
    p_bar = Fraction(688, 10 * 182)  # 0.378
    # column totals 20 28 39 21 32 of 140: P_e = (400 + 784 + 1521 + 441 + 1024) / 140²
    p_e = Fraction(4170, 140**2)  # 0.2128
    expected = (p_bar - p_e) / (1 - p_e)
    assert fleiss_kappa(table) == pytest.approx(float(expected))
    assert fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_small_cases() -> None:
    # P_i = 1, 1, 0 → P̄ = 2/3; p = (1/2, 1/2) → P_e = 1/2; κ = (2/3 − 1/2)/(1/2) = 1/3
    assert fleiss_kappa([[2, 0], [0, 2], [1, 1]]) == pytest.approx(1 / 3)
    assert fleiss_kappa([[2, 0], [0, 2]]) == 1.0
    # every subject split: P̄ = 0, P_e = 1/2 → κ = −1
    assert fleiss_kappa([[1, 1], [1, 1]]) == pytest.approx(-1.0)
    assert fleiss_kappa([[2, 0], [2, 0]]) is None  # one category only: P_e = 1
    assert fleiss_kappa([]) is None


def test_fleiss_kappa_matches_the_1971_formulas_on_random_tables() -> None:
    rng = np.random.default_rng(5)
    for _ in range(40):
        raters, subjects, categories = rng.integers(2, 6), rng.integers(1, 9), rng.integers(2, 5)
        table = np.array(
            [rng.multinomial(raters, [1 / categories] * categories) for _ in range(subjects)]
        )
        p_j = table.sum(axis=0) / table.sum()
        p_i = ((table**2).sum(axis=1) - raters) / (raters * (raters - 1))
        chance = (p_j**2).sum()
        expected = None if chance == 1 else (p_i.mean() - chance) / (1 - chance)
        ours = fleiss_kappa(table.tolist())
        assert ours == (None if expected is None else pytest.approx(expected)), table


def test_fleiss_kappa_refuses_unequal_or_single_raters() -> None:
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([[2, 0], [1, 2]])
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([[1, 0], [0, 1]])


def test_pairwise_choice_kappa_uses_tasks_with_the_common_rater_count() -> None:
    # categories: first (lower id) better / tie / second better
    rows = [
        row(1, ALICE, [[1], [2]]), row(1, BOB, [[1], [2]]),            # [2, 0, 0]
        row(2, ALICE, [[4], [3]]), row(2, BOB, [[3, 4]]),              # [0, 1, 1]
        row(3, ALICE, [[6], [5]]), row(3, BOB, [[6], [5]]),            # [0, 0, 2]
        row(4, ALICE, [[7], [8]]), row(4, BOB, [[7], [8]]),
        row(4, CAROL, [[8], [7]]),                                     # 3 raters: left out
        row(5, ALICE, [[9], [10]]),                                    # one rater: no subject
        row(6, ALICE, [[11], [12], [13]]), row(6, BOB, [[11], [12], [13]]),  # K = 3: ignored
    ]  # fmt: skip
    result = pairwise_choice_kappa(rows)
    # P_i = 1, 0, 1 → P̄ = 2/3; p = (2/6, 1/6, 3/6) → P_e = 14/36; κ = (2/3 − 7/18)/(11/18)
    assert result["kappa"] == pytest.approx(5 / 11)
    assert (result["raters"], result["tasks"], result["tasks_left_out"]) == (2, 3, 1)
    # α (nominal) keeps task 4 too. Coincidences: t1 o00 += 2; t2 o12 = o21 = 1; t3 o22 += 2;
    # t4 (0, 0, 2), m = 3: o00 += 2/2, o02 = o20 = 2/2 → n0 = 4, n1 = 1, n2 = 4, n = 9;
    # Σ o δ² = 4; Σ n_c n_k δ² = 81 − 33 = 48; α = 1 − 8·4/48 = 1/3
    assert result["alpha_nominal"] == pytest.approx(1 / 3)


def test_pairwise_choice_kappa_without_subjects() -> None:
    result = pairwise_choice_kappa([row(5, ALICE, [[9], [10]])])
    assert result == {
        "kappa": None, "alpha_nominal": None, "raters": None, "tasks": 0, "tasks_left_out": 0,
    }  # fmt: skip


# --- gold ------------------------------------------------------------------------------------


GOLD = [[1], [2], [3]]
GOLD_ROWS = [
    row(100, ALICE, [[1], [2], [3]], gold=GOLD),  # 3 of 3
    row(100, BOB, [[1, 2], [3]], gold=GOLD),  # (1,2) tie ≠ gold's +; (1,3) (2,3) right: 2 of 3
    row(101, BOB, [[4], [5]], gold=[[5], [4]]),  # 0 of 1
    row(102, CAROL, [[6, 7]], gold=[[6, 7]]),  # a gold tie matched: 1 of 1
    row(103, CAROL, [[8], [9]], gold=[[9], [8]], unsure=True),  # left out
    row(9, DAVE, [[1], [2]]),  # not a gold task
]


def test_gold_accuracy_is_tie_aware_per_annotator_and_pooled() -> None:
    assert gold_accuracy(GOLD_ROWS) == pytest.approx({ALICE: 1.0, BOB: 2 / 4, CAROL: 1.0})
    # (3 + 2 + 0 + 1) / (3 + 3 + 1 + 1)
    assert overall_gold_accuracy(GOLD_ROWS) == pytest.approx(6 / 8)
    assert gold_accuracy(GOLD_ROWS, include_unsure=True)[CAROL] == pytest.approx(1 / 2)


def test_gold_accuracy_without_gold_tasks() -> None:
    assert gold_accuracy([row(1, DAVE, [[1], [2]])]) == {}
    assert overall_gold_accuracy([]) is None


# --- times -----------------------------------------------------------------------------------


def test_median_times_skip_missing_parts() -> None:
    rows = [
        row(1, ALICE, [[1]], times=(1000, 2000, None)),
        row(2, ALICE, [[1]], times=(3000, 4000, None)),
        row(3, ALICE, [[1]], times=(None, 6000, None), unsure=True),  # time spent still counts
        row(4, BOB, [[1]], times=(5000, None, None)),
    ]
    # ranking [1000, 3000, 5000] → 3000; scoring [2000, 4000, 6000] → 4000; total none
    assert median_times(rows) == {"ranking": 3000.0, "scoring": 4000.0, "total": None}
    assert median_times_by_annotator(rows) == {
        ALICE: {"ranking": 2000.0, "scoring": 4000.0, "total": None},
        BOB: {"ranking": 5000.0, "scoring": None, "total": None},
    }


# --- position bias ---------------------------------------------------------------------------


def test_position_bias_against_an_honest_chance_rate() -> None:
    rows = [
        row(1, ALICE, [[1], [2], [3]], display=[1, 2, 3]),  # first shown wins, p = 1/3
        row(2, ALICE, [[1], [2, 3]], display=[2, 1, 3]),  # loses, p = 1/3
        row(3, ALICE, [[3, 1], [2]], display=[3, 1, 2]),  # wins in a tied top tier, p = 2/3
        row(4, ALICE, [[5], [4]], display=[4, 5]),  # loses, p = 1/2
        row(5, ALICE, [[6], [7]], display=[]),  # no display order: left out
        row(6, ALICE, [[6], [7]], display=[6, 7], unsure=True),  # left out
    ]
    # wins 2/4; chance (1/3 + 1/3 + 2/3 + 1/2) / 4 = 11/24
    # z = (2 − 11/6) / sqrt(2/9 + 2/9 + 2/9 + 1/4) = (1/6) / sqrt(11/12)
    assert position_bias(rows) == {
        "first_shown_wins": 0.5,
        "chance": pytest.approx(11 / 24),
        "z": pytest.approx((1 / 6) / math.sqrt(11 / 12)),
        "rows": 4,
    }


def test_position_bias_flags_an_annotator_who_always_picks_the_first() -> None:
    rows = [row(t, ALICE, [[t], [t + 100]], display=[t, t + 100]) for t in range(20)]
    bias = position_bias(rows)
    # 20 of 20 against chance 1/2: z = (20 − 10) / sqrt(20 · 1/4) = 10 / sqrt(5)
    assert (bias["first_shown_wins"], bias["chance"]) == (1.0, 0.5)
    assert bias["z"] == pytest.approx(10 / math.sqrt(5))


def test_position_bias_without_rows() -> None:
    empty = {"first_shown_wins": None, "chance": None, "z": None, "rows": 0}
    assert position_bias([]) == empty


# --- per annotator and the report ------------------------------------------------------------


def test_annotator_quality_hides_figures_resting_on_too_few_items() -> None:
    rows = PANEL + GOLD_ROWS
    # alice and bob also share gold task 100: alice + + +, bob 0 + + → 2 of 3, τ-b 2/sqrt(6)
    # alice: 2/3 (bob, t1) + 0/3 (carol, t1) + 1/1 (bob, t3) + 2/3 (bob, t100) = 5/10
    #        τ-b: 2/sqrt(6) (t1), −1 (t1), undefined (t3), 2/sqrt(6) (t100)
    quality = annotator_quality(rows, min_items=1)
    assert quality[ALICE] == {
        "judgements": 3, "unsure": 0, "gold_items": 1, "gold_accuracy": 1.0,
        "shared_tasks": 3, "agreement": pytest.approx(5 / 10),
        "kendall_tau_b": pytest.approx((4 / math.sqrt(6) - 1) / 3),
    }  # fmt: skip
    # carol: 3 judgements, one unsure; one usable gold item; shares task 1 only, 0 of 6
    assert quality[CAROL] == {
        "judgements": 3, "unsure": 1, "gold_items": 1, "gold_accuracy": 1.0,
        "shared_tasks": 1, "agreement": 0.0,
        "kendall_tau_b": pytest.approx((-1 - 2 / math.sqrt(6)) / 2),
    }  # fmt: skip
    # dave judged tasks 2 and 9 alone: listed, but no figures
    assert quality[DAVE] == {
        "judgements": 2, "unsure": 0, "gold_items": 0, "gold_accuracy": None,
        "shared_tasks": 0, "agreement": None, "kendall_tau_b": None,
    }  # fmt: skip
    strict = annotator_quality(rows, min_items=2)
    assert strict[ALICE]["gold_accuracy"] is None  # one gold item < 2
    assert strict[BOB]["gold_accuracy"] == pytest.approx(2 / 4)  # two gold items
    assert strict[ALICE]["agreement"] == pytest.approx(5 / 10)  # three shared tasks
    assert strict[CAROL]["agreement"] is None  # one shared task
    assert strict[CAROL]["kendall_tau_b"] is None


def test_project_report_is_plain_json_with_the_figures_above() -> None:
    rows = PANEL + GOLD_ROWS
    report = project_report(rows, ["following"], min_items=1)
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == report  # string keys, no NaN, nothing lost
    assert report["judgements"] == 12
    assert report["unsure_judgements"] == 1
    # PANEL's 3/10 plus alice–bob on gold task 100, 2/3
    assert report["ranking"]["pairwise_agreement"] == pytest.approx(5 / 13)
    assert report["gold"] == {"accuracy": pytest.approx(6 / 8), "judgements": 4}
    assert report["scores"]["alpha_ordinal"] == {"following": None}
    assert report["by_annotator"][str(ALICE)]["gold_accuracy"] == 1.0
    assert report["disputed_tasks"][0]["task_id"] == 1


def test_project_report_of_an_empty_project() -> None:
    report = project_report([], ["following"])
    json.dumps(report, allow_nan=False)
    assert report["ranking"]["pairwise_agreement"] is None
    assert report["by_annotator"] == {}
    assert report["median_times_ms"] == {"ranking": None, "scoring": None, "total": None}
