"""Each metric against a case worked out by hand: the library behind it (scipy, scikit-learn)
must reproduce the hand computation, and the undefined cases stay None."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest

from evaluation.metrics import (
    calibrate_epsilon,
    finite_or_none,
    human_ceiling,
    json_safe,
    kendall_tau_b,
    multiply_judged,
    reward_metrics,
    spearman,
    weighted_auc,
    why_no_correlation,
)
from rewards.dataset import ImageRef, JudgementRecord

REF = ImageRef("unused.png", "0" * 64)


def judgement(
    ranking: list[list[int]],
    scores: dict[int, dict[str, int]] | None = None,
    task_id: int = 1,
    judgement_id: int = 1,
    annotator_id: int = 1,
    unsure: bool = False,
) -> JudgementRecord:
    variants = {v: REF for tier in ranking for v in tier}
    return JudgementRecord(
        judgement_id, task_id, annotator_id, "test", "x", REF, variants, ranking, unsure,
        scores or {},
    )  # fmt: skip


# v1 best; v2 and v3 tied; v4 last. The model gets v1 right, breaks the tie by 0.05 and
# puts v4 above v2 and v3.
CASE = judgement([[1], [2, 3], [4]], scores={1: {"following": 5}, 4: {"following": 1}})
MODEL = {
    1: {"overall": 3.0, "aspects": {"following": 4.5}},
    2: {"overall": 2.0, "aspects": {}},
    3: {"overall": 2.05, "aspects": {}},
    4: {"overall": 2.5, "aspects": {"following": 2.0}},
}


def test_tie_aware_accuracy_counts_human_ties_and_the_models_epsilon() -> None:
    # pairs (1,2) (1,3) (1,4) right; (2,3) a human tie; (2,4) (3,4) wrong
    assert reward_metrics(MODEL, [CASE])["pairwise_accuracy"] == pytest.approx(3 / 6)
    # with eps = 0.1 the model ties 2 and 3 as well
    assert reward_metrics(MODEL, [CASE], epsilon=0.1)["pairwise_accuracy"] == pytest.approx(4 / 6)
    # eps = 0.5 also ties (1,4) and (2,4), both wrong: back to 3/6
    assert reward_metrics(MODEL, [CASE], epsilon=0.5)["pairwise_accuracy"] == pytest.approx(3 / 6)


def test_calibration_picks_the_smallest_best_epsilon() -> None:
    epsilon, accuracy = calibrate_epsilon(MODEL, [CASE])
    assert epsilon == pytest.approx(0.05)
    assert accuracy == pytest.approx(4 / 6)


def test_non_tied_accuracy_skips_human_ties() -> None:
    assert reward_metrics(MODEL, [CASE])["pairwise_accuracy_nontied"] == pytest.approx(3 / 5)


def test_auc_is_over_both_orientations_of_each_non_tied_pair() -> None:
    # r_w - r_l: 1.0, 0.95, 0.5, -0.5, -0.45 against their negatives: 20 of 25 comparisons
    assert reward_metrics(MODEL, [CASE])["roc_auc"] == pytest.approx(20 / 25)


def test_rank_correlations_use_average_ranks_and_tau_b() -> None:
    metrics = reward_metrics(MODEL, [CASE])
    # human ranks [4, 2.5, 2.5, 1], model ranks [4, 1, 2, 3]
    assert metrics["spearman"] == pytest.approx(1.5 / math.sqrt(4.5 * 5))
    # C = 3, D = 2, n0 = 6, one pair tied by the human
    assert metrics["kendall_tau_b"] == pytest.approx(1 / math.sqrt(5 * 6))


def test_aspect_mae_is_over_the_given_scores() -> None:
    assert reward_metrics(MODEL, [CASE])["aspect_mae"] == {"following": pytest.approx(0.75)}


def test_a_missing_model_score_is_an_error_naming_the_variant() -> None:
    with pytest.raises(KeyError, match=r"\[4\]"):
        reward_metrics({v: MODEL[v] for v in (1, 2, 3)}, [CASE])


def test_unsure_judgements_are_left_out_by_default() -> None:
    unsure = judgement([[4], [1], [2, 3]], judgement_id=2, unsure=True)
    assert reward_metrics(MODEL, [CASE, unsure])["judgements"] == 1
    assert reward_metrics(MODEL, [CASE, unsure], include_unsure=True)["judgements"] == 2


def test_spearman_shares_tied_positions_as_average_ranks() -> None:
    # [10, 20, 20, 5] has average ranks [2, 3.5, 3.5, 1], centred [-0.5, 1, 1, -1.5];
    # [1, 2, 3, 4] centred [-1.5, -0.5, 0.5, 1.5]: products 0.75 - 0.5 + 0.5 - 2.25 = -1.5,
    # spreads 4.5 and 5
    assert spearman([10, 20, 20, 5], [1, 2, 3, 4]) == pytest.approx(-1.5 / math.sqrt(4.5 * 5))


def _hand_tau_b(x: list[float], y: list[float]) -> float | None:
    """Kendall (1945): (C - D) / sqrt((n0 - n1)(n0 - n2)), n1/n2 the pairs tied in x/y."""
    pairs = [
        (np.sign(x[i] - x[j]), np.sign(y[i] - y[j])) for i, j in combinations(range(len(x)), 2)
    ]
    concordant = sum(a * b > 0 for a, b in pairs)
    discordant = sum(a * b < 0 for a, b in pairs)
    untied_x, untied_y = sum(a != 0 for a, _ in pairs), sum(b != 0 for _, b in pairs)
    if untied_x == 0 or untied_y == 0:
        return None
    return (concordant - discordant) / math.sqrt(untied_x * untied_y)


def test_kendall_tau_b_matches_the_hand_formula_on_random_data_with_ties() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        x, y = rng.integers(0, 3, size=6).tolist(), rng.integers(0, 4, size=6).tolist()
        expected = _hand_tau_b(x, y)
        assert kendall_tau_b(x, y) == (None if expected is None else pytest.approx(expected))


def test_spearman_and_kendall_match_scipy_on_random_data_with_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 4, size=7), rng.normal(size=7).round(1)
        expected_rho = stats.spearmanr(x, y).statistic
        expected_tau = stats.kendalltau(x, y, variant="b").statistic
        # scipy's NaN is our None: undefined, never a number
        assert spearman(x, y) == (None if math.isnan(expected_rho) else pytest.approx(expected_rho))
        assert kendall_tau_b(x, y) == (
            None if math.isnan(expected_tau) else pytest.approx(expected_tau)
        )


def test_correlations_are_undefined_for_nan_scores() -> None:
    assert why_no_correlation([3, 2, 1], [0.1, math.nan, 0.3]) == "NaN scores"
    assert spearman([3, 2, 1], [0.1, math.nan, 0.3]) is None
    assert kendall_tau_b([3, 2, 1], [0.1, math.nan, 0.3]) is None


def test_correlations_are_undefined_for_a_constant_side() -> None:
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert kendall_tau_b([1, 2, 3], [0, 0, 0]) is None


def test_weighted_auc_gives_ties_half_credit() -> None:
    assert weighted_auc(np.array([3.0, 1.0]), np.array([2.0, 0.0])) == pytest.approx(3 / 4)
    assert weighted_auc(np.array([1.0]), np.array([1.0])) == pytest.approx(0.5)
    weighted = weighted_auc(np.array([3.0, 1.0]), np.array([2.0]), np.array([1.0, 3.0]))
    assert weighted == pytest.approx(1 / 4)
    assert weighted_auc(np.array([]), np.array([1.0])) is None


def _hand_weighted_auc(
    positives: np.ndarray, negatives: np.ndarray, wp: np.ndarray, wn: np.ndarray
) -> float:
    """Every (positive, negative) pair, weight wp * wn: 1 when the positive is above, 1/2 equal."""
    credit = (positives[:, None] > negatives[None, :]) + 0.5 * (
        positives[:, None] == negatives[None, :]
    )
    weights = wp[:, None] * wn[None, :]
    return float((credit * weights).sum() / weights.sum())


def test_weighted_auc_matches_the_pairwise_definition_on_random_tied_data() -> None:
    rng = np.random.default_rng(2)
    for _ in range(30):
        positives, negatives = rng.integers(0, 5, size=7) / 2, rng.integers(0, 5, size=5) / 2
        wp, wn = rng.uniform(0.1, 2, size=7), rng.uniform(0.1, 2, size=5)
        expected = _hand_weighted_auc(positives, negatives, wp, wn)
        assert weighted_auc(positives, negatives, wp, wn) == pytest.approx(expected)


def test_weighted_auc_orders_infinite_scores_and_refuses_nan() -> None:
    # +inf ties +inf (1/2) and beats 0 and -inf; 1 loses to +inf, beats 0 and -inf: 4.5 of 6
    positives, negatives = np.array([math.inf, 1.0]), np.array([math.inf, 0.0, -math.inf])
    assert weighted_auc(positives, negatives) == pytest.approx(4.5 / 6)
    assert weighted_auc(np.array([math.nan]), np.array([0.0])) is None


def test_nan_model_scores_leave_auc_and_correlations_undefined_with_a_reason() -> None:
    scores = {1: {"overall": math.nan}, 2: {"overall": 0.5}, 3: {"overall": 0.1}}

    metrics = reward_metrics(scores, [judgement([[1], [2], [3]])])

    assert metrics["roc_auc"] is None and metrics["roc_auc_undefined"] == "NaN scores"
    assert metrics["spearman_undefined"] == "NaN scores on 1 of 1 rankings"
    # a pair with a NaN score is wrong: only (2, 3) is right
    assert metrics["pairwise_accuracy"] == pytest.approx(1 / 3)
    assert metrics["pairwise_accuracy_nontied"] == pytest.approx(1 / 3)
    assert _no_nan_anywhere(metrics)


# Two annotators on one task: A ranks 1 > 2 > 3, B ranks 1 > {2, 3}.
ANNOTATOR_A = judgement(
    [[1], [2], [3]], {1: {"following": 5}, 2: {"following": 3}, 3: {"following": 1}},
    judgement_id=1, annotator_id=1,
)  # fmt: skip
ANNOTATOR_B = judgement(
    [[1], [2, 3]], {1: {"following": 4}, 2: {"following": 3}, 3: {"following": 3}},
    judgement_id=2, annotator_id=2,
)  # fmt: skip
ALONE = judgement([[7], [8]], task_id=2, judgement_id=3)


def test_the_ceiling_compares_annotators_of_the_same_task() -> None:
    ceiling = human_ceiling([ANNOTATOR_A, ANNOTATOR_B, ALONE])
    assert ceiling["tasks"] == 1 and ceiling["judgements"] == 2  # the lone task is left out
    # each reference gets (1,2) and (1,3) right; (2,3) is a tie for one of them only
    assert ceiling["pairwise_accuracy"] == pytest.approx(4 / 6)
    # non-tied pairs: A's three (B's tie on (2,3) earns half) and B's two
    assert ceiling["pairwise_accuracy_nontied"] == pytest.approx(4.5 / 5)
    assert ceiling["spearman"] == pytest.approx(1.5 / math.sqrt(2 * 1.5))
    assert ceiling["kendall_tau_b"] == pytest.approx(2 / math.sqrt(6))
    assert ceiling["aspect_mae"] == {"following": pytest.approx(1.0)}  # |4-5|, 0, |3-1| twice
    # oriented differences 1, 1, 0 (from B) and 1, 2 (from A) against their negatives
    assert ceiling["roc_auc"] == pytest.approx(24.5 / 25)


def test_model_metrics_also_come_on_the_ceilings_items() -> None:
    scores = {v: {"overall": float(-v)} for v in (1, 2, 3, 7, 8)}
    metrics = reward_metrics(scores, [ANNOTATOR_A, ANNOTATOR_B, ALONE])
    assert metrics["judgements"] == 3
    assert metrics["ceiling_items"]["judgements"] == 2
    assert [r.judgement_id for r in multiply_judged([ANNOTATOR_A, ALONE, ANNOTATOR_B])] == [1, 2]


# --- undefined metrics: None and a reason, never NaN (issue 11) -----------------------------

EVERY_METRIC = ("pairwise_accuracy", "pairwise_accuracy_nontied", "roc_auc", "spearman",
                "kendall_tau_b")  # fmt: skip


def _no_nan_anywhere(value: object) -> bool:
    """True when no float at any depth is NaN or inf (what Postgres' json refuses)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_no_nan_anywhere(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_no_nan_anywhere(v) for v in value)
    return True


def constant(*variants: int, value: float = 0.5) -> dict[int, dict]:
    return {v: {"overall": value, "aspects": {"following": 2.0}} for v in variants}


def test_rank_correlations_are_none_on_constant_single_and_all_tied_input() -> None:
    for correlation in (spearman, kendall_tau_b):
        assert correlation([3, 2, 1], [0.5, 0.5, 0.5]) is None  # constant model scores
        assert correlation([1], [0.3]) is None  # one item
        assert correlation([], []) is None  # nothing
        assert correlation([2, 2, 2], [0.1, 0.2, 0.3]) is None  # all tied by the human


def test_why_no_correlation_names_the_first_reason_that_applies() -> None:
    assert why_no_correlation([1], [1]) == "one variant"
    assert why_no_correlation([2, 2], [1, 1]) == "all variants tied by the annotator"
    assert why_no_correlation([2, 1], [1, 1]) == "constant scores"
    assert why_no_correlation([2, 1], [1, 0]) is None


def test_weighted_auc_is_none_with_one_class_or_no_weight() -> None:
    assert weighted_auc(np.array([1.0, 2.0]), np.array([])) is None
    assert weighted_auc(np.array([]), np.array([])) is None
    assert weighted_auc(np.array([1.0]), np.array([0.0]), np.array([0.0]), np.array([1.0])) is None


def test_constant_scores_leave_correlations_undefined_with_the_count_of_rankings() -> None:
    records = [
        judgement([[1], [2], [3]], judgement_id=1, task_id=1),
        judgement([[4], [5, 6]], judgement_id=2, task_id=2),
    ]

    metrics = reward_metrics(constant(1, 2, 3, 4, 5, 6), records)

    assert metrics["spearman"] is None and metrics["kendall_tau_b"] is None
    assert metrics["spearman_undefined"] == "constant scores on 2 of 2 rankings"
    assert metrics["kendall_tau_b_undefined"] == "constant scores on 2 of 2 rankings"
    # a constant model ties every pair: right on the one human tie of the 6 pairs
    assert metrics["pairwise_accuracy"] == pytest.approx(1 / 6)
    assert metrics["pairwise_accuracy_nontied"] == pytest.approx(0.5)
    assert metrics["roc_auc"] == pytest.approx(0.5)
    assert _no_nan_anywhere(metrics)


def test_constant_scores_on_some_rankings_average_the_rest_and_count_the_skipped() -> None:
    records = [
        judgement([[1], [2], [3]], judgement_id=1, task_id=1),
        judgement([[4], [5]], judgement_id=2, task_id=2),
    ]
    scores = {**constant(1, 2, 3), 4: {"overall": 1.0}, 5: {"overall": 0.0}}

    metrics = reward_metrics(scores, records)

    assert metrics["spearman"] == pytest.approx(1.0)  # the second ranking alone
    assert metrics["kendall_tau_b"] == pytest.approx(1.0)
    assert metrics["spearman_skipped"] == metrics["kendall_tau_b_skipped"] == 1
    assert "spearman_undefined" not in metrics


def test_single_variant_rankings_have_no_pairs_and_say_so() -> None:
    records = [judgement([[1]], judgement_id=1, task_id=1), judgement([[2]], judgement_id=2)]

    metrics = reward_metrics(constant(1, 2), records)

    for name in EVERY_METRIC:
        assert metrics[name] is None, name
    assert metrics["pairwise_accuracy_undefined"] == "no pairs: every ranking has one variant"
    assert metrics["roc_auc_undefined"] == "no pairs: every ranking has one variant"
    assert metrics["spearman_undefined"] == "one variant on 2 of 2 rankings"
    assert metrics["pairs"] == 0
    assert _no_nan_anywhere(metrics)


def test_all_tied_rankings_leave_only_the_tie_aware_accuracy() -> None:
    records = [judgement([[1, 2, 3]], judgement_id=1), judgement([[4, 5]], judgement_id=2)]
    scores = {v: {"overall": float(v)} for v in (1, 2, 3, 4, 5)}

    metrics = reward_metrics(scores, records)

    assert metrics["pairwise_accuracy"] == 0.0  # the model separates what the human tied
    for name in ("pairwise_accuracy_nontied", "roc_auc"):
        assert metrics[name] is None
        assert metrics[f"{name}_undefined"] == "every pair is tied by the annotators"
    assert metrics["spearman_undefined"] == "all variants tied by the annotator on 2 of 2 rankings"
    assert _no_nan_anywhere(metrics)


def test_no_judgements_give_every_metric_none_and_no_judgements_as_the_reason() -> None:
    metrics = reward_metrics({}, [])

    for name in EVERY_METRIC:
        assert metrics[name] is None and metrics[f"{name}_undefined"] == "no judgements"
    assert metrics["aspect_mae"] == {}
    assert metrics["aspect_mae_undefined"] == "no judgements"
    assert metrics["judgements"] == 0 and metrics["pairs"] == 0
    assert metrics["ceiling_items"]["pairwise_accuracy"] is None
    assert _no_nan_anywhere(metrics)


def test_aspect_mae_without_aspect_scores_is_empty_with_a_reason() -> None:
    metrics = reward_metrics(MODEL, [judgement([[1], [2]])])  # no aspect scores given

    assert metrics["aspect_mae"] == {}
    assert metrics["aspect_mae_undefined"] == "no judgement scores an aspect the model predicts"
    assert metrics["pairwise_accuracy"] == pytest.approx(1.0)


def test_calibration_without_pairs_keeps_epsilon_zero_and_no_accuracy() -> None:
    assert calibrate_epsilon({}, []) == (0.0, None)
    assert calibrate_epsilon(constant(1), [judgement([[1]])]) == (0.0, None)
    epsilon, accuracy = calibrate_epsilon(constant(1, 2, 3), [judgement([[1, 2, 3]])])
    assert epsilon == 0.0 and accuracy == pytest.approx(1.0)  # constant ties every tie


def test_the_ceiling_with_one_annotator_per_item_is_undefined_and_says_why() -> None:
    ceiling = human_ceiling([ALONE, judgement([[9], [10]], task_id=3, judgement_id=4)])

    assert ceiling["tasks"] == 0 and ceiling["judgements"] == 0
    for name in EVERY_METRIC:
        assert ceiling[name] is None
        assert "one annotator per item" in ceiling[f"{name}_undefined"]
    assert _no_nan_anywhere(ceiling)
    assert human_ceiling([])["pairwise_accuracy"] is None


def test_the_ceiling_on_all_tied_judgements_keeps_the_defined_figures() -> None:
    first = judgement([[1, 2]], judgement_id=1, annotator_id=1)
    second = judgement([[1, 2]], judgement_id=2, annotator_id=2)

    ceiling = human_ceiling([first, second])

    assert ceiling["pairwise_accuracy"] == pytest.approx(1.0)  # both tied them
    assert ceiling["roc_auc"] is None and ceiling["spearman"] is None
    assert ceiling["spearman_undefined"].endswith("on 2 of 2 rankings")


def test_json_safe_turns_every_nan_and_inf_into_none_at_any_depth() -> None:
    value = {
        "a": float("nan"),
        "b": [1.0, float("inf"), {"c": -float("inf"), "d": np.float32("nan")}],
        "e": (np.float64(0.25), np.int64(3)),
        "f": "text",
        "g": None,
    }

    assert json_safe(value) == {
        "a": None, "b": [1.0, None, {"c": None, "d": None}], "e": [0.25, 3], "f": "text",
        "g": None,
    }  # fmt: skip
    assert finite_or_none(float("nan")) is None and finite_or_none(2.0) == 2.0
