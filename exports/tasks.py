"""Thin Celery tasks: take primary keys, reload rows, call exports/runs.py.

The names are those of the days when exports lived in annotation/: queued messages, the
beat schedule in django-celery-beat's tables and stored task results still name them.
"""

from celery import shared_task

from exports import runs
from exports.models import ExportRun


@shared_task(name="annotation.export", acks_late=True)
def export(run_id: int) -> str:
    """A dataset export; light work: the default queue."""
    run = ExportRun.objects.select_related("project").get(pk=run_id)
    runs.execute(run)
    run.refresh_from_db()
    return run.status


@shared_task(name="annotation.requeue_stalled_exports")
def requeue_stalled_exports() -> list[int]:
    """Beat, every minute: exports whose worker died start over on another."""
    return runs.requeue_stalled_exports()
