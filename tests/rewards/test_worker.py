"""The reward loop through a real Celery worker over the embedded Redis: the admin action,
a worker killed in the middle of training, and a scheduled (warm-started) retrain."""

import time
from datetime import timedelta

import pytest
from django.contrib.admin.sites import site
from django.test import RequestFactory
from django.utils import timezone

from annotation.models import Project
from evaluation.simulated_judgements import fill_with_simulated_judgements
from rewards import scheduling
from rewards.admin import retrain_reward_model_now
from rewards.models import RewardTrainingRun
from rewards.runs import execute
from tests.conftest import wait_for

ENV = {"REWARD_MIN_TRAIN_JUDGEMENTS": "10", "REWARD_MIN_VAL_JUDGEMENTS": "2"}


@pytest.fixture
def judged_project(procedural_project, settings):
    settings.REWARD_MIN_TRAIN_JUDGEMENTS = 10
    settings.REWARD_MIN_VAL_JUDGEMENTS = 2
    project = procedural_project(tasks=12, overlap=3)
    fill_with_simulated_judgements(project, 36, annotators=3, seed=5)
    return project


def _admin_request(user):
    request = RequestFactory().post("/admin/annotation/project/")
    request.user = user
    request._messages = []  # the action reports through messages; kept in a list here

    class Messages(list):
        def add(self, level, message, extra_tags=""):
            self.append(str(message))

    request._messages = Messages()
    return request


def test_the_admin_action_trains_a_new_active_version_on_a_worker(
    judged_project, staff, celery_worker
):
    celery_worker(**ENV)
    request = _admin_request(staff)

    retrain_reward_model_now(
        site._registry[Project], request, Project.objects.filter(pk=judged_project.pk)
    )

    run = RewardTrainingRun.objects.get(project=judged_project)
    assert run.trigger == "admin" and run.requested_by == staff
    assert "Queued" in request._messages[0]
    wait_for(lambda: RewardTrainingRun.objects.get(pk=run.pk).is_finished)
    run.refresh_from_db()
    assert run.status == "succeeded", run.message
    assert run.version.is_active
    assert run.version.metrics["test"]["pairwise_accuracy"] >= 0
    # The worker then scores every variant with the new active version.
    wait_for(lambda: run.version.variant_scores.count() == judged_project.tasks.count() * 4)


def test_a_killed_worker_leaves_no_run_stuck_and_the_next_attempt_resumes(
    judged_project, celery_worker, settings
):
    settings.JOB_HEARTBEAT_TIMEOUT_SECONDS = 4
    env = {**ENV, "JOB_HEARTBEAT_TIMEOUT_SECONDS": "4"}
    worker = celery_worker(**env)
    run = scheduling.request_retrain(
        judged_project,
        trigger="api",
        # A checkpoint every 4 steps, and far more steps than the kill leaves time for.
        options={"max_steps": 80, "eval_every": 4, "batch_size": 4, "patience": None},
    )
    wait_for(lambda: list(run.work_dir.glob("checkpoint-*")))

    worker.kill()  # mid-training, after at least one checkpoint

    run.refresh_from_db()
    assert run.status == "running"
    time.sleep(settings.JOB_HEARTBEAT_TIMEOUT_SECONDS + 1)
    assert scheduling.requeue_stalled_runs() == [run.pk]  # what beat runs every minute
    run.refresh_from_db()
    assert run.status == "pending"

    celery_worker(**env)  # a fresh worker picks the requeued run up
    wait_for(lambda: RewardTrainingRun.objects.get(pk=run.pk).is_finished, timeout=400)
    run.refresh_from_db()
    assert run.status == "succeeded", run.message
    assert run.attempts == 2
    assert run.version.config["result"]["resumed_from"] > 0


def test_cancel_stops_a_running_retrain(judged_project, celery_worker):
    celery_worker(**ENV)
    run = scheduling.request_retrain(
        judged_project, trigger="api", options={"epochs": 500, "patience": None}
    )
    wait_for(lambda: RewardTrainingRun.objects.get(pk=run.pk).status == "running")

    run.request_cancel()

    wait_for(lambda: RewardTrainingRun.objects.get(pk=run.pk).is_finished, timeout=120)
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert run.version is None
    assert timezone.now() - run.finished_at < timedelta(minutes=2)


def test_a_scheduled_retrain_warm_starts_from_the_active_version_on_a_worker(
    procedural_project, celery_worker, settings
):
    settings.REWARD_MIN_TRAIN_JUDGEMENTS = 10
    settings.REWARD_MIN_VAL_JUDGEMENTS = 2
    project = procedural_project(tasks=12, overlap=3)
    project.reward_options = {"epochs": 3, "patience": None}
    project.retrain_min_new_judgements = 4
    project.save()
    fill_with_simulated_judgements(project, 30, annotators=3, seed=5)
    first = scheduling.request_retrain(project, trigger="command", enqueue=False)
    execute(first)  # version 1, in this process
    first.refresh_from_db()
    assert first.version.is_active, first.message
    fill_with_simulated_judgements(project, 6, annotators=3, seed=6)  # the new judgements
    celery_worker(**ENV)

    (run,) = scheduling.retrain_due_projects()  # what beat runs

    wait_for(lambda: RewardTrainingRun.objects.get(pk=run.pk).is_finished)
    run.refresh_from_db()
    assert run.status == "succeeded", run.message
    assert run.trigger == "schedule" and run.options["warm_start"] is True
    config = run.version.config
    assert config["warm_started_from"] == first.version.number
    assert config["training"]["epochs"] == 1  # a third of the project's 3
    assert run.version.judgement_ids != first.version.judgement_ids
    assert "warm-started from v1" in run.message
    assert run.version.metrics["versus_active"]["split"] == "val"
