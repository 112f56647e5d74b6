"""``make demo`` stops what it started: each child runs in a process group of its own, and
stopping signals the whole group, so nothing a child forked outlives the demo (issue 12)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from celery import shared_task

from editloop import demo

# The worker under test imports this module for its job (--include), so the conftest
# (Playwright, the annotation models) is imported inside the tests, not here.


@shared_task(name="tests.demo.long_job")
def long_job(marker: str, seconds: float) -> None:
    """A job far longer than any test that, as real jobs may, runs a process of its own: it
    says which processes run it, then waits for that process (which sleeps)."""
    helper = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])
    Path(marker).write_text(f"{os.getpid()} {helper.pid}")
    helper.wait()


def group_members(pgid: int) -> list[psutil.Process]:
    """Live processes of the process group. Zombies are dead, only not yet reaped (this
    container's init does not reap orphans), so they do not count."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
    return members


def kill_group(pgid: int) -> None:
    """Clean-up after a failed test: leave nothing behind."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def queue(settings):
    """A queue of this test's own on the embedded Redis (the demo may share the broker);
    deleted afterwards with the job the stopped worker handed back to it."""
    from editloop.celery import app

    name = f"test-demo-{uuid.uuid4().hex[:8]}"
    yield name
    with app.connection_for_write() as connection:
        connection.default_channel.queue_delete(name)


def test_it_stops_a_busy_celery_worker_and_what_its_job_started(
    transactional_db, settings, queue, tmp_path
):
    # given: the demo's worker, started as the demo starts it, busy on a long job
    from editloop.celery import app
    from tests.conftest import database_url_of_this_test, wait_for

    environment = {
        **os.environ,
        "DATABASE_URL": database_url_of_this_test(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "MODEL_ROOT": str(settings.MODEL_ROOT),
    }
    command = demo.worker_command(queues=[queue]) + ["--include", __name__]
    worker = demo.start_process(command, env=environment)
    try:
        marker = tmp_path / "started"
        app.send_task("tests.demo.long_job", args=[str(marker), 600], queue=queue)
        wait_for(lambda: marker.exists() and marker.read_text(), timeout=120)
        pool_pid, helper_pid = map(int, marker.read_text().split())
        busy = [psutil.Process(pool_pid), psutil.Process(helper_pid)]
        assert busy[0].ppid() == worker.pid  # the pool process: a grandchild of the demo
        # the worker, its two pool processes and the job's own process
        assert len(group_members(worker.pid)) >= 4

        # when
        started = time.monotonic()
        demo.stop_processes([worker], timeout=15)

        # then: nothing of the group is left, the busy pool process and the job's own
        # process included (on Linux Celery has its pool processes killed when the worker
        # dies, but not what a job started: that outlived the old pid-only SIGKILL)
        wait_for(lambda: group_members(worker.pid) == [], timeout=5)  # SIGKILL lands async
        for process in busy:
            assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
        assert worker.returncode is not None
        assert time.monotonic() - started < 15  # SIGTERM to the group sufficed
    finally:
        kill_group(worker.pid)


# The child forks a grandchild that ignores SIGTERM and sleeps, then sleeps itself.
FORKS_A_STUBBORN_GRANDCHILD = """
import subprocess, sys, time
grandchild = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "open(sys.argv[1], 'w').write('ready'); time.sleep(600)"
)
subprocess.Popen([sys.executable, "-c", grandchild, sys.argv[1]])
time.sleep(600)
"""


def test_it_kills_the_group_when_a_grandchild_ignores_sigterm(tmp_path):
    # given
    from tests.conftest import wait_for

    marker = tmp_path / "ready"
    child = demo.start_process([sys.executable, "-c", FORKS_A_STUBBORN_GRANDCHILD, str(marker)])
    try:
        wait_for(marker.exists, timeout=30)
        assert os.getsid(child.pid) == child.pid  # a session, so a group, of its own
        assert len(group_members(child.pid)) == 2

        # when
        started = time.monotonic()
        demo.stop_processes([child], timeout=1)

        # then: the child went at SIGTERM; the grandchild only with the group's SIGKILL
        assert time.monotonic() - started < 10
        assert child.returncode == -signal.SIGTERM
        wait_for(lambda: group_members(child.pid) == [], timeout=5)  # SIGKILL lands async
    finally:
        kill_group(child.pid)


def test_it_stops_children_that_already_exited(tmp_path):
    child = demo.start_process([sys.executable, "-c", "pass"])
    child.wait(timeout=30)

    demo.stop_processes([child], timeout=1)  # no group left to signal: no error

    assert child.returncode == 0
