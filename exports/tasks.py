"""Thin Celery tasks: take primary keys, reload rows, call exports/runs.py.

The names are those of the days when exports lived in annotation/: queued messages, the
beat schedule in django-celery-beat's tables and stored task results still name them.
"""

from celery import shared_task

from editloop.jobs import execute_by_pk
from exports import runs
from exports.models import ExportRun


@shared_task(name="annotation.export", acks_late=True)
def export(run_id: int) -> str:
    """A dataset export; light work: the default queue."""
    return execute_by_pk(ExportRun, run_id, runs.execute, "project")


@shared_task(name="annotation.requeue_stalled_exports")
def requeue_stalled_exports() -> list[int]:
    """Beat, every minute: exports whose worker died start over on another."""
    return runs.requeue_stalled_exports()
