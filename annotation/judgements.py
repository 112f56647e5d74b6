"""Checking and saving an annotator's judgement of one assignment.

A judgement must rank every variant shown exactly once (tiers best→worst, ties within a
tier) and score every variant on every aspect of the project with an integer 0–5.
Anything else is refused with errors keyed by the offending field (RequestInvalid, a 400),
and nothing is saved.
A retry with the same ``client_id`` returns the judgement already saved.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from annotation.assignment import count_slots
from annotation.models import (
    SCORE_MAX,
    SCORE_MIN,
    Assignment,
    EditTask,
    Judgement,
)
from editloop.errors import NON_FIELD, FieldErrors, RequestInvalid

MAX_NOTE_CHARS = 2000
MAX_TIMING_MS = 24 * 60 * 60 * 1000
TIMING_KEYS = ("ranking", "scoring", "total")


class JudgementConflict(Exception):
    """The assignment can no longer take this judgement (HTTP 409)."""


@dataclass
class CleanJudgement:
    client_id: uuid.UUID
    ranking: list[list[int]]
    unsure: bool
    scores: dict[str, dict[str, int]]
    notes: dict[str, dict[str, str]]
    timings_ms: dict[str, int | None] = field(default_factory=dict)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_client_id(payload: object) -> uuid.UUID:
    if not isinstance(payload, dict):
        raise RequestInvalid.of(NON_FIELD, "the body must be a JSON object")
    raw = payload.get("client_id")
    if isinstance(raw, str):
        try:
            return uuid.UUID(raw)
        except ValueError:
            pass
    raise RequestInvalid.of("client_id", "required: a UUID chosen by the client")


def clean_judgement(
    payload: dict, variant_ids: list[int], aspect_keys: list[str]
) -> CleanJudgement:
    errors = FieldErrors()
    client_id = parse_client_id(payload)
    ranking = _clean_ranking(payload.get("ranking"), variant_ids, errors)
    unsure = payload.get("unsure", False)
    if not isinstance(unsure, bool):
        errors.add("unsure", "must be true or false")
    scores = _clean_scores(payload.get("scores"), variant_ids, aspect_keys, errors)
    notes = _clean_notes(payload.get("notes", {}), variant_ids, aspect_keys, errors)
    timings = _clean_timings(payload.get("timings_ms", {}), errors)
    errors.raise_if_any()
    return CleanJudgement(client_id, ranking, unsure, scores, notes, timings)


def _clean_ranking(raw: object, variant_ids: list[int], errors: FieldErrors) -> list[list[int]]:
    shape = "tiers best→worst: a list of non-empty lists of variant ids, e.g. [[3], [1, 2]]"
    if not isinstance(raw, list) or not raw:
        errors.add("ranking", f"required: {shape}")
        return []
    if not all(isinstance(tier, list) and tier for tier in raw):
        errors.add("ranking", f"must be {shape}")
        return []
    named = [variant for tier in raw for variant in tier]
    if not all(_is_int(variant) for variant in named):
        errors.add("ranking", "variant ids must be integers")
        return []
    known = set(variant_ids)
    for variant in sorted({v for v in named if v not in known}):
        errors.add("ranking", f"variant {variant} is not part of this task")
    for variant in sorted({v for v in named if named.count(v) > 1}):
        errors.add("ranking", f"variant {variant} appears more than once")
    for variant in [v for v in variant_ids if v not in named]:
        errors.add("ranking", f"variant {variant} is missing")
    return raw


def _clean_scores(
    raw: object, variant_ids: list[int], aspect_keys: list[str], errors: FieldErrors
) -> dict[str, dict[str, int]]:
    if not isinstance(raw, dict):
        errors.add("scores", "required: an object of variant id → aspect → integer 0–5")
        return {}
    expected = {str(variant) for variant in variant_ids}
    for key in sorted(set(raw) - expected):
        errors.add("scores", f"variant {key} is not part of this task")
    for variant in variant_ids:
        per_aspect = raw.get(str(variant))
        if not isinstance(per_aspect, dict):
            errors.add("scores", f"variant {variant}: missing (give every aspect 0–5)")
            continue
        for aspect in sorted(set(per_aspect) - set(aspect_keys)):
            errors.add("scores", f"variant {variant}: unknown aspect {aspect!r}")
        for aspect in aspect_keys:
            value = per_aspect.get(aspect)
            if aspect not in per_aspect:
                errors.add("scores", f"variant {variant}, aspect {aspect}: missing")
            elif not _is_int(value) or not SCORE_MIN <= value <= SCORE_MAX:
                errors.add(
                    "scores",
                    f"variant {variant}, aspect {aspect}: must be an integer from "
                    f"{SCORE_MIN} to {SCORE_MAX}, got {value!r}",
                )
    return raw


def _clean_notes(
    raw: object, variant_ids: list[int], aspect_keys: list[str], errors: FieldErrors
) -> dict[str, dict[str, str]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errors.add("notes", "must be an object of variant id → aspect → text")
        return {}
    expected = {str(variant) for variant in variant_ids}
    cleaned: dict[str, dict[str, str]] = {}
    for variant, per_aspect in raw.items():
        if variant not in expected:
            errors.add("notes", f"variant {variant} is not part of this task")
            continue
        if not isinstance(per_aspect, dict):
            errors.add("notes", f"variant {variant}: must be an object of aspect → text")
            continue
        for aspect, text in per_aspect.items():
            if aspect not in aspect_keys:
                errors.add("notes", f"variant {variant}: unknown aspect {aspect!r}")
            elif not isinstance(text, str):
                errors.add("notes", f"variant {variant}, aspect {aspect}: must be text")
            elif len(text) > MAX_NOTE_CHARS:
                errors.add(
                    "notes",
                    f"variant {variant}, aspect {aspect}: {len(text)} characters, "
                    f"at most {MAX_NOTE_CHARS}",
                )
            elif text.strip():
                cleaned.setdefault(variant, {})[aspect] = text.strip()
    return cleaned


def _clean_timings(raw: object, errors: FieldErrors) -> dict[str, int | None]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errors.add("timings_ms", "must be an object like {ranking, scoring, total} in ms")
        return {}
    for key in sorted(set(raw) - set(TIMING_KEYS)):
        errors.add("timings_ms", f"unknown timing {key!r}; use {', '.join(TIMING_KEYS)}")
    timings: dict[str, int | None] = {}
    for key in TIMING_KEYS:
        value = raw.get(key)
        if value is None:
            timings[key] = None
        elif not _is_int(value) or not 0 <= value <= MAX_TIMING_MS:
            errors.add("timings_ms", f"{key}: must be an integer of milliseconds, 0 to 24 h")
        else:
            timings[key] = value
    return timings


# --- saving ---------------------------------------------------------------------------


def submit_judgement(
    assignment_id: int, annotator: User, payload: object, *, simulated: bool = False
) -> tuple[Judgement, bool]:
    """Save the judgement; returns (judgement, created). Raises Assignment.DoesNotExist for
    an assignment that is not the annotator's, RequestInvalid, or JudgementConflict.
    ``simulated`` marks judgements made by evaluation/simulated_judgements.py's annotators."""
    client_id = parse_client_id(payload)
    try:
        with transaction.atomic():
            assignment = (
                Assignment.objects.select_for_update(of=("self",))
                .select_related("task__project")
                .get(pk=assignment_id, annotator=annotator)
            )
            if assignment.status == Assignment.Status.SUBMITTED:
                return _retried(assignment, client_id), False
            project = assignment.task.project
            clean = clean_judgement(payload, assignment.display_order, project.aspect_keys)
            _check_lease_can_take_judgement(assignment)
            return _save(assignment, clean, simulated), True
    except IntegrityError as error:
        # The assignment row is locked, so the only unique value that can clash is a
        # client_id the caller already used for another assignment.
        if "client_id" not in str(error):
            raise
        raise RequestInvalid.of("client_id", "already used for another judgement") from None


def _retried(assignment: Assignment, client_id: uuid.UUID) -> Judgement:
    """A retry of the same submission gets the saved judgement; anything else conflicts."""
    judgement = Judgement.objects.get(assignment=assignment)
    if judgement.client_id != client_id:
        raise JudgementConflict("this assignment already has a judgement")
    return judgement


def _check_lease_can_take_judgement(assignment: Assignment) -> None:
    now = timezone.now()
    if assignment.status == Assignment.Status.SKIPPED:
        raise JudgementConflict("this assignment was skipped")
    if assignment.lease_is_live(now):
        return
    # Late: the lease expired. Accept only if nobody else took the slot meanwhile; lock the
    # task row first, as leasing does, so the count cannot change under us.
    EditTask.objects.select_for_update().filter(pk=assignment.task_id).values_list("pk").get()
    slots = count_slots(assignment.task_id, assignment.annotator_id, now)
    task = assignment.task
    if not task.is_gold and slots.holding >= task.project.overlap + task.extra_judgements:
        raise JudgementConflict("the lease expired and the task was given to another annotator")


# The judgement, its score rows, the assignment's new status and the task's count in one
# round trip: this is the hottest write in EditLoop (see docs/benchmarks.md).
_SAVE_SQL = """
WITH judgement AS (
    INSERT INTO annotation_judgement
        (assignment_id, client_id, ranking, unsure, scores, notes,
         ranking_ms, scoring_ms, total_ms, simulated, created_at)
    VALUES (%(assignment)s, %(client_id)s, %(ranking)s, %(unsure)s, %(scores)s, %(notes)s,
            %(ranking_ms)s, %(scoring_ms)s, %(total_ms)s, %(simulated)s, %(now)s)
    RETURNING id
), score_rows AS (
    INSERT INTO annotation_aspectscore (judgement_id, variant_id, aspect, value)
    SELECT judgement.id, row.variant_id, row.aspect, row.value
    FROM judgement,
         unnest(%(variant_ids)s::bigint[], %(aspects)s::text[], %(values)s::smallint[])
             AS row(variant_id, aspect, value)
), submitted AS (
    UPDATE annotation_assignment SET status = 'submitted', finished_at = %(now)s
    WHERE id = %(assignment)s
)
UPDATE annotation_edittask SET judgement_count = judgement_count + 1
WHERE id = %(task)s
RETURNING (SELECT id FROM judgement)
"""


def _save(assignment: Assignment, clean: CleanJudgement, simulated: bool) -> Judgement:
    now = timezone.now()
    rows = [
        (int(variant), aspect, value)
        for variant, per_aspect in clean.scores.items()
        for aspect, value in per_aspect.items()
    ]
    variant_ids, aspects, values = (list(column) for column in zip(*rows, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(
            _SAVE_SQL,
            {
                "assignment": assignment.pk,
                "task": assignment.task_id,
                "client_id": clean.client_id,
                "ranking": Jsonb(clean.ranking),
                "unsure": clean.unsure,
                "scores": Jsonb(clean.scores),
                "notes": Jsonb(clean.notes),
                "ranking_ms": clean.timings_ms.get("ranking"),
                "scoring_ms": clean.timings_ms.get("scoring"),
                "total_ms": clean.timings_ms.get("total"),
                "simulated": simulated,
                "now": now,
                "variant_ids": variant_ids,
                "aspects": aspects,
                "values": values,
            },
        )
        (judgement_id,) = cursor.fetchone()
    assignment.status = Assignment.Status.SUBMITTED
    assignment.finished_at = now
    return Judgement(
        pk=judgement_id,
        assignment=assignment,
        client_id=clean.client_id,
        ranking=clean.ranking,
        unsure=clean.unsure,
        scores=clean.scores,
        notes=clean.notes,
        simulated=simulated,
        created_at=now,
    )


def skip_assignment(assignment_id: int, annotator: User, reason: object) -> Assignment:
    if reason is not None and not isinstance(reason, str):
        raise RequestInvalid.of("reason", "must be text")
    reason = (reason or "").strip()
    if len(reason) > 500:
        raise RequestInvalid.of("reason", f"{len(reason)} characters, at most 500")
    with transaction.atomic():
        assignment = Assignment.objects.select_for_update().get(
            pk=assignment_id, annotator=annotator
        )
        if assignment.status == Assignment.Status.SUBMITTED:
            raise JudgementConflict("this assignment already has a judgement")
        if assignment.status != Assignment.Status.SKIPPED:
            assignment.status = Assignment.Status.SKIPPED
            assignment.skip_reason = reason
            assignment.finished_at = timezone.now()
            assignment.save(update_fields=["status", "skip_reason", "finished_at"])
    return assignment
