"""Judgements and reward-model scores in Postgres → the records the editor trainer takes."""

import uuid

import pytest

from annotation.assignment import lease_next_task
from annotation.judgements import submit_judgement
from annotation.models import EditTask, Variant
from rewards.models import RewardModelVersion, VariantScore
from training.feedback import (
    Filters,
    NotEnoughFeedback,
    edit_examples,
    preference_pairs,
    training_data,
)


@pytest.fixture
def train_project(project):
    """The shared 3-task project with every task on the train split."""
    EditTask.objects.filter(project=project).update(split="train")
    return project


def judge(project, user, ranking_of, scores_of, *, unsure=False, simulated=False):
    """Lease the next task as ``user`` and judge it: ``ranking_of(ids)`` gives the tiers of
    the task's variant ids (in id order), ``scores_of(ids)`` variant → aspect → 0..5."""
    assignment = lease_next_task(project, user)
    ids = sorted(Variant.objects.filter(task_id=assignment.task_id).values_list("id", flat=True))
    payload = {
        "client_id": str(uuid.uuid4()),
        "ranking": ranking_of(ids),
        "unsure": unsure,
        "scores": {str(v): s for v, s in scores_of(ids).items()},
        "notes": {str(ids[-1]): {"quality": "blurry"}},
        "timings_ms": {"total": 1000},
    }
    submit_judgement(assignment.pk, user, payload, simulated=simulated)
    return assignment.task_id, ids


def flat(value: int) -> dict:
    return {"following": value, "preserving": value, "quality": value}


def best_first(ids):
    return [[ids[0]], [ids[1], ids[2]], [ids[3]]]


def falling_scores(ids):
    return {v: flat(5 - n) for n, v in enumerate(ids)}


def test_human_rewards_are_the_mean_of_aspect_scores_over_annotators(
    train_project, annotator, other_annotator
):
    task, ids = judge(train_project, annotator, best_first, falling_scores)
    EditTask.objects.filter(pk=task).update(priority=10)  # so the second annotator gets it
    judge_same_task = lease_next_task(train_project, other_annotator)
    assert judge_same_task.task_id == task
    scores = {ids[0]: flat(3), ids[1]: flat(4), ids[2]: flat(3), ids[3]: flat(0)}
    submit_judgement(
        judge_same_task.pk,
        other_annotator,
        {"client_id": str(uuid.uuid4()), "ranking": best_first(ids),
         "scores": {str(v): s for v, s in scores.items()}},
    )

    examples = edit_examples(train_project, "weighted", "human", None, Filters())

    rewards = {e.edited.name: e.reward for e in examples}
    by_variant = {v.pk: v.image.file.name.rsplit("/", 1)[1] for v in Variant.objects.all()}
    assert rewards[by_variant[ids[0]]] == pytest.approx((5 + 3) / 2)
    assert rewards[by_variant[ids[1]]] == pytest.approx((4 + 4) / 2)
    assert rewards[by_variant[ids[3]]] == pytest.approx((2 + 0) / 2)
    assert len(examples) == 4  # only the judged task's variants carry a reward
    worst = next(e for e in examples if e.edited.name == by_variant[ids[3]])
    assert worst.aspects == {"following": 1.0, "preserving": 1.0, "quality": 1.0}
    assert "quality: blurry" in worst.note
    assert worst.source.is_file() and worst.edited.is_file()
    assert worst.instruction == EditTask.objects.get(pk=task).instruction


def test_supervised_keeps_each_tasks_best_variants(train_project, annotator):
    judge(train_project, annotator, best_first, falling_scores)

    examples = edit_examples(train_project, "supervised", "human", None, Filters())

    assert [e.reward for e in examples] == [5.0]


def test_dpo_pairs_are_every_non_tied_pair_weighted_per_judgement(train_project, annotator):
    _, ids = judge(train_project, annotator, best_first, falling_scores)

    pairs = preference_pairs(train_project, "human", None, Filters())

    names = {v.pk: v.image.file.name.rsplit("/", 1)[1] for v in Variant.objects.all()}
    got = {(p.chosen.name, p.rejected.name) for p in pairs}
    expected = [(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)]  # 1 and 2 are tied: no pair
    assert got == {(names[ids[a]], names[ids[b]]) for a, b in expected}
    assert [p.weight for p in pairs] == [pytest.approx(1 / 5)] * 5


def test_unsure_simulated_and_test_split_feedback_can_be_left_out(
    train_project, annotator, other_annotator
):
    judge(train_project, annotator, best_first, falling_scores, unsure=True)
    judge(train_project, other_annotator, best_first, falling_scores, simulated=True)

    assert preference_pairs(train_project, "human", None, Filters()) == preference_pairs(
        train_project, "human", None, Filters(include_simulated=True)
    )
    assert len(preference_pairs(train_project, "human", None, Filters())) == 5  # unsure dropped
    assert preference_pairs(train_project, "human", None, Filters(include_simulated=False)) == []

    EditTask.objects.filter(project=train_project).update(split="test")
    assert preference_pairs(train_project, "human", None, Filters()) == []


def _model_version(project, scores: dict[int, float]) -> RewardModelVersion:
    version = RewardModelVersion.objects.create(
        project=project, number=1, status="active", base="tiny", is_random_init=True,
        directory="unused", dataset_hash="0" * 64,
    )
    VariantScore.objects.bulk_create(
        VariantScore(variant_id=v, version=version, overall=s, aspects=flat(s)) for v, s in
        scores.items()
    )
    return version


def test_the_reward_model_labels_every_variant_nobody_judged(train_project, annotator):
    judged_task, judged_ids = judge(train_project, annotator, best_first, falling_scores)
    variants = Variant.objects.filter(task__project=train_project).order_by("task_id", "id")
    version = _model_version(train_project, {v.pk: float(v.pk % 4) for v in variants})

    model_only = edit_examples(train_project, "weighted", "model", version, Filters())
    mixed = preference_pairs(train_project, "human+model", version, Filters())

    assert len(model_only) == 12  # all 3 tasks × 4 variants
    assert {e.reward for e in model_only} == {0.0, 1.0, 2.0, 3.0}
    human_pairs = preference_pairs(train_project, "human", None, Filters())
    # The judged task's pairs come from people; the two others' from the model (6 each).
    assert len(mixed) == len(human_pairs) + 2 * 6
    assert set(human_pairs) <= set(mixed)


def test_a_model_source_without_a_reward_model_says_what_to_do(train_project):
    with pytest.raises(NotEnoughFeedback, match="needs a reward model"):
        edit_examples(train_project, "weighted", "model", None, Filters())


def test_too_little_feedback_names_what_is_needed(train_project, annotator, settings):
    settings.FINETUNE_MIN_EXAMPLES = 6
    judge(train_project, annotator, best_first, falling_scores)

    with pytest.raises(NotEnoughFeedback, match="at least 6 chosen/rejected pairs.*found 5"):
        training_data(train_project, "dpo", "human", None, Filters())
    with pytest.raises(NotEnoughFeedback, match="at least 6 judged variants.*found 4"):
        training_data(train_project, "weighted", "human", None, Filters())
    settings.FINETUNE_MIN_EXAMPLES = 4
    assert len(training_data(train_project, "weighted", "human", None, Filters())) == 4


def test_filters_refuse_bad_values_by_name():
    with pytest.raises(ValueError, match="unknown filter.*colour"):
        Filters.from_dict({"colour": "red"})
    with pytest.raises(ValueError, match="rounds"):
        Filters.from_dict({"rounds": [0]})
    with pytest.raises(ValueError, match="include_simulated"):
        Filters.from_dict({"include_simulated": "no"})
    assert Filters.from_dict({"rounds": [2], "generators": ["ip2p"]}) == Filters(
        True, (2,), ("ip2p",)
    )


def test_rounds_and_generators_filter_the_variants(train_project, annotator):
    judge(train_project, annotator, best_first, falling_scores)

    assert edit_examples(train_project, "weighted", "human", None, Filters(rounds=(2,))) == []
    assert edit_examples(
        train_project, "weighted", "human", None, Filters(generators=("elsewhere",))
    ) == []
    assert len(edit_examples(train_project, "weighted", "human", None, Filters(rounds=(1,)))) == 4
