"""Thin Celery tasks: take primary keys, reload rows, call rewards/runs.py or scoring."""

from celery import shared_task

from editloop.jobs import execute_by_pk
from rewards import scheduling
from rewards.models import RewardModelVersion, RewardTrainingRun


@shared_task(name="rewards.retrain", acks_late=True)
def retrain(run_id: int) -> str:
    from rewards.runs import execute  # torch: loaded by the worker only

    return execute_by_pk(RewardTrainingRun, run_id, execute, "project")


@shared_task(name="rewards.retrain_when_due")
def retrain_when_due() -> list[int]:
    """Beat (every few minutes, editable in the admin): retrain the projects that have
    gathered their threshold of new judgements."""
    return [run.pk for run in scheduling.retrain_due_projects()]


@shared_task(name="rewards.requeue_stalled_runs")
def requeue_stalled_runs() -> list[int]:
    return scheduling.requeue_stalled_runs()


@shared_task(name="rewards.score_variants")
def score_variants(version_id: int) -> int:
    """Score the project's variants this version has not scored yet (a rerun scores none
    twice); returns how many were scored now."""
    from rewards.variant_scores import score_project_variants  # torch: worker only

    version = RewardModelVersion.objects.select_related("project").get(pk=version_id)
    return score_project_variants(version)
