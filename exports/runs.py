"""Dataset exports from request to archive: the glue between ExportRun rows, Postgres
(exports/queries.py) and the plain writers and archive (exports/writers.py,
exports/archive.py).

Requests come from the admin, the API and ``manage.py export_dataset``; the Celery worker
(task ``annotation.export``, exports/tasks.py) and the command call :func:`execute`. An
export that dies with its worker is found by :func:`requeue_stalled_exports` (beat) and
starts over.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from annotation.models import Project
from editloop.errors import RequestInvalid
from editloop.jobs import Outcome, Progress, ProgressListener, enqueue, run_job
from exports import archive, queries, writers
from exports.models import ExportRun, exports_root
from exports.request import ExportRequest, parse_request

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

# Rows per round trip of the server-side cursor, and fetched batches held at most.
FETCH_ROWS = 2_000
PREFETCH_BATCHES = 2
# At most one progress UPDATE (and heartbeat) per this many seconds.
REPORT_SECONDS = 1.0
# The keep-alive heartbeat, between progress reports (at most a quarter of the timeout).
HEARTBEAT_SECONDS = 30.0


# --- starting an export ----------------------------------------------------------------------


def request_export(
    project: Project,
    data: dict,
    *,
    trigger: str = ExportRun.Trigger.API,
    user: User | None = None,
    enqueue: bool = True,
) -> ExportRun:
    """A pending export of ``data`` (kind, format, images, filters, options: see
    exports.request.parse_request), queued once the transaction commits. Raises
    RequestInvalid naming the wrong fields; nothing is created then."""
    request = validated_request(project, data)
    run = ExportRun.objects.create(
        project=project,
        trigger=trigger,
        requested_by=user,
        kind=request.kind,
        format=request.format,
        images=request.images,
        filters=request.filters.to_dict(),
        options=request.options,
    )
    if enqueue:
        transaction.on_commit(lambda: enqueue_export(run.pk))
    return run


def validated_request(project: Project, data: object) -> ExportRequest:
    """``data`` checked as a request for ``project``, the reward version (labels model /
    both) resolved and pinned: the one named, or the project's active version now, so that
    a retried export labels with the same version even if another is promoted meanwhile."""
    request = parse_request(data)
    if request.labels == "human":
        return request
    from rewards.models import RewardModelVersion

    if request.reward_version is None:
        active = RewardModelVersion.active_for(project.pk)
        if active is None:
            raise RequestInvalid(
                {
                    "reward_version": [
                        f"labels {request.labels!r} need a reward-model version and project "
                        f"{project.pk} has no active one: name one (reward_version) or train one"
                    ]
                }
            )
        return replace(request, reward_version=active.pk)
    version = RewardModelVersion.objects.filter(pk=request.reward_version).first()
    if version is None:
        raise RequestInvalid(
            {"reward_version": [f"there is no reward-model version {request.reward_version}"]}
        )
    if version.project_id != project.pk:
        raise RequestInvalid(
            {
                "reward_version": [
                    f"reward-model version {version.pk} belongs to project {version.project_id}, "
                    f"not {project.pk}: its scores judge another project's variants"
                ]
            }
        )
    return request


class ExportCannotRun(Exception):
    """The export cannot be written as requested; the message says what to do."""


def enqueue_export(run_id: int) -> None:
    enqueue("annotation.export", run_id)  # by name: exports/tasks.py imports this module


def request_of(run: ExportRun) -> ExportRequest:
    return parse_request(
        {
            "kind": run.kind,
            "format": run.format,
            "images": run.images,
            "filters": run.filters,
            **run.options,
        }
    )


def requeue_stalled_exports() -> list[int]:
    """Exports whose worker died (no heartbeat) go back to pending and are queued again;
    the next attempt starts over (a partial archive is never kept)."""
    return ExportRun.requeue_stalled(
        enqueue_export, "its worker stopped responding; queued again to start over"
    )


# --- executing one --------------------------------------------------------------------------


def execute(run: ExportRun, on_progress: ProgressListener | None = None) -> None:
    """Write the archive and record it on the run. Safe to call twice: only the caller
    that moves the run to ``running`` does the work. ``on_progress(fraction, message)``
    also sees every report (the command's progress bar)."""
    listeners = [on_progress] if on_progress else []
    run_job(run, export, listeners=listeners, on_cancel=nothing_kept, failures=(ExportCannotRun,))


def nothing_kept(run: ExportRun) -> str:
    return "cancelled; nothing kept"


def export(run: ExportRun, progress: Progress) -> Outcome:
    """The archive, written in a staging folder first: nothing half-written is ever left
    where the download looks, whatever stopped the work."""
    staging, partial = _work_paths(run)
    _remove(staging, partial)  # what an attempt killed with its worker left behind
    try:
        return _export(run, progress, staging, partial)
    finally:
        _remove(staging, partial)


def _work_paths(run: ExportRun) -> tuple[Path, Path]:
    final = exports_root() / run.relative_path
    return final.with_name(f"export-{run.pk}.partial"), final.with_name(final.name + ".partial")


def _remove(staging: Path, partial: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    partial.unlink(missing_ok=True)


def _export(run: ExportRun, progress: Progress, staging: Path, partial: Path) -> Outcome:
    request = request_of(run)
    project = {"id": run.project_id, "name": run.project.name}
    labels, reward_version = model_labels(request)
    with streaming_queries() as run_query:
        ((low, high),) = list(run_query(*queries.key_range_sql(request, run.project_id)))
        reporter = Reporter(progress, low, high)
        reporter.now(0.0, "querying")
        written = writers.write_tables(
            queries.export_rows(request, run.project_id, run_query, labels),
            request.kind,
            request.format,
            request.images,
            staging,
            Path(settings.MEDIA_ROOT),
            reporter,
            layout=request.layout,
            binary_images=request.binary_images,
        )
    total = sum(written.counts.values())
    reporter.now(0.9, f"{total:,} rows written; archiving", rows_written=total)
    kept: dict = {}

    def manifest_for(archived: archive.ArchiveResult) -> dict:
        kept.update(
            archive.manifest(
                request, project, written, archived, timezone.now(), _version(), reward_version
            )
        )
        return kept

    archived = archive.build_archive(staging, written.tables, partial, manifest_for, reporter)
    final = exports_root() / run.relative_path
    partial.replace(final)
    kept["seconds"] = {"rows": round(written.seconds, 3), "archive": round(archived.seconds, 3)}
    return Outcome(
        _summary(written, archived),
        {
            "file": run.relative_path,
            "size_bytes": archived.size_bytes,
            "content_sha256": archived.content_sha256,
            "manifest": kept,
            "counts": written.counts,
            "rows_written": total,
        },
    )


def model_labels(request: ExportRequest) -> tuple[queries.ModelLabels | None, dict | None]:
    """The pinned reward version's ε (for the rows) and its summary (for the manifest)."""
    if request.labels == "human":
        return None, None
    from rewards.models import RewardModelVersion

    version = RewardModelVersion.objects.filter(pk=request.reward_version).first()
    if version is None:
        raise ExportCannotRun(
            f"reward-model version {request.reward_version} was deleted after this export "
            "was requested: start a new export (it takes the active version)"
        )
    summary = archive.reward_version_summary(
        version.pk, version.number, version.status, version.metrics
    )
    return queries.ModelLabels(version.pk, version.number, summary["epsilon"]), summary


@contextmanager
def streaming_queries() -> Iterator[queries.RunQuery]:
    """A query runner over server-side (named) cursors, all in one REPEATABLE READ
    snapshot, on a connection of its own so that progress reports commit while rows
    stream. Inside the caller's transaction (tests, a caller that wants its snapshot) the
    cursors run there instead."""
    if connection.in_atomic_block:
        connection.ensure_connection()
        _plan_for_every_row(connection.connection)
        # Progress reports share this connection: fetch in this thread only.
        yield _runner(connection.connection, prefetch=False)
        return
    import psycopg

    own = connection.get_new_connection(connection.get_connection_params())
    try:
        own.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        own.execute("SET TIME ZONE 'UTC'")  # Django's timestamptz loader expects UTC
        with own.transaction():
            _plan_for_every_row(own)
            yield _runner(own, prefetch=True)
    finally:
        own.close()


def _plan_for_every_row(db: psycopg.Connection) -> None:
    """A cursor is planned for its first 10 % of rows by default (cursor_tuple_fraction):
    with the ranking expanded by jsonb functions the planner cannot size, that picks
    fast-start nested loops that rescan whole tables per judgement (minutes for 100k rows).
    An export reads every row: plan for all of them, for this transaction only."""
    db.execute("SET LOCAL cursor_tuple_fraction = 1.0")


def _runner(db: psycopg.Connection, *, prefetch: bool) -> queries.RunQuery:
    def run_query(sql: str, params: dict) -> Iterator[tuple]:
        # Binary results: timestamps and arrays parse in C, a third faster than text.
        with db.cursor(name=f"export_{uuid.uuid4().hex[:12]}", binary=True) as cursor:
            cursor.itersize = FETCH_ROWS
            cursor.execute(sql, params)
            yield from (prefetched(cursor) if prefetch else cursor)

    return run_query


def prefetched(cursor: psycopg.ServerCursor) -> Iterator[tuple]:
    """The cursor's rows, the next batch fetched by a thread while this one is written:
    Postgres computes rows while Python formats them (a FETCH waits on the socket with the
    GIL released). At most PREFETCH_BATCHES batches wait in memory."""
    batches: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES)
    stop = threading.Event()

    def fetch() -> None:
        try:
            while not stop.is_set():
                batch = cursor.fetchmany(FETCH_ROWS)
                _put(batches, batch, stop)
                if not batch:
                    return
        except BaseException as error:  # handed to the consuming thread
            _put(batches, error, stop)

    worker = threading.Thread(target=fetch, name="export-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            batch = batches.get()
            if isinstance(batch, BaseException):
                raise batch
            if not batch:
                return
            yield from batch
    finally:
        stop.set()
        worker.join()


def _put(batches: queue.Queue, item: object, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            batches.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


class Reporter:
    """The progress callback of writers.write_tables and archive.build_archive: at most one
    UPDATE a second; rows are 0–90 % (placed by their ordering key), the archive the last
    10 %."""

    def __init__(self, progress: Progress, low: int | None, high: int | None) -> None:
        self.progress, self.low, self.high = progress, low, high
        self.last = 0.0

    def __call__(self, phase: str, done: int, key: int | None) -> None:
        if time.monotonic() - self.last < REPORT_SECONDS:
            return
        if phase == "rows":
            # key None: the rows are all written
            done_share = 1.0 if key is None else fraction_done(key, self.low, self.high)
            fraction = 0.9 * done_share
            self.now(fraction, f"{done:,} rows written", rows_written=done)
        else:
            total = max(key or 1, 1)
            self.now(
                0.9 + 0.1 * done / total,
                f"archiving: {archive.human_bytes(done)} of {archive.human_bytes(total)}",
            )

    def now(self, fraction: float, message: str, **fields: object) -> None:
        self.last = time.monotonic()
        self.progress(fraction, message, **fields)


def fraction_done(key: int, low: int | None, high: int | None) -> float:
    """Where ordering key ``key`` sits between ``low`` and ``high`` (0..1)."""
    if low is None or high is None or high <= low:
        return 1.0
    return min(1.0, max(0.0, (key - low) / (high - low)))


def _summary(written: writers.WriteResult, archived: archive.ArchiveResult) -> str:
    counts = written.counts
    text = (
        f"{sum(counts.values()):,} rows ({counts['train']:,} train, {counts['val']:,} val, "
        f"{counts['test']:,} test), {archive.human_bytes(archived.size_bytes)}"
    )
    if archived.images["count"]:
        text += f", {archived.images['count']:,} image files"
    if written.simulated_rows:
        text += f"; {written.simulated_rows:,} rows from simulated annotators"
    return text


def _version() -> str:
    try:
        return metadata.version("editloop")
    except metadata.PackageNotFoundError:
        return "unknown"
