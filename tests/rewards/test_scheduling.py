"""Starting retrains: single flight, the scheduled threshold, stalled runs."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.assignment import lease_next_task
from annotation.judgements import submit_judgement
from annotation.models import Project
from annotation.serializers import lease_payload
from rewards import scheduling
from rewards.models import RewardModelVersion, RewardTrainingRun
from tests.conftest import full_judgement


def _judge(project, user, count: int) -> list[int]:
    """``count`` judgements by ``user`` through the annotators' code path; their ids."""
    made = []
    for _ in range(count):
        assignment = lease_next_task(project, user)
        payload = full_judgement(lease_payload(assignment), client_id=str(uuid.uuid4()))
        made.append(submit_judgement(assignment.pk, user, payload)[0].pk)
    return made


def test_it_refuses_a_second_retrain_while_one_is_active(project, manager):
    first = scheduling.request_retrain(project, trigger="api", user=manager, enqueue=False)

    with pytest.raises(scheduling.RetrainAlreadyRunning) as refused:
        scheduling.request_retrain(project, trigger="admin", enqueue=False)

    assert refused.value.run == first
    assert RewardTrainingRun.objects.filter(project=project).count() == 1


def test_a_finished_run_does_not_block_the_next(project):
    first = scheduling.request_retrain(project, trigger="api", enqueue=False)
    first.claim()
    first.finish("failed", "boom")

    second = scheduling.request_retrain(project, trigger="api", enqueue=False)

    assert second.pk != first.pk


def test_it_refuses_unknown_training_options(project):
    with pytest.raises(ValueError, match="learning_rate_typo"):
        scheduling.request_retrain(
            project, trigger="api", options={"learning_rate_typo": 1}, enqueue=False
        )
    assert not RewardTrainingRun.objects.exists()


def test_a_request_overrides_the_projects_reward_options_key_by_key(project):
    project.reward_options = {"epochs": 4, "freeze_fraction": 1.0}
    project.save()

    run = scheduling.request_retrain(project, trigger="api", options={"epochs": 2}, enqueue=False)

    assert run.options == {"epochs": 2, "freeze_fraction": 1.0}


def test_it_refuses_model_options_that_do_not_fit_together(project):
    with pytest.raises(ValueError, match="freeze_fraction"):
        scheduling.request_retrain(
            project, trigger="api", options={"frozen_prefix": True}, enqueue=False
        )
    assert not RewardTrainingRun.objects.exists()


def test_the_schedule_skips_a_project_whose_saved_options_no_longer_hold(
    project, annotator, settings
):
    Project.objects.filter(pk=project.pk).update(reward_options={"renamed_option": 1})
    project.retrain_min_new_judgements = 1
    project.save(update_fields=["retrain_min_new_judgements"])
    _judge(project, annotator, 1)

    assert scheduling.retrain_due_projects() == []
    assert not RewardTrainingRun.objects.exists()


def test_it_counts_new_judgements_since_the_last_version(project, annotator, other_annotator):
    seen = _judge(project, annotator, 2)
    assert scheduling.new_judgements_since_last_version(project) == 2

    RewardModelVersion.objects.create(
        project=project,
        number=1,
        base="tiny",
        directory="x",
        dataset_hash="0" * 64,
        last_judgement_id=max(seen),
    )
    _judge(project, other_annotator, 1)

    assert scheduling.new_judgements_since_last_version(project) == 1


def test_the_schedule_retrains_only_projects_past_their_threshold(project, annotator):
    project.retrain_min_new_judgements = 3
    project.save()
    _judge(project, annotator, 2)

    assert scheduling.retrain_due_projects() == []

    _judge(project, annotator, 1)
    # (the test's transaction never commits, so nothing is sent to the broker here)
    started = scheduling.retrain_due_projects()

    assert [run.trigger for run in started] == ["schedule"]
    assert started[0].new_judgements == 3
    assert scheduling.retrain_due_projects() == []  # single flight


def test_stalled_runs_are_requeued(project, settings):
    run = scheduling.request_retrain(project, trigger="api", enqueue=False)
    run.claim()
    old = timezone.now() - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_SECONDS + 1)
    RewardTrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=old)

    assert scheduling.requeue_stalled_runs() == [run.pk]

    run.refresh_from_db()
    assert run.status == "pending"


def test_the_schedule_does_not_repeat_a_skipped_run_until_more_judgements_come(
    project, annotator, other_annotator
):
    project.retrain_min_new_judgements = 1
    project.save()
    _judge(project, annotator, 1)
    (run,) = scheduling.retrain_due_projects()
    run.claim()
    run.finish("skipped", "needs at least 20 judgements")

    assert scheduling.retrain_due_projects() == []

    _judge(project, other_annotator, 1)
    assert len(scheduling.retrain_due_projects()) == 1
