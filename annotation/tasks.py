from celery import shared_task

from annotation import assignment


@shared_task(name="annotation.expire_leases")
def expire_leases() -> int:
    """Beat, every minute: mark expired leases so stats and the admin show them as such."""
    return assignment.expire_leases()


@shared_task(name="annotation.export", acks_late=True)
def export(run_id: int) -> str:
    """A dataset export (annotation/export_runs.py); light work: the default queue."""
    from annotation.export_runs import execute
    from annotation.models import ExportRun

    run = ExportRun.objects.select_related("project").get(pk=run_id)
    execute(run)
    run.refresh_from_db()
    return run.status


@shared_task(name="annotation.requeue_stalled_exports")
def requeue_stalled_exports() -> list[int]:
    """Beat, every minute: exports whose worker died start over on another."""
    from annotation.export_runs import requeue_stalled_exports

    return requeue_stalled_exports()
