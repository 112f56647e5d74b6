"""``make demo``: embedded Postgres and Redis, migrations, demo data, then the web server,
a Celery worker and beat, until Ctrl-C stops everything this started: each child with
everything it forked (its process group), then the embedded services."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from editloop import services

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# Demo accounts (seeded by ``manage.py seed_demo``); printed before Django is loaded here.
DEMO_PASSWORD = "editloop-demo"
ADMIN = "admin"
ANNOTATORS = ("alice", "bob")

# How long the children get to stop after SIGTERM before their process groups are killed.
STOP_TIMEOUT_S = 20.0


def _stop_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # Ctrl-C, and also SIGTERM or a SIGINT sent to a demo started in the background (where
    # the shell ignores SIGINT), all end in the same orderly shutdown.
    signal.signal(signal.SIGINT, _stop_on_signal)
    signal.signal(signal.SIGTERM, _stop_on_signal)
    started_services: list[str] = []
    children: list[subprocess.Popen] = []
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    try:
        started_services = start_services()
        run_manage("migrate", "--noinput", "-v", "0")
        run_manage("collectstatic", "--noinput", "-v", "0")
        run_manage("seed_demo", "--simulated", os.environ.get("DEMO_SIMULATED_JUDGEMENTS", "240"))
        children = start_processes(host, port)
        print_welcome(host, port)
        wait_for_any_exit(children)
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C must not cut the stopping short and leave the children running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(f"\nStopping… (at most {STOP_TIMEOUT_S:.0f} s)", flush=True)
        stop_processes(children)
        stop_services(started_services)
    return 0


def start_services() -> list[str]:
    """Start the embedded services nobody gave a URL for; return the ones this started."""
    started = []
    if not os.environ.get("DATABASE_URL"):
        if not services.postgres_running(services.postgres_dir()):
            started.append("postgres")
        services.ensure_embedded_postgres()
    if not os.environ.get("CELERY_BROKER_URL"):
        if not services.redis_running(services.redis_dir()):
            started.append("redis")
        services.ensure_embedded_redis()
    return started


def stop_services(started: list[str]) -> None:
    if "redis" in started:
        services.stop_redis()
    if "postgres" in started:
        services.stop_postgres()


def run_manage(*args: str) -> None:
    subprocess.run([PYTHON, str(ROOT / "manage.py"), *args], cwd=ROOT, check=True)


def start_processes(host: str, port: str) -> list[subprocess.Popen]:
    commands = [web_command(host, port), worker_command(), beat_command()]
    return [start_process(command) for command in commands]


def web_command(host: str, port: str) -> list[str]:
    workers = ["--workers", os.environ["WEB_WORKERS"]] if os.environ.get("WEB_WORKERS") else []
    return [
        PYTHON, "-m", "gunicorn", "-c", "python:editloop.gunicorn_conf",
        "--bind", f"{host}:{port}", *workers, "--access-logfile", "-",
    ]  # fmt: skip


def worker_command(queues: Sequence[str] = ("default", "gpu")) -> list[str]:
    return [
        PYTHON, "-m", "celery", "-A", "editloop", "worker", "-Q", ",".join(queues),
        "--concurrency", "2", "--loglevel", "INFO",
    ]  # fmt: skip


def beat_command() -> list[str]:
    schedule = str(services.var_dir() / "celerybeat-schedule")
    return [
        PYTHON, "-m", "celery", "-A", "editloop", "beat", "--loglevel", "INFO",
        "--schedule", schedule,
    ]  # fmt: skip


def start_process(command: list[str], env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """Start a child in a session of its own: Ctrl-C reaches only us, and the child leads a
    process group (pgid = its pid) that holds everything it forks, which stop_processes
    signals as one."""
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)


def print_welcome(host: str, port: str) -> None:
    url = f"http://{host}:{port}/"
    accounts = "\n".join(f"    annotator: {name} / {DEMO_PASSWORD}" for name in ANNOTATORS)
    print(
        f"""
EditLoop demo is running: {url}
    admin:     {ADMIN} / {DEMO_PASSWORD}   ({url}admin/)
{accounts}
    API docs:  {url}api/docs/
Press Ctrl-C to stop the server, worker, beat and the embedded services.
""",
        flush=True,
    )


def wait_for_any_exit(children: list[subprocess.Popen]) -> None:
    while all(child.poll() is None for child in children):
        time.sleep(0.5)
    dead = [child for child in children if child.poll() is not None]
    for child in dead:
        print(f"process {child.args[2:4]} exited with {child.returncode}", flush=True)


def stop_processes(children: list[subprocess.Popen], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM each child's process group, give the children `timeout` s to exit, then
    SIGKILL each group: whatever ignored SIGTERM or outlived its leader goes too. Killing
    only the child's pid once left a busy Celery worker's pool processes running after the
    demo had exited (issue 12)."""
    for child in children:
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _signal_group(child, signal.SIGKILL)
        child.wait()


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(child.pid, signum)  # start_process made the child its group's leader
    except ProcessLookupError:
        pass  # the group is empty: nothing left to stop


if __name__ == "__main__":
    sys.exit(main())
