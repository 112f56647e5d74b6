"""The abstract Job, through a concrete one (RewardTrainingRun)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from editloop.jobs import JobCancelled
from rewards.models import RewardTrainingRun


@pytest.fixture
def run(project) -> RewardTrainingRun:
    return RewardTrainingRun.objects.create(project=project)


def test_only_one_caller_claims_a_pending_job(run):
    twin = RewardTrainingRun.objects.get(pk=run.pk)

    assert run.claim() is True
    assert twin.claim() is False
    run.refresh_from_db()
    assert run.status == "running" and run.attempts == 1 and run.started_at is not None


def test_report_writes_progress_and_heartbeat(run):
    run.claim()
    before = run.heartbeat_at

    run.report(0.25, "epoch 1 of 4", current_loss=0.7)

    run.refresh_from_db()
    assert run.progress == 0.25
    assert run.message == "epoch 1 of 4"
    assert run.current_loss == 0.7
    assert run.heartbeat_at >= before


def test_report_clamps_progress(run):
    run.claim()
    run.report(1.7)
    run.refresh_from_db()
    assert run.progress == 1.0


def test_a_pending_job_is_cancelled_at_once(run):
    run.request_cancel()

    run.refresh_from_db()
    assert run.status == "cancelled"
    assert run.claim() is False


def test_a_running_job_stops_at_its_next_report(run):
    run.claim()
    RewardTrainingRun.objects.get(pk=run.pk).request_cancel()

    with pytest.raises(JobCancelled):
        run.report(0.5, "still going")
    run.refresh_from_db()
    assert run.status == "running"  # the worker then finishes it as cancelled


def test_finish_happens_once(run):
    run.claim()

    assert run.finish("succeeded", "done") is True
    assert run.finish("failed", "too late") is False
    run.refresh_from_db()
    assert run.status == "succeeded" and run.progress == 1.0 and run.message == "done"


def test_a_job_without_heartbeats_is_stale_and_requeued_once(run, settings):
    run.claim()
    old = timezone.now() - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_SECONDS + 5)
    RewardTrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=old)

    assert list(RewardTrainingRun.stale()) == [run]
    assert run.requeue_if_stale() is True
    assert RewardTrainingRun.objects.get(pk=run.pk).requeue_if_stale() is False
    run.refresh_from_db()
    assert run.status == "pending" and "resume" in run.message


def test_a_job_with_a_fresh_heartbeat_is_left_alone(run):
    run.claim()

    assert list(RewardTrainingRun.stale()) == []
    assert run.requeue_if_stale() is False
