"""Score a project's variants with a reward-model version, store the scores, and (active
learning) move the tasks whose variants the model cannot tell apart up the queue."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator

from django.db import transaction

from annotation.models import EditTask, Variant
from rewards.models import RewardModelVersion, VariantScore
from rewards.records import image_ref
from rewards.registry import loaded_model
from rewards.runs import feature_cache
from rewards.scoring import ScoreItem, score_items

BATCH = 256


def score_project_variants(
    version: RewardModelVersion, on_progress: Callable[[int, int], None] | None = None
) -> int:
    """Scores every variant of the version's project (in batches); returns how many."""
    model = loaded_model(version)
    variants = Variant.objects.filter(task__project=version.project_id).select_related(
        "image", "task__source"
    )
    total, done = variants.count(), 0
    for batch in _batches(variants.order_by("id").iterator(chunk_size=BATCH), BATCH):
        items = [
            ScoreItem(
                key=v.pk,
                instruction=v.task.instruction,
                source=image_ref(v.task.source),
                edited=image_ref(v.image),
            )
            for v in batch
        ]
        _store(version, score_items(model, items, cache=feature_cache()))
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
