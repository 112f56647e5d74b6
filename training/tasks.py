"""Thin Celery tasks: take primary keys, reload rows, call the plain run functions."""

from celery import shared_task

from editloop.jobs import execute_by_pk
from training import scheduling
from training.models import FinetuneRun, GenerationRun


@shared_task(name="training.finetune", acks_late=True)
def finetune(run_id: int) -> str:
    from training.finetune_runs import execute  # torch: loaded by the worker only

    return execute_by_pk(FinetuneRun, run_id, execute, "project")


@shared_task(name="training.generate", acks_late=True)
def generate(run_id: int) -> str:
    from training.generation_runs import execute

    return execute_by_pk(GenerationRun, run_id, execute, "project", "finetune_run")


@shared_task(name="training.requeue_stalled_jobs")
def requeue_stalled_jobs() -> list[str]:
    return scheduling.requeue_stalled_jobs()
