"""Each metric against a case worked out by hand (and scipy where it has the same formula)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.metrics import (
    average_ranks,
    calibrate_epsilon,
    human_ceiling,
    kendall_tau_b,
    multiply_judged,
    reward_metrics,
    spearman,
    weighted_auc,
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


def test_average_ranks_share_positions_like_scipy() -> None:
    assert average_ranks([10, 20, 20, 5]).tolist() == [2, 3.5, 3.5, 1]


def test_spearman_and_kendall_match_scipy_on_random_data_with_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 4, size=7), rng.normal(size=7).round(1)
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, nan_ok=True)
        assert kendall_tau_b(x, y) == pytest.approx(
            stats.kendalltau(x, y, variant="b").statistic, nan_ok=True
        )


def test_correlations_are_undefined_for_a_constant_side() -> None:
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(kendall_tau_b([1, 2, 3], [0, 0, 0]))


def test_weighted_auc_gives_ties_half_credit() -> None:
    assert weighted_auc(np.array([3.0, 1.0]), np.array([2.0, 0.0])) == pytest.approx(3 / 4)
    assert weighted_auc(np.array([1.0]), np.array([1.0])) == pytest.approx(0.5)
    weighted = weighted_auc(np.array([3.0, 1.0]), np.array([2.0]), np.array([1.0, 3.0]))
    assert weighted == pytest.approx(1 / 4)
    assert math.isnan(weighted_auc(np.array([]), np.array([1.0])))


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
