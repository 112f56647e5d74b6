"""The abstract Job, through a concrete one (RewardTrainingRun)."""

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from editloop.jobs import JobCancelled, JobFailed, JobSkipped, Outcome, run_job
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


# --- the runner -------------------------------------------------------------------------------


def finished(run: RewardTrainingRun) -> RewardTrainingRun:
    return RewardTrainingRun.objects.get(pk=run.pk)


def test_the_runner_finishes_a_successful_job_with_its_outcome(run):
    heard = []

    def work(job, progress):
        progress(0.5, "half way", judgements_used=7)
        return Outcome("all done", {"judgements_used": 9})

    assert run_job(run, work, listeners=[lambda f, m: heard.append((f, m))]) is True

    done = finished(run)
    assert (done.status, done.message, done.progress, done.judgements_used) == (
        "succeeded", "all done", 1.0, 9,
    )  # fmt: skip
    assert heard == [(0.5, "half way")]


def test_the_runner_does_nothing_for_a_job_another_worker_claimed(run):
    RewardTrainingRun.objects.get(pk=run.pk).claim()

    assert run_job(run, lambda job, progress: pytest.fail("worked twice")) is False
    assert finished(run).status == "running"


class OwnCancel(Exception):
    pass


class OwnFailure(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (JobSkipped("too few judgements: 3 of 20"), "skipped", "too few judgements: 3 of 20"),
        (JobCancelled(), "cancelled", "stopped at step 4"),
        (OwnCancel(), "cancelled", "stopped at step 4"),
        (FileNotFoundError(2, "No such file", "/m/x.png"), "failed", "missing file /m/x.png"),
        (JobFailed("base is not a BLIP checkpoint"), "failed", "base is not a BLIP checkpoint"),
        (OwnFailure("image 1 is unreadable"), "failed", "image 1 is unreadable"),
    ],
    ids=["skipped", "cancelled", "own-cancel", "missing-file", "failed", "own-failure"],
)
def test_the_runner_maps_each_known_outcome(run, error, status, message):
    def work(job, progress):
        raise error

    run_job(
        run, work, on_cancel=lambda job: "stopped at step 4", cancels=(OwnCancel,),
        failures=(OwnFailure,),
    )  # fmt: skip

    done = finished(run)
    assert done.status == status and done.message.startswith(message)
    assert done.finished_at is not None


def test_the_runner_fails_an_unknown_error_and_raises_it_again(run):
    def work(job, progress):
        raise KeyError("aspects")

    with pytest.raises(KeyError):
        run_job(run, work)

    assert (finished(run).status, finished(run).message) == ("failed", "KeyError: 'aspects'")


def test_a_live_job_silent_for_longer_than_the_timeout_is_never_requeued(
    project, transactional_db, settings
):
    # given a heartbeat timeout of 1 s, and a phase that reports nothing for 2.5 s
    settings.JOB_HEARTBEAT_TIMEOUT_SECONDS = 1
    run = RewardTrainingRun.objects.create(project=project)
    requeued, enqueued = [], []

    def slow_phase(job, progress):
        for _ in range(5):
            time.sleep(0.5)  # one slow edit in an evaluation: no report meanwhile
            requeued.extend(RewardTrainingRun.requeue_stalled(enqueued.append))
        return Outcome("done")

    # when the reaper looks every half second while the phase runs
    run_job(run, slow_phase)

    # then it never took the live job for dead, and the job ran once
    assert requeued == [] and enqueued == []
    done = finished(run)
    assert (done.status, done.attempts) == ("succeeded", 1)
    assert not [t for t in threading.enumerate() if t.name.startswith("job-")]
