"""Which task an annotator judges next, safe under any number of concurrent callers.

Rules (DESIGN.md, "Assignment"):
- each regular task is judged by ``project.overlap`` distinct annotators; a slot is held
  by a submitted judgement or by a lease that has not expired;
- never the same annotator twice on one task (also a unique constraint);
- highest priority first, then fewest judgements, then oldest;
- gold tasks are served at the project's gold rate, to every annotator once;
- variants are shown in a fresh random order per assignment, and that order is stored.

Concurrency: a candidate task row is claimed with ``FOR UPDATE SKIP LOCKED``. Every
change to the set of assignments holding a slot on a task (a new lease, a late
submission of an expired lease) happens while holding that row lock, and the slot
count is re-read with a fresh statement after the lock is taken, so two callers can
never both take the last slot.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from annotation.models import Assignment, EditTask, Project, Variant

MAX_CANDIDATE_TRIES = 8

_CANDIDATE_SQL = """
SELECT t.id
FROM annotation_edittask t
WHERE t.project_id = %(project)s
  AND t.is_gold = %(gold)s
  AND (%(gold)s OR t.judgement_count < %(overlap)s)
  AND t.id <> ALL(%(rejected)s)
  AND NOT EXISTS (
      SELECT 1 FROM annotation_assignment mine
      WHERE mine.task_id = t.id AND mine.annotator_id = %(annotator)s)
  AND (%(gold)s OR (
      SELECT count(*) FROM annotation_assignment a
      WHERE a.task_id = t.id
        AND (a.status = 'submitted' OR (a.status = 'leased' AND a.expires_at > %(now)s))
  ) < %(overlap)s)
ORDER BY t.priority DESC, t.judgement_count ASC, t.id ASC
LIMIT 1
FOR UPDATE OF t SKIP LOCKED
"""

_SLOTS_SQL = """
SELECT
  count(*) FILTER (
      WHERE status = 'submitted' OR (status = 'leased' AND expires_at > %(now)s)),
  coalesce(bool_or(annotator_id = %(annotator)s), false)
FROM annotation_assignment
WHERE task_id = %(task)s
"""


@dataclass(frozen=True)
class SlotCount:
    holding: int
    annotator_has_one: bool


def lease_next_task(
    project: Project,
    annotator: User,
    *,
    keep: frozenset[int] = frozenset(),
    rng: random.Random | None = None,
) -> Assignment | None:
    """The annotator's next assignment, or None when there is no work for them.

    ``keep`` holds assignment ids the caller already has on screen (the task being
    judged, a prefetched one); any other live lease of theirs is handed back first, so
    reloading the page resumes work instead of stranding a lease.
    """
    rng = rng or random.Random()
    now = timezone.now()
    with transaction.atomic():
        resumed = _live_lease_to_resume(project, annotator, keep, now)
        if resumed is not None:
            return _with_variants_shown(resumed)
        want_gold = project.gold_rate > 0 and rng.random() < project.gold_rate
        task_id = None
        if want_gold:
            task_id = _claim_task(project, annotator, now, gold=True)
        if task_id is None:
            task_id = _claim_task(project, annotator, now, gold=False)
        if task_id is None:
            return None
        return _create_lease(project, task_id, annotator, now, rng)


def _live_lease_to_resume(
    project: Project, annotator: User, keep: frozenset[int], now: datetime
) -> Assignment | None:
    return (
        Assignment.objects.filter(
            annotator=annotator,
            task__project=project,
            status=Assignment.Status.LEASED,
            expires_at__gt=now,
        )
        .exclude(pk__in=keep)
        .select_related("task__source")
        .order_by("leased_at")
        .first()
    )


def _claim_task(project: Project, annotator: User, now: datetime, *, gold: bool) -> int | None:
    """Lock the best task the annotator may take; None when none is left."""
    rejected: list[int] = []
    with connection.cursor() as cursor:
        for _ in range(MAX_CANDIDATE_TRIES):
            cursor.execute(
                _CANDIDATE_SQL,
                {
                    "project": project.pk,
                    "gold": gold,
                    "overlap": project.overlap,
                    "annotator": annotator.pk,
                    "now": now,
                    "rejected": rejected,
                },
            )
            row = cursor.fetchone()
            if row is None:
                return None
            task_id = row[0]
            # The candidate query's snapshot predates our lock: re-count with a fresh one.
            slots = count_slots(task_id, annotator.pk, now)
            if not slots.annotator_has_one and (gold or slots.holding < project.overlap):
                return task_id
            rejected.append(task_id)
    return None


def count_slots(task_id: int, annotator_id: int, now: datetime) -> SlotCount:
    with connection.cursor() as cursor:
        cursor.execute(_SLOTS_SQL, {"task": task_id, "annotator": annotator_id, "now": now})
        holding, has_one = cursor.fetchone()
    return SlotCount(holding=holding, annotator_has_one=has_one)


def _create_lease(
    project: Project, task_id: int, annotator: User, now: datetime, rng: random.Random
) -> Assignment:
    variants = list(Variant.objects.filter(task_id=task_id).select_related("image"))
    rng.shuffle(variants)
    assignment = Assignment.objects.create(
        task_id=task_id,
        annotator=annotator,
        leased_at=now,
        expires_at=now + project.lease_length,
        display_order=[variant.pk for variant in variants],
    )
    assignment.task = EditTask.objects.select_related("source").get(pk=task_id)
    assignment.variants_shown = variants
    return assignment


def _with_variants_shown(assignment: Assignment) -> Assignment:
    """Attach the task's variants, with their images, in the order this annotator sees them."""
    by_id = Variant.objects.select_related("image").in_bulk(assignment.display_order)
    assignment.variants_shown = [by_id[pk] for pk in assignment.display_order]
    return assignment


def expire_leases(now: datetime | None = None) -> int:
    """Mark leases past their expiry as expired; their slots are already free."""
    now = now or timezone.now()
    return Assignment.objects.filter(
        status=Assignment.Status.LEASED, expires_at__lte=now
    ).update(status=Assignment.Status.EXPIRED)
