from celery import shared_task

from annotation import assignment


@shared_task(name="annotation.expire_leases")
def expire_leases() -> int:
    """Beat, every minute: mark expired leases so stats and the admin show them as such."""
    return assignment.expire_leases()
