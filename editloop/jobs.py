"""The abstract Job every long-running piece of work is a row of (DESIGN.md, "Data model"),
and the one runner that executes them.

A job row holds status, progress 0..1, a message, a heartbeat and timestamps; a thin
Celery task reloads it by pk and hands it to :func:`run_job` with the job type's plain
work function. The runner owns every status transition: it claims the row, keeps its
heartbeat alive from a thread of its own whatever phase the work is in (so the stale-job
reaper never takes a live job for dead), maps the known outcomes (not enough data →
skipped, a cancel → cancelled, a missing file → failed naming it, a user-fixable failure →
failed with its message, anything else → failed with the error) and finishes the row.
Status changes are compare-and-set ``update()`` calls whose row count is checked, so
running a task twice (a redelivered message, a retry) is harmless: only one caller ever
moves a job from ``pending`` to ``running``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Q
from django.utils import timezone

log = logging.getLogger(__name__)

RESUME_MESSAGE = "its worker stopped responding; queued again to resume from the last checkpoint"
HEARTBEAT_SECONDS = 30.0  # at most; a quarter of JOB_HEARTBEAT_TIMEOUT_SECONDS when shorter


class JobCancelled(Exception):
    """Raised inside a job's work when somebody asked it to stop."""


class JobSkipped(Exception):
    """The job has nothing to do yet (too few judgements, no feedback): it ends as
    ``skipped`` with this message, which says what is missing."""


class JobFailed(Exception):
    """A failure the user can fix (a bad request found late, an unreadable image): the
    job ends as ``failed`` with this message and no traceback in the worker's log."""


class Job(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        SKIPPED = "skipped"

    ACTIVE = (Status.PENDING, Status.RUNNING)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    progress = models.FloatField(default=0.0)
    message = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="How many times a worker started it (a resume counts)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def is_finished(self) -> bool:
        return not self.is_active

    def claim(self) -> bool:
        """pending → running; False when another worker got it first (or it was cancelled)."""
        now = timezone.now()
        claimed = (
            type(self)
            .objects.filter(pk=self.pk, status=self.Status.PENDING)
            .update(
                status=self.Status.RUNNING,
                started_at=now,
                heartbeat_at=now,
                attempts=models.F("attempts") + 1,
            )
        )
        if claimed:
            self.refresh_from_db()
        return bool(claimed)

    def report(self, progress: float, message: str = "", **fields: object) -> None:
        """Progress, heartbeat and any extra columns in one UPDATE; raises JobCancelled when
        a cancel was requested, so the work stops at its next report."""
        values = {
            "progress": max(0.0, min(1.0, progress)),
            "heartbeat_at": timezone.now(),
            **fields,
        }
        if message:
            values["message"] = message
        type(self).objects.filter(pk=self.pk, status=self.Status.RUNNING).update(**values)
        for name, value in values.items():
            setattr(self, name, value)
        if self.cancel_was_requested():
            raise JobCancelled(f"{self} was cancelled")

    def cancel_was_requested(self) -> bool:
        return type(self).objects.filter(pk=self.pk, cancel_requested=True).exists()

    def finish(self, status: str, message: str = "", **fields: object) -> bool:
        """running (or pending) → a final status; False if it had already finished."""
        values = {"status": status, "finished_at": timezone.now(), **fields}
        if message:
            values["message"] = message
        if status == self.Status.SUCCEEDED:
            values["progress"] = 1.0
        done = type(self).objects.filter(pk=self.pk, status__in=self.ACTIVE).update(**values)
        if done:
            for name, value in values.items():
                setattr(self, name, value)
        return bool(done)

    def request_cancel(self) -> bool:
        """A pending job is cancelled at once; a running one stops at its next report."""
        cancelled_now = (
            type(self)
            .objects.filter(pk=self.pk, status=self.Status.PENDING)
            .update(
                status=self.Status.CANCELLED,
                cancel_requested=True,
                finished_at=timezone.now(),
                message="cancelled before it started",
            )
        )
        if not cancelled_now:
            type(self).objects.filter(pk=self.pk, status=self.Status.RUNNING).update(
                cancel_requested=True
            )
        self.refresh_from_db()
        return self.cancel_requested

    @classmethod
    def create_single_flight(cls, busy: Callable[[Job], Exception], **fields: object) -> Job:
        """A new pending job. Where the model's partial unique index allows one active job
        per project, a second request raises ``busy(the active job)``: the database holds
        the rule, so two simultaneous requests cannot both get through."""
        try:
            with transaction.atomic():
                return cls.objects.create(**fields)
        except IntegrityError:
            active = cls.objects.filter(project=fields["project"], status__in=cls.ACTIVE).first()
            if active is None:
                raise
            raise busy(active) from None

    @classmethod
    def stale(cls) -> models.QuerySet:
        """Running jobs whose worker stopped sending heartbeats (killed, lost, OOM)."""
        limit = timezone.now() - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_SECONDS)
        return cls.objects.filter(status=cls.Status.RUNNING).filter(
            Q(heartbeat_at__lt=limit) | Q(heartbeat_at__isnull=True)
        )

    def requeue_if_stale(self, message: str = RESUME_MESSAGE) -> bool:
        """running with a stale heartbeat → pending again, to resume from its last
        checkpoint; compare-and-set, so two reapers cannot both requeue it."""
        limit = timezone.now() - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_SECONDS)
        requeued = (
            type(self)
            .objects.filter(pk=self.pk, status=self.Status.RUNNING, heartbeat_at__lt=limit)
            .update(status=self.Status.PENDING, message=message)
        )
        if requeued:
            self.refresh_from_db()
        return bool(requeued)

    @classmethod
    def requeue_stalled(
        cls, enqueue: Callable[[int], None], message: str = RESUME_MESSAGE
    ) -> list[int]:
        """Every job whose worker died goes back to pending and is queued again (once the
        transaction commits); returns their ids. Beat runs this every minute."""
        requeued = [job.pk for job in cls.stale() if job.requeue_if_stale(message)]
        for pk in requeued:
            transaction.on_commit(lambda pk=pk: enqueue(pk))
        return requeued


# --- the runner -------------------------------------------------------------------------------

ProgressListener = Callable[[float, str], None]
J = TypeVar("J", bound=Job)


@dataclass(frozen=True)
class Outcome:
    """What a job's work returns when it succeeded: the final message and columns."""

    message: str
    fields: dict[str, object] = field(default_factory=dict)


class Progress:
    """What a job's work reports through: the row (:meth:`Job.report`: progress, heartbeat,
    cancel check) and every listener given to the runner (a command's progress bar)."""

    def __init__(self, job: Job, listeners: Sequence[ProgressListener] = ()) -> None:
        self.job, self.listeners = job, tuple(listeners)

    def __call__(self, fraction: float, message: str = "", **fields: object) -> None:
        self.job.report(fraction, message, **fields)
        for listener in self.listeners:
            listener(fraction, message or self.job.message)


Work = Callable[[J, Progress], Outcome]


def cancelled_plainly(job: Job) -> str:
    return "cancelled"


def run_job(
    job: J,
    work: Work,
    *,
    listeners: Sequence[ProgressListener] = (),
    on_cancel: Callable[[J], str] = cancelled_plainly,
    cancels: tuple[type[Exception], ...] = (),
    failures: tuple[type[Exception], ...] = (),
) -> bool:
    """Claim ``job``, run ``work(job, progress)`` with the heartbeat kept alive, and finish
    the row by what happened. ``on_cancel(job)`` gives the cancelled message (and may do
    the job type's last rites, e.g. score what a cancelled round made); ``cancels`` are
    the exceptions besides JobCancelled that mean a cancel (a trainer's own, raised from
    its ``should_stop``: this module stays torch-free, so it cannot name them); ``failures``
    are the job type's own exception types whose message is meant for the user. Returns False
    when another caller had claimed the job (nothing was done). Unknown errors are logged
    and raised again after the row is marked failed, so Celery records them too."""
    if not job.claim():
        return False
    status = job.Status
    try:
        with keep_alive(job):
            outcome = work(job, Progress(job, listeners))
    except JobSkipped as reason:
        job.finish(status.SKIPPED, str(reason))
    except (JobCancelled, *cancels):
        job.finish(status.CANCELLED, on_cancel(job))
    except FileNotFoundError as error:
        job.finish(status.FAILED, missing_file_message(error))
    except (JobFailed, *failures) as error:
        job.finish(status.FAILED, str(error))
    except Exception as error:
        log.exception("%s failed", job)
        job.finish(status.FAILED, f"{type(error).__name__}: {error}")
        raise
    else:
        job.finish(status.SUCCEEDED, outcome.message, **outcome.fields)
    return True


def missing_file_message(error: FileNotFoundError) -> str:
    """The file named, and what to do; an error raised with a sentence of its own (the
    exporters' "image … is missing from MEDIA_ROOT …") keeps that sentence."""
    if error.filename is None:
        return str(error)
    return f"missing file {error.filename}: re-import that image, or fix the path that names it"


def heartbeat_seconds() -> float:
    return min(HEARTBEAT_SECONDS, settings.JOB_HEARTBEAT_TIMEOUT_SECONDS / 4)


@contextmanager
def keep_alive(job: Job) -> Iterator[None]:
    """A heartbeat every :func:`heartbeat_seconds` from a thread of its own while the work
    runs, for the phases that report nothing for a while (one slow edit in an evaluation,
    a big first FETCH, zipping a large table): a job that is alive is never requeued."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(heartbeat_seconds()):
                type(job).objects.filter(pk=job.pk, status=job.Status.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
        finally:
            connection.close()  # this thread's own connection

    name = f"job-{job._meta.label}-{job.pk}-heartbeat"
    thread = threading.Thread(target=beat, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def enqueue(task: str, *args: object) -> None:
    """Queue a Celery task by its registered name: the code that starts work needs no
    import of the module that does it (no scheduling <-> tasks import circles)."""
    from editloop.celery import app

    app.send_task(task, args=args)


def execute_by_pk(model: type[J], pk: int, execute: Callable[[J], object], *related: str) -> str:
    """The body of every job's Celery task: reload the row, execute it, return its status."""
    job = model.objects.select_related(*related).get(pk=pk)
    execute(job)
    job.refresh_from_db()
    return job.status
