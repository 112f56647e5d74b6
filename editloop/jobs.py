"""The abstract Job every long-running piece of work is a row of (DESIGN.md, "Data model").

A job row holds status, progress 0..1, a message, a heartbeat and timestamps; a thin
Celery task reloads it by pk and calls a plain function that reports through
:meth:`Job.report`. Status changes are compare-and-set ``update()`` calls whose row count
is checked, so running a task twice (a redelivered message, a retry) is harmless: only
one caller ever moves a job from ``pending`` to ``running``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

RESUME_MESSAGE = "its worker stopped responding; queued again to resume from the last checkpoint"


class JobCancelled(Exception):
    """Raised inside a job's work when somebody asked it to stop."""


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
        claimed = type(self).objects.filter(pk=self.pk, status=self.Status.PENDING).update(
            status=self.Status.RUNNING,
            started_at=now,
            heartbeat_at=now,
            attempts=models.F("attempts") + 1,
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
        cancelled_now = type(self).objects.filter(
            pk=self.pk, status=self.Status.PENDING
        ).update(
            status=self.Status.CANCELLED,
            cancel_requested=True,
            finished_at=timezone.now(),
            message="cancelled before it started",
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
        requeued = type(self).objects.filter(
            pk=self.pk, status=self.Status.RUNNING, heartbeat_at__lt=limit
        ).update(status=self.Status.PENDING, message=message)
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
