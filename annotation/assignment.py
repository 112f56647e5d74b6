"""Which task an annotator judges next, safe under any number of concurrent callers.

Rules (DESIGN.md, "Assignment"):
- each regular task is judged by ``project.overlap`` distinct annotators (plus the task's
  ``extra_judgements`` when quality control found its annotators disagreeing); a slot is
  held by a submitted judgement or by a lease that has not expired;
- an annotator paused by quality control gets nothing;
- never the same annotator twice on one task (also a unique constraint);
- highest priority first, then (active learning) the tasks the reward model is least
  sure about, then fewest judgements, then oldest;
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

from annotation.models import Assignment, Project, image_url

MAX_CANDIDATE_TRIES = 8

# One pass over a candidate's few assignments answers both questions (is a slot free, has
# this annotator had it), per row through the (task_id, ...) index: cost stays flat however
# long an annotator's history grows.
_CANDIDATE_SQL = """
SELECT t.id, t.extra_judgements
FROM annotation_edittask t
WHERE t.project_id = %(project)s
  AND t.is_gold = %(gold)s
  AND (%(gold)s OR t.judgement_count < %(overlap)s + t.extra_judgements)
  AND t.id <> ALL(%(rejected)s)
  AND (
      SELECT NOT coalesce(bool_or(a.annotator_id = %(annotator)s), false)
         AND (%(gold)s OR count(*) FILTER (
                 WHERE a.status = 'submitted'
                    OR (a.status = 'leased' AND a.expires_at > %(now)s))
                 < %(overlap)s + t.extra_judgements)
      FROM annotation_assignment a
      WHERE a.task_id = t.id)
ORDER BY t.priority DESC, t.model_priority DESC, t.judgement_count ASC, t.id ASC
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
    """The annotator's next assignment, or None when there is no work for them; raises
    AnnotatorPaused for an annotator quality control has paused.

    ``keep`` holds assignment ids the caller already has on screen (the task being
    judged, a prefetched one); any other live lease of theirs is handed back first, so
    reloading the page resumes work instead of stranding a lease.
    """
    rng = rng or random.Random()
    now = timezone.now()
    with transaction.atomic():
        paused, resumed = _pause_and_live_lease(project, annotator, keep, now)
        if paused is not None:
            raise AnnotatorPaused(
                f"quality control paused you on this project "
                f"({paused or 'a manager paused you'}); a manager can resume you"
            )
        if resumed is not None:
            return _attach_shown_task(Assignment.objects.get(pk=resumed))
        want_gold = project.gold_rate > 0 and rng.random() < project.gold_rate
        task_id = None
        if want_gold:
            task_id = _claim_task(project, annotator, now, gold=True)
        if task_id is None:
            task_id = _claim_task(project, annotator, now, gold=False)
        if task_id is None:
            return None
        return _create_lease(project, task_id, annotator, now, rng)


# One round trip for the two questions every lease asks first: is this annotator paused by
# quality control (the reason, or NULL), and do they hold a live lease to resume?
_PAUSE_AND_RESUME_SQL = """
SELECT
  (SELECT m.flag_reason FROM annotation_membership m
   WHERE m.project_id = %(project)s AND m.user_id = %(annotator)s AND m.paused),
  (SELECT a.id FROM annotation_assignment a
   JOIN annotation_edittask t ON t.id = a.task_id
   WHERE a.annotator_id = %(annotator)s AND a.status = 'leased' AND a.expires_at > %(now)s
     AND t.project_id = %(project)s AND a.id <> ALL(%(keep)s)
   ORDER BY a.leased_at
   LIMIT 1)
"""


class AnnotatorPaused(Exception):
    """Quality control paused this annotator on this project: no tasks until a manager
    resumes them."""


def _pause_and_live_lease(
    project: Project, annotator: User, keep: frozenset[int], now: datetime
) -> tuple[str | None, int | None]:
    with connection.cursor() as cursor:
        cursor.execute(
            _PAUSE_AND_RESUME_SQL,
            {"annotator": annotator.pk, "now": now, "project": project.pk, "keep": list(keep)},
        )
        paused_reason, assignment_id = cursor.fetchone()
    return paused_reason, assignment_id


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
            task_id, extra = row
            # The candidate query's snapshot predates our lock: re-count with a fresh one.
            slots = count_slots(task_id, annotator.pk, now)
            if not slots.annotator_has_one and (gold or slots.holding < project.overlap + extra):
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
    shown = load_shown_task(task_id)
    rng.shuffle(shown.variants)
    assignment = Assignment.objects.create(
        task_id=task_id,
        annotator=annotator,
        leased_at=now,
        expires_at=now + project.lease_length,
        display_order=[variant.id for variant in shown.variants],
    )
    assignment.shown = shown
    return assignment


@dataclass(frozen=True)
class ShownImage:
    sha256: str
    width: int
    height: int

    @property
    def url(self) -> str:
        return image_url(self.sha256)


@dataclass(frozen=True)
class ShownVariant:
    id: int
    image: ShownImage


@dataclass
class ShownTask:
    """What an annotator sees of a task: read in one query on the hot path."""

    id: int
    instruction: str
    category: str
    source: ShownImage
    variants: list[ShownVariant]


_SHOWN_TASK_SQL = """
SELECT t.instruction, t.category, s.sha256, s.width, s.height, v.id, i.sha256, i.width, i.height
FROM annotation_edittask t
JOIN annotation_image s ON s.id = t.source_id
JOIN annotation_variant v ON v.task_id = t.id
JOIN annotation_image i ON i.id = v.image_id
WHERE t.id = %s
ORDER BY v.id
"""


def load_shown_task(task_id: int) -> ShownTask:
    with connection.cursor() as cursor:
        cursor.execute(_SHOWN_TASK_SQL, [task_id])
        rows = cursor.fetchall()
    instruction, category, *source = rows[0][:5]
    variants = [ShownVariant(row[5], ShownImage(*row[6:9])) for row in rows]
    return ShownTask(task_id, instruction, category, ShownImage(*source), variants)


def _attach_shown_task(assignment: Assignment) -> Assignment:
    """The task as this annotator sees it, variants in their stored display order."""
    shown = load_shown_task(assignment.task_id)
    by_id = {variant.id: variant for variant in shown.variants}
    shown.variants = [by_id[pk] for pk in assignment.display_order]
    assignment.shown = shown
    return assignment


def expire_leases(now: datetime | None = None) -> int:
    """Mark leases past their expiry as expired; their slots are already free."""
    now = now or timezone.now()
    return Assignment.objects.filter(status=Assignment.Status.LEASED, expires_at__lte=now).update(
        status=Assignment.Status.EXPIRED
    )
