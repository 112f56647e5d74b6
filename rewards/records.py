"""Database rows → the plain records the ML code trains and evaluates on (rewards/dataset.py).

Django glue only: what a judgement means for training lives in rewards/dataset.py.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db.models import QuerySet

from annotation.models import Image, Variant
from rewards.dataset import ImageRef, JudgementRecord


def image_ref(image: Image) -> ImageRef:
    return ImageRef(path=str(Path(settings.MEDIA_ROOT) / image.file.name), sha256=image.sha256)


def judgement_records(judgements: QuerySet) -> list[JudgementRecord]:
    """One record per judgement, with the task's split, instruction and image files."""
    rows = judgements.select_related("assignment__task__source").order_by("id")
    rows = list(rows)
    variants = _variants_of({row.assignment.task_id for row in rows})
    return [
        JudgementRecord(
            judgement_id=row.pk,
            task_id=row.assignment.task_id,
            annotator_id=row.assignment.annotator_id,
            split=row.assignment.task.split,
            instruction=row.assignment.task.instruction,
            source=image_ref(row.assignment.task.source),
            variants={v.pk: image_ref(v.image) for v in variants[row.assignment.task_id]},
            ranking=row.ranking,
            unsure=row.unsure,
            scores={int(k): dict(v) for k, v in row.scores.items()},
        )
        for row in rows
    ]


def _variants_of(task_ids: set[int]) -> dict[int, list[Variant]]:
    by_task: dict[int, list[Variant]] = {pk: [] for pk in task_ids}
    for variant in Variant.objects.filter(task_id__in=task_ids).select_related("image"):
        by_task[variant.task_id].append(variant)
    return by_task
