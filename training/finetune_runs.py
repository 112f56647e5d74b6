"""An editor fine-tuning run from start to finish: feedback from Postgres → records
(training/feedback.py) → training/trainer.py → a pipeline directory → base vs fine-tuned
on the test split, scored by the active reward model → optionally a human A/B batch.

Runs are created by training/scheduling.py (admin, API); the Celery worker calls
:func:`execute`. A run whose worker died is requeued by beat and resumes from the latest
``checkpoint-<step>`` in its work directory.
"""

from __future__ import annotations

import logging
import random
import time
from statistics import mean
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from PIL import Image as PILImage

from annotation.images import store_pil_image
from annotation.models import EditTask, Membership, Project, Variant
from editloop.jobs import Outcome, Progress, run_job
from rewards.models import RewardModelVersion
from training.config import FinetuneConfig
from training.feedback import Filters, source_photo, training_data
from training.models import FinetuneRun

if TYPE_CHECKING:
    from training.trainer import FinetuneResult  # torch and diffusers: worker only
    from training.training_utils import StepReport

log = logging.getLogger(__name__)

TRAINING_SHARE = 0.8  # of the progress bar; evaluation takes the rest
REPORT_EVERY_SECONDS = 0.5


def execute(run: FinetuneRun) -> None:
    """Safe to call twice: only the caller that moves the run to ``running`` works."""
    from training.training_utils import TrainingCancelled  # torch: worker only

    run_job(run, finetune, on_cancel=checkpoints_kept, cancels=(TrainingCancelled,))


def checkpoints_kept(run: FinetuneRun) -> str:
    return f"cancelled at step {run.step}; checkpoints kept in {run.work_dir}"


def finetune(run: FinetuneRun, progress: Progress) -> Outcome:
    from training.trainer import train_editor  # torch: worker only

    version = run.reward_version or RewardModelVersion.active_for(run.project_id)
    data = training_data(
        run.project, run.method, run.reward_source, version, Filters.from_dict(run.filters)
    )
    config = FinetuneConfig(method=run.method, **run.options)
    progress(0.01, f"training on {len(data)} examples", examples_used=len(data))
    result = train_editor(
        config, data, run.base, run.work_dir, on_step=StepReporter(run, progress),
        should_stop=run.cancel_was_requested,
    )  # fmt: skip
    progress(
        TRAINING_SHARE,
        f"trained {result.steps} steps; evaluating",
        step=result.steps,
        is_random_init=result.is_random_init,
        loss_curve=[_point(row) for row in result.loss_history][-2000:],
        checkpoints=_checkpoints(run),
        result=_result_summary(result),
    )
    if run.evaluate:
        evaluation = evaluate_against_base(run, version, progress)
        progress(
            0.99, "evaluated", evaluation=evaluation, ab_project_id=evaluation.get("ab_project")
        )
    return Outcome(summary(run))


class StepReporter:
    """on_step for the trainer: progress, the live loss curve and the cancel check, at most
    every REPORT_EVERY_SECONDS (and always on the last step)."""

    def __init__(self, run: FinetuneRun, progress: Progress) -> None:
        self.run, self.progress = run, progress
        self.last = 0.0
        self.curve: list[dict] = list(run.loss_curve)

    def __call__(self, report: StepReport) -> None:
        self.curve.append(_point({"step": report.step, "loss": report.loss, **report.extras}))
        now = time.monotonic()
        if now - self.last < REPORT_EVERY_SECONDS and report.step < report.total_steps:
            return
        self.last = now
        self.progress(
            0.01 + (TRAINING_SHARE - 0.01) * report.step / max(report.total_steps, 1),
            report.message,
            step=report.step,
            total_steps=report.total_steps,
            current_loss=report.loss,
            loss_curve=self.curve[-2000:],
            checkpoints=_checkpoints(self.run),
        )


def _point(row: dict) -> dict:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}


def _checkpoints(run: FinetuneRun) -> list[str]:
    found = run.work_dir.glob("checkpoint-*")
    return sorted((p.name for p in found), key=lambda name: int(name.rsplit("-", 1)[1]))


def _result_summary(result: FinetuneResult) -> dict:
    return {
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "final_loss": result.final_loss,
        "metrics": result.metrics,
        "pipeline_dir": str(result.pipeline_dir),
    }


# --- evaluation: base vs fine-tuned on the test split ---------------------------------------


def evaluation_tasks(project: Project) -> list[EditTask]:
    tasks = EditTask.objects.filter(project=project, split="test", is_gold=False)
    seen, chosen = set(), []
    for task in tasks.select_related("source").order_by("id"):
        if (task.source_id, task.instruction) not in seen:
            seen.add((task.source_id, task.instruction))
            chosen.append(task)
    return chosen[: settings.FINETUNE_EVAL_TASKS]


def evaluate_against_base(
    run: FinetuneRun, version: RewardModelVersion | None, progress: Progress
) -> dict:
    """Each test task edited once by each editor (same seed); the reward model scores both
    (win rate, mean reward per aspect). HIVE §4 compares editors the same way."""
    from training.generate import load_editor

    tasks = evaluation_tasks(run.project)
    if not tasks:
        return {"tasks": 0, "note": "the project has no test-split tasks to evaluate on"}
    editors = {"base": load_editor(run.base), "finetuned": load_editor(str(run.pipeline_dir))}
    outputs = {name: [] for name in editors}
    sources = [source_photo(task) for task in tasks]
    for number, (task, source) in enumerate(zip(tasks, sources, strict=True), start=1):
        for name, editor in editors.items():
            outputs[name].append(editor.edit(source, task.instruction, seed=number))
        progress(TRAINING_SHARE + 0.15 * number / len(tasks), f"edited {number}/{len(tasks)} tasks")
    evaluation = {
        "tasks": len(tasks),
        "task_ids": [t.pk for t in tasks],
        "base": getattr(editors["base"], "description", run.base),
    }
    if version is None:
        evaluation["note"] = "no active reward model: nothing scored the edits"
    else:
        evaluation.update(score_editors(version, tasks, sources, outputs))
    if run.ab_batch:
        evaluation["ab_project"] = create_ab_batch(run, tasks, outputs).pk
    return evaluation


def score_editors(
    version: RewardModelVersion,
    tasks: list[EditTask],
    sources: list[PILImage.Image],
    outputs: dict[str, list],
) -> dict:
    from rewards.registry import loaded_model
    from rewards.scoring import score_images

    model = loaded_model(version)
    scores: dict[str, list[dict]] = {name: [] for name in outputs}
    for index, (task, source) in enumerate(zip(tasks, sources, strict=True)):
        base, tuned = score_images(
            model, source, [outputs["base"][index], outputs["finetuned"][index]], task.instruction
        )
        scores["base"].append(base)
        scores["finetuned"].append(tuned)
    return {
        "reward_version": version.pk,
        "reward_version_random_init": version.is_random_init,
        **compare_scores(scores["base"], scores["finetuned"]),
    }


def compare_scores(base: list[dict], tuned: list[dict]) -> dict:
    """Win rate of the fine-tuned editor (ties count half) and mean rewards per aspect."""
    wins = [
        1.0 if t["overall"] > b["overall"] else 0.5 if t["overall"] == b["overall"] else 0.0
        for b, t in zip(base, tuned, strict=True)
    ]

    def means(scores: list[dict]) -> dict:
        aspects = sorted({a for s in scores for a in s.get("aspects", {})})
        return {
            "overall": mean(s["overall"] for s in scores),
            **{a: mean(s["aspects"][a] for s in scores) for a in aspects},
        }

    return {"win_rate": mean(wins), "mean_reward": {"base": means(base), "finetuned": means(tuned)}}


def create_ab_batch(run: FinetuneRun, tasks: list[EditTask], outputs: dict[str, list]) -> Project:
    """A pairwise project of the same members: each test task with the base and the
    fine-tuned edit; which one comes first is random per task (and per lease)."""
    rng = random.Random(run.pk)
    with transaction.atomic():
        ab = Project.objects.create(
            name=f"A/B: {run.project.name} — fine-tune {run.pk} vs base"[:200],
            mode=Project.Mode.PAIRWISE,
            overlap=run.project.overlap,
            aspects=run.project.aspects,
            guidelines=(
                f"Two edits of the same photo: one by the base editor, one by fine-tune run "
                f"{run.pk}. Rank which follows the instruction better; sides are random."
            ),
            val_fraction=0.0,
            test_fraction=1.0,
        )
        Membership.objects.bulk_create(
            Membership(project=ab, user_id=m.user_id, role=m.role)
            for m in run.project.memberships.all()
        )
        for index, task in enumerate(tasks):
            pair = [("base", run.base), ("finetuned", run.model_version)]
            rng.shuffle(pair)
            _add_ab_task(ab, task, pair, outputs, index)
    return ab


def _add_ab_task(
    ab: Project, task: EditTask, pair: list[tuple[str, str]], outputs: dict, index: int
) -> None:
    images = [store_pil_image(outputs[name][index]) for name, _ in pair]
    if images[0].pk == images[1].pk:  # both editors gave the same pixels: nothing to compare
        return
    copy = EditTask.objects.create(
        project=ab,
        source=task.source,
        instruction=task.instruction,
        category=task.category,
        split="test",
        external_id=f"ab-{task.pk}",
    )
    Variant.objects.bulk_create(
        Variant(
            task=copy,
            image=image,
            generator=f"ab:{name}",
            model_version=version[:100],
            seed=index + 1,
            params={"side": side, "editor": name, "source_task": task.pk},
        )
        for side, ((name, version), image) in enumerate(zip(pair, images, strict=True))
    )


def summary(run: FinetuneRun) -> str:
    label = " (tiny random-init editor)" if run.is_random_init else ""
    text = f"{run.method}{label}: {run.step} steps, final loss {run.current_loss or 0:.4f}"
    win = run.evaluation.get("win_rate")
    if win is not None:
        text += f"; reward-model win rate vs base on {run.evaluation['tasks']} test tasks {win:.2f}"
    if run.evaluation.get("ab_project"):
        text += f"; A/B project {run.evaluation['ab_project']} created"
    return text
