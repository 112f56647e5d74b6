"""Celery tasks, run by a real worker process over the real (embedded) Redis broker."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.assignment import lease_next_task
from annotation.models import Assignment
from annotation.tasks import expire_leases


@pytest.fixture
def worker_queue(celery_worker):
    return celery_worker().queue


def test_a_worker_expires_stale_leases(project, annotator, worker_queue):
    stale = lease_next_task(project, annotator)
    Assignment.objects.filter(pk=stale.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    result = expire_leases.apply_async(queue=worker_queue)

    assert result.get(timeout=60) == 1
    stale.refresh_from_db()
    assert stale.status == "expired"


def test_beat_schedules_the_lease_reaper(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["expire-stale-leases"]

    assert entry["task"] == expire_leases.name
    assert entry["schedule"] <= timedelta(minutes=5)
