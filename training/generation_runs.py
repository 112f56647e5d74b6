"""A generation run from start to finish: an editor makes K variants of each chosen task,
and they go back to annotation as new tasks of a new round.

Django glue around training/generate.py (the editor backends: the procedural editor, a
diffusers pipeline, a fine-tuned run's pipeline). Each source task is generated and saved
in its own transaction and remembered in GeneratedTask, so a run that was cancelled or
whose worker died resumes with the tasks it had not done yet.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import transaction
from PIL import Image as PILImage

from annotation.images import store_pil_image
from annotation.models import EditTask, Variant
from editloop.jobs import Outcome, Progress, run_job
from rewards.models import RewardModelVersion
from rewards.tasks import score_variants
from training.feedback import source_photo
from training.models import GeneratedTask, GenerationRun

if TYPE_CHECKING:
    from training.generate import Editor  # torch and diffusers: worker only

log = logging.getLogger(__name__)

DEFAULT_GUIDANCE = (7.5, 1.5)  # InstructPix2Pix's text and image guidance scales


@dataclass(frozen=True)
class Slot:
    """One variant of a task: its seed and guidance, recorded on the variant."""

    seed: int
    guidance_scale: float
    image_guidance_scale: float


def slots_of(run: GenerationRun) -> list[Slot]:
    seeds = run.seeds or list(range(run.variants_per_task))
    guidance = run.guidance_scales or [list(DEFAULT_GUIDANCE)] * run.variants_per_task
    return [
        Slot(int(seed), float(text), float(image))
        for seed, (text, image) in zip(seeds, guidance, strict=True)
    ]


def editor_for(run: GenerationRun) -> Editor:
    from training.generate import load_editor  # torch and diffusers: worker only

    if run.finetune_run is not None:
        editor = load_editor(str(run.finetune_run.pipeline_dir))
        editor.version = run.finetune_run.model_version
        return editor
    return load_editor(run.editor)


def source_tasks(run: GenerationRun) -> list[EditTask]:
    """The earlier rounds' tasks, one per (photo, instruction), oldest first."""
    tasks = EditTask.objects.filter(
        project=run.project, is_gold=False, round__lt=run.round
    ).select_related("source")
    if run.splits:
        tasks = tasks.filter(split__in=run.splits)
    chosen: dict[tuple[int, str], EditTask] = {}
    for task in tasks.order_by("id"):
        chosen.setdefault((task.source_id, task.instruction), task)
    found = list(chosen.values())
    return found[: run.max_tasks] if run.max_tasks else found


def execute(run: GenerationRun) -> None:
    """Safe to call twice: only the caller that moves the run to ``running`` works."""
    run_job(run, generate_round, on_cancel=cancelled)


def cancelled(run: GenerationRun) -> str:
    """What a cancelled round made stays in the queue, and is scored."""
    return f"cancelled after {run.tasks_created} tasks{score_new_variants(run)}"


def score_new_variants(run: GenerationRun) -> str:
    """Issue 11 §5: the project's active reward model scores the round's new variants (the
    scoring task scores whatever that version has not scored yet). Queued once the round's
    rows are committed; returns the clause the run's message ends with."""
    if not run.variants_created:
        return ""
    version = RewardModelVersion.active_for(run.project_id)
    if version is None:
        return (
            "; no active reward model to score them (the first version that becomes active "
            "scores every variant)"
        )
    transaction.on_commit(lambda: score_variants.delay(version.pk))
    return f"; reward model v{version.number} is scoring them"


def generate_round(run: GenerationRun, progress: Progress) -> Outcome:
    editor = editor_for(run)
    slots = slots_of(run)
    tasks = source_tasks(run)
    done = set(run.generated.values_list("source_task_id", flat=True))
    # Counted once (a resumed run's earlier work), then kept up to date here.
    created = len(done)
    variants = Variant.objects.filter(task__generated_by__run=run).count()
    progress(0.0, f"{len(done)} of {len(tasks)} tasks already generated")
    for number, task in enumerate(tasks, start=1):
        if task.pk not in done:
            saved = save_generated_task(run, task, editor, slots, edit_task(editor, task, slots))
            created, variants = created + (saved > 0), variants + saved
        progress(
            number / max(len(tasks), 1),
            f"generated {number}/{len(tasks)} tasks",
            tasks_created=created,
            variants_created=variants,
        )
    return Outcome(
        f"round {run.round}: {run.tasks_created} new tasks, {run.variants_created} "
        f"variants, now in the annotation queue{score_new_variants(run)}"
    )


def edit_task(editor: Editor, task: EditTask, slots: list[Slot]) -> list[PILImage.Image]:
    source = source_photo(task)
    return [
        editor.edit(
            source,
            task.instruction,
            seed=slot.seed,
            guidance_scale=slot.guidance_scale,
            image_guidance_scale=slot.image_guidance_scale,
        )
        for slot in slots
    ]


def distinct_images(
    slots: list[Slot], images: list[PILImage.Image]
) -> list[tuple[PILImage.Image, Slot]]:
    """Each distinct picture once, with the first slot that made it."""
    seen: dict[tuple, tuple[PILImage.Image, Slot]] = {}
    for slot, image in zip(slots, images, strict=True):
        rgb = image.convert("RGB")
        seen.setdefault((rgb.size, hashlib.sha256(rgb.tobytes()).digest()), (rgb, slot))
    return list(seen.values())


def save_generated_task(
    run: GenerationRun,
    source_task: EditTask,
    editor: Editor,
    slots: list[Slot],
    images: list[PILImage.Image],
) -> int:
    """The new task with its variants, all or nothing; returns how many variants it got (0:
    not created). Identical outputs (an editor that ignores the seed) are kept once; a task
    needs two different variants to be ranked."""
    distinct = distinct_images(slots, images)
    if len(distinct) < 2:
        log.warning("editor gave one distinct image for task %s; skipped", source_task.pk)
        return 0
    with transaction.atomic():
        task = EditTask.objects.create(
            project=run.project,
            source=source_task.source,
            instruction=source_task.instruction,
            category=source_task.category,
            split=source_task.split,
            round=run.round,
            external_id=f"{source_task.external_id}@r{run.round}"
            if source_task.external_id
            else "",
        )
        stored = [(store_pil_image(image), slot) for image, slot in distinct]
        Variant.objects.bulk_create(
            Variant(
                task=task,
                image=row,
                generator=editor.name,
                model_version=editor.version,
                seed=slot.seed,
                params={
                    "guidance_scale": slot.guidance_scale,
                    "image_guidance_scale": slot.image_guidance_scale,
                    "generation_run": run.pk,
                    "round": run.round,
                },
            )
            for row, slot in stored
        )
        GeneratedTask.objects.create(run=run, source_task=source_task, task=task)
    return len(stored)
