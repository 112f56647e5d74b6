"""Score a project's variants with a reward-model version, store the scores, and (active
learning) move the tasks whose variants the model cannot tell apart up the queue.

Incremental: a run scores only the variants that version has not scored yet, so every
variant without a human judgement (imported, or made by a generation round) gets a score,
and running it again (a retried task, a second round) scores nothing twice.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet

from annotation.models import EditTask, Variant
from rewards.device import Device, resolve_device, scoring_batch_size
from rewards.feature_cache import shared_cache
from rewards.models import RewardModelVersion, VariantScore
from rewards.records import image_ref
from rewards.registry import loaded_model
from rewards.scoring import ScoreItem, score_items

# Variants read from Postgres (and scores written back) per round trip; each chunk is scored
# in device-sized batches. Large enough that a GPU batch of 256 is never split.
DB_CHUNK = 1024


def unscored_variants(version: RewardModelVersion) -> QuerySet[Variant]:
    """The project's variants this version has no score of yet."""
    scored = VariantScore.objects.filter(version=version, variant=OuterRef("pk"))
    return Variant.objects.filter(task__project=version.project_id).filter(~Exists(scored))


def score_project_variants(
    version: RewardModelVersion,
    on_progress: Callable[[int, int], None] | None = None,
    device: Device | None = None,
    batch_size: int | None = None,
) -> int:
    """Scores every variant of the version's project it has not scored yet, on the worker's
    device (REWARD_DEVICE unless `device` is given); returns how many it scored now."""
    where = resolve_device(device or settings.REWARD_DEVICE)
    size = scoring_batch_size(where, batch_size or settings.REWARD_SCORING_BATCH)
    model = loaded_model(version)
    variants = unscored_variants(version).select_related("image", "task__source")
    cache = shared_cache()
    total, done = variants.count(), 0
    chunk = max(DB_CHUNK, size)
    for batch in _batches(variants.order_by("id").iterator(chunk_size=chunk), chunk):
        items = [
            ScoreItem(
                key=v.pk,
                instruction=v.task.instruction,
                source=image_ref(v.task.source),
                edited=image_ref(v.image),
            )
            for v in batch
        ]
        _store(version, score_items(model, items, size, cache, device=where))
        done += len(batch)
        if on_progress:
            on_progress(done, total)
    if version.project.active_learning and version.is_active:
        update_model_priorities(version)
    return done


def _batches(rows: Iterator[Variant], size: int) -> Iterator[list[Variant]]:
    batch: list[Variant] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _store(version: RewardModelVersion, scores: dict[int, dict]) -> None:
    VariantScore.objects.bulk_create(
        [
            VariantScore(
                variant_id=variant_id,
                version=version,
                overall=score["overall"],
                aspects=score.get("aspects", {}),
            )
            for variant_id, score in scores.items()
        ],
        update_conflicts=True,
        unique_fields=["variant", "version"],
        update_fields=["overall", "aspects"],
    )


def indistinguishability(overall: list[float]) -> float:
    """0..1: how close the model's Bradley–Terry preference between the two closest-scored
    variants is to a coin flip (1 = it cannot tell them apart)."""
    if len(overall) < 2:
        return 0.0
    ordered = sorted(overall)
    closest = min(b - a for a, b in zip(ordered, ordered[1:], strict=False))
    preference = 1.0 / (1.0 + math.exp(-closest))  # P(better beats worse) under BT
    return 1.0 - abs(2.0 * preference - 1.0)


def update_model_priorities(version: RewardModelVersion) -> int:
    """Active learning: tasks the model cannot tell apart get a higher queue position
    (after the manager's own priority). Returns the number of tasks updated."""
    per_task: dict[int, list[float]] = defaultdict(list)
    for task_id, overall in VariantScore.objects.filter(version=version).values_list(
        "variant__task_id", "overall"
    ):
        per_task[task_id].append(overall)
    priorities = {task: round(100 * indistinguishability(s)) for task, s in per_task.items()}
    tasks = list(EditTask.objects.filter(pk__in=priorities).only("id", "model_priority"))
    for task in tasks:
        task.model_priority = priorities[task.pk]
    with transaction.atomic():
        EditTask.objects.bulk_update(tasks, ["model_priority"], batch_size=1000)
    return len(tasks)


def clear_model_priorities(project_id: int) -> int:
    """Active learning switched off: back to the plain queue order."""
    return (
        EditTask.objects.filter(project_id=project_id)
        .exclude(model_priority=0)
        .update(model_priority=0)
    )
