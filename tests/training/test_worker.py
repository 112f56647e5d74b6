"""Fine-tuning and generation through a real Celery worker over the embedded Redis: launched
from the API, followed to the end, and a worker killed in the middle of a fine-tune."""

import time

import pytest

from annotation.models import EditTask
from evaluation.simulated_judgements import fill_with_simulated_judgements
from tests.conftest import client_for, wait_for
from training import scheduling
from training.models import FinetuneRun, GenerationRun

ENV = {"FINETUNE_MIN_EXAMPLES": "4", "FINETUNE_EVAL_TASKS": "1"}


@pytest.fixture
def judged_project(procedural_project, settings):
    settings.FINETUNE_MIN_EXAMPLES = 4
    project = procedural_project(tasks=8, overlap=1)
    fill_with_simulated_judgements(project, 8, annotators=2, seed=3)
    return project


def test_a_finetune_then_a_generation_round_from_the_api_on_a_worker(
    judged_project, manager, celery_worker
):
    celery_worker(**ENV)
    api = client_for(manager)

    launched = api.post(
        f"/api/v1/projects/{judged_project.pk}/finetune-runs/",
        {"method": "dpo", "options": {"max_steps": 3, "batch_size": 2}},
        format="json",
    )
    assert launched.status_code == 202
    run_id = launched.json()["id"]
    wait_for(lambda: api.get(f"/api/v1/finetune-runs/{run_id}/").json()["status"]
             not in ("pending", "running"))
    run = api.get(f"/api/v1/finetune-runs/{run_id}/").json()
    assert run["status"] == "succeeded", run["message"]
    assert run["step"] == 3 and len(run["loss_curve"]) == 3
    assert "implicit_accuracy" in run["loss_curve"][-1]

    generation = api.post(
        f"/api/v1/projects/{judged_project.pk}/generation-runs/",
        {"finetune_run": run_id, "variants_per_task": 2, "max_tasks": 2},
        format="json",
    )
    assert generation.status_code == 202, generation.json()
    generation_id = generation.json()["id"]
    wait_for(lambda: GenerationRun.objects.get(pk=generation_id).is_finished)
    done = GenerationRun.objects.get(pk=generation_id)
    assert done.status == "succeeded", done.message
    new = EditTask.objects.filter(project=judged_project, round=2)
    assert new.count() == 2
    assert set(new[0].variants.values_list("model_version", flat=True)) == {
        f"finetune-{run_id}-tiny-random-init"
    }


def test_a_killed_worker_leaves_no_finetune_stuck_and_the_next_attempt_resumes(
    judged_project, celery_worker, settings
):
    settings.JOB_HEARTBEAT_TIMEOUT_SECONDS = 4
    env = {**ENV, "JOB_HEARTBEAT_TIMEOUT_SECONDS": "4"}
    worker = celery_worker(**env)
    run = scheduling.request_finetune(
        judged_project,
        method="supervised",
        evaluate=False,
        # A checkpoint every 2 steps, and far more steps than the kill leaves time for.
        options={"max_steps": 400, "batch_size": 2, "checkpoint_every": 2},
    )
    wait_for(lambda: list(run.work_dir.glob("checkpoint-*")))

    worker.kill()

    run.refresh_from_db()
    assert run.status == "running"
    time.sleep(settings.JOB_HEARTBEAT_TIMEOUT_SECONDS + 1)
    assert scheduling.requeue_stalled_jobs() == [f"FinetuneRun:{run.pk}"]
    run.refresh_from_db()
    assert run.status == "pending"
    FinetuneRun.objects.filter(pk=run.pk).update(options={**run.options, "max_steps": 12})

    celery_worker(**env)
    wait_for(lambda: FinetuneRun.objects.get(pk=run.pk).is_finished, timeout=400)
    run.refresh_from_db()
    assert run.status == "succeeded", run.message
    assert run.attempts == 2
    assert run.result["resumed_from"] >= 2
