"""Celery tasks, run by a real worker process over the real (embedded) Redis broker."""

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from annotation.assignment import lease_next_task
from annotation.models import Assignment
from annotation.tasks import expire_leases

ROOT = Path(__file__).resolve().parents[2]


def database_url_of_this_test() -> str:
    settings = connection.settings_dict
    host = settings["HOST"]
    where = f"?host={host}" if host.startswith("/") else ""
    netloc = "" if where else f"{host}:{settings['PORT'] or 5432}"
    credentials = settings["USER"] + (f":{settings['PASSWORD']}" if settings["PASSWORD"] else "")
    return f"postgresql://{credentials}@{netloc}/{settings['NAME']}{where}"


@pytest.fixture
def worker_queue(transactional_db):
    """A Celery worker on a queue of its own, reading and writing this test's database."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DATABASE_URL": database_url_of_this_test()}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "editloop",
            "worker",
            "-Q",
            queue,
            "--pool",
            "solo",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
    )
    yield queue
    worker.terminate()
    worker.wait(timeout=30)


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
