"""A generation run adds a new round of tasks whose variants the annotation queue serves."""

import pytest

from annotation.models import EditTask, Membership, Variant
from rewards.models import VariantScore
from rewards.tasks import score_variants
from tests.conftest import client_for
from training import generation_runs, scheduling
from training.generation_runs import execute
from training.models import GeneratedTask, GenerationRun


@pytest.fixture
def photo_project(procedural_project, annotator):
    project = procedural_project(tasks=4, overlap=1)
    Membership.objects.create(project=project, user=annotator)
    return project


def _generate(project, **fields) -> GenerationRun:
    run = scheduling.request_generation(project, enqueue=False, **fields)
    execute(run)
    run.refresh_from_db()
    return run


def test_a_round_of_procedural_variants_becomes_new_tasks(photo_project):
    run = _generate(photo_project, seeds=[11, 12, 13], guidance_scales=[[7.5, 1.5]] * 3)

    assert run.status == "succeeded", run.message
    assert (run.round, run.tasks_created, run.variants_created) == (2, 4, 12)
    assert run.progress == 1.0 and "round 2" in run.message
    new = EditTask.objects.filter(project=photo_project, round=2).order_by("id")
    old = EditTask.objects.filter(project=photo_project, round=1).order_by("id")
    assert [(t.source_id, t.instruction, t.split) for t in new] == [
        (t.source_id, t.instruction, t.split) for t in old
    ]
    variant = Variant.objects.filter(task=new[0]).order_by("seed").first()
    assert variant.generator == "procedural"
    assert variant.seed == 11
    assert variant.params["generation_run"] == run.pk
    assert variant.params["guidance_scale"] == 7.5
    assert variant.image.file.storage.exists(variant.image.file.name)


def test_the_annotation_queue_serves_the_new_round(photo_project, annotator):
    for task in EditTask.objects.filter(project=photo_project):
        task.judgement_count = 1  # round 1 is done (overlap 1)
        task.save(update_fields=["judgement_count"])
    _generate(photo_project, variants_per_task=2)

    lease = client_for(annotator).post(f"/api/v1/projects/{photo_project.pk}/next/")

    assert lease.status_code == 200
    task = EditTask.objects.get(pk=lease.json()["assignment"]["task"]["id"])
    assert task.round == 2
    shown = {v["id"] for v in lease.json()["assignment"]["task"]["variants"]}
    assert shown == set(task.variants.values_list("id", flat=True)) and len(shown) == 2


def test_a_resumed_run_generates_only_the_tasks_it_had_not_done(photo_project):
    run = scheduling.request_generation(photo_project, variants_per_task=2, enqueue=False)
    first = EditTask.objects.filter(project=photo_project).order_by("id").first()
    already = EditTask.objects.create(
        project=photo_project, source=first.source, instruction=first.instruction,
        category=first.category, split=first.split, round=run.round,
    )
    GeneratedTask.objects.create(run=run, source_task=first, task=already)

    execute(run)

    run.refresh_from_db()
    assert run.status == "succeeded"
    assert GeneratedTask.objects.filter(run=run).count() == 4
    assert EditTask.objects.filter(project=photo_project, round=2).count() == 4


def test_splits_and_max_tasks_choose_the_sources(photo_project):
    run = _generate(photo_project, variants_per_task=2, splits=["train"], max_tasks=1)

    assert run.tasks_created == 1
    made = GeneratedTask.objects.get(run=run)
    assert made.source_task.split == "train"


def test_a_cancelled_run_stops_between_tasks(photo_project):
    run = scheduling.request_generation(photo_project, variants_per_task=2, enqueue=False)
    GenerationRun.objects.filter(pk=run.pk).update(cancel_requested=True)

    execute(run)

    run.refresh_from_db()
    assert run.status == "cancelled"
    assert run.generated.count() == 0


@pytest.fixture
def queued_scoring(monkeypatch) -> list[int]:
    """Scoring tasks the round queues, recorded instead of sent: the test runs them itself."""
    queued: list[int] = []
    monkeypatch.setattr(generation_runs.score_variants, "delay", queued.append)
    return queued


def test_the_active_reward_model_scores_the_rounds_new_variants(
    photo_project, tiny_version, queued_scoring, django_capture_on_commit_callbacks
):
    version = tiny_version(photo_project)

    with django_capture_on_commit_callbacks(execute=True):
        run = _generate(photo_project, variants_per_task=2)
    assert queued_scoring == [version.pk]
    assert run.message.endswith("reward model v1 is scoring them")
    scored = score_variants(version.pk)  # the queued task, run in this process

    new = set(Variant.objects.filter(task__project=photo_project, task__round=2).values_list(
        "id", flat=True))  # fmt: skip
    have = set(VariantScore.objects.filter(version=version).values_list("variant_id", flat=True))
    assert len(new) == run.variants_created == 8 and new <= have
    # Round 1 had not been scored either: the task covers every unscored variant.
    assert scored == Variant.objects.filter(task__project=photo_project).count() == len(have)
    assert score_variants(version.pk) == 0  # a rerun scores nothing twice


def test_a_second_round_scores_only_its_own_variants(
    photo_project, tiny_version, queued_scoring, django_capture_on_commit_callbacks
):
    version = tiny_version(photo_project)
    with django_capture_on_commit_callbacks(execute=True):
        _generate(photo_project, variants_per_task=2)
    score_variants(version.pk)

    with django_capture_on_commit_callbacks(execute=True):
        second = _generate(photo_project, variants_per_task=2)

    assert queued_scoring == [version.pk, version.pk]
    assert score_variants(version.pk) == second.variants_created > 0
    assert not Variant.objects.filter(task__project=photo_project).exclude(
        reward_scores__version=version
    ).exists()


def test_without_an_active_reward_model_the_round_says_nothing_scores_it(
    photo_project, tiny_version, queued_scoring, django_capture_on_commit_callbacks
):
    tiny_version(photo_project, status="candidate")  # a version, but not an active one

    with django_capture_on_commit_callbacks(execute=True):
        run = _generate(photo_project, variants_per_task=2)

    assert run.status == "succeeded"
    assert queued_scoring == []
    assert "no active reward model to score them" in run.message
    assert not VariantScore.objects.exists()
