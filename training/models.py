"""Editor fine-tuning runs and generation runs: both are Jobs on the `gpu` queue.

A FinetuneRun trains an InstructPix2Pix-style editor from the project's feedback
(training/trainer.py does the work); a GenerationRun asks an editor for K variants of each
chosen task and adds them to annotation as a new round, so people judge the new edits.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import EditTask, Project
from editloop.jobs import Job
from rewards.models import RewardModelVersion


class FinetuneRun(Job):
    class Method(models.TextChoices):
        SUPERVISED = "supervised", "supervised (InstructPix2Pix loss on preferred variants)"
        WEIGHTED = "weighted", "HIVE weighted reward"
        CONDITIONAL = "conditional", "HIVE conditional reward"
        MULTIREWARD = "multireward", "multi-reward condition (3 aspect scores)"
        DPO = "dpo", "Diffusion-DPO on ranked pairs"

    class RewardSource(models.TextChoices):
        HUMAN = "human", "human judgements only"
        MODEL = "model", "the active reward model for every variant"
        HUMAN_THEN_MODEL = "human+model", "human where judged, the reward model elsewhere"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="finetune_runs")
    method = models.CharField(max_length=12, choices=Method.choices)
    base = models.CharField(
        max_length=500, default="tiny", help_text="`tiny` or a local diffusers pipeline directory."
    )
    reward_source = models.CharField(
        max_length=12, choices=RewardSource.choices, default=RewardSource.HUMAN
    )
    reward_version = models.ForeignKey(
        RewardModelVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="finetune_runs",
        help_text="The reward model that labelled variants (model sources, evaluation).",
    )
    filters = models.JSONField(
        default=dict, blank=True, help_text="include_simulated, rounds, generators."
    )
    options = models.JSONField(default=dict, blank=True, help_text="FinetuneConfig overrides.")
    evaluate = models.BooleanField(
        default=True, help_text="Generate on the test split with base and fine-tuned, score both."
    )
    ab_batch = models.BooleanField(
        default=False, help_text="Also create a pairwise A/B project for people to confirm."
    )
    examples_used = models.PositiveIntegerField(default=0)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    current_loss = models.FloatField(null=True, blank=True)
    loss_curve = models.JSONField(default=list, blank=True, help_text="[{step, loss, ...}]")
    checkpoints = models.JSONField(default=list, blank=True)
    is_random_init = models.BooleanField(
        default=False, help_text="Trained from the tiny random-init editor (tests and the demo)."
    )
    result = models.JSONField(default=dict, blank=True, help_text="Trainer summary and metrics.")
    evaluation = models.JSONField(
        default=dict, blank=True, help_text="Base vs fine-tuned on the test split."
    )
    ab_project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="ab_of_runs"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=["pending", "running"]),
                name="one_active_finetune_per_project",
            )
        ]

    def __str__(self) -> str:
        label = " (tiny random-init)" if self.from_tiny_editor else ""
        return f"fine-tune {self.pk} ({self.method}{label}) of {self.project}"

    @property
    def from_tiny_editor(self) -> bool:
        """Labelled tiny random-init from the request on (is_random_init is set once the
        trainer has loaded the base)."""
        return self.is_random_init or self.base == "tiny"

    @property
    def work_dir(self) -> Path:
        """checkpoint-<step>/ folders and, once finished, pipeline/."""
        return Path(settings.MODEL_ROOT) / "finetune" / str(self.pk)

    @property
    def pipeline_dir(self) -> Path:
        return self.work_dir / "pipeline"

    @property
    def model_version(self) -> str:
        """What generated variants record as their model version."""
        return f"finetune-{self.pk}" + ("-tiny-random-init" if self.is_random_init else "")


class GenerationRun(Job):
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="generation_runs"
    )
    editor = models.CharField(
        max_length=500,
        default="procedural",
        help_text="`procedural`, or a local diffusers pipeline directory (base editor).",
    )
    finetune_run = models.ForeignKey(
        FinetuneRun,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="generation_runs",
        help_text="Generate with this run's fine-tuned pipeline instead of `editor`.",
    )
    variants_per_task = models.PositiveSmallIntegerField(default=4)
    seeds = models.JSONField(default=list, blank=True, help_text="One seed per variant slot.")
    guidance_scales = models.JSONField(
        default=list, blank=True, help_text="[text, image] guidance per variant slot."
    )
    splits = models.JSONField(default=list, blank=True, help_text="Empty: every split.")
    max_tasks = models.PositiveIntegerField(null=True, blank=True)
    round = models.PositiveSmallIntegerField(default=2)
    tasks_created = models.PositiveIntegerField(default=0)
    variants_created = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"generation {self.pk} (round {self.round}) of {self.project}"


class GeneratedTask(models.Model):
    """Which source task a generated task was made from, by which run: a resumed run skips
    the sources it already did."""

    run = models.ForeignKey(GenerationRun, on_delete=models.CASCADE, related_name="generated")
    source_task = models.ForeignKey(EditTask, on_delete=models.CASCADE, related_name="+")
    task = models.OneToOneField(EditTask, on_delete=models.CASCADE, related_name="generated_by")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "source_task"], name="generate_once_per_run")
        ]

    def __str__(self) -> str:
        return f"task {self.task_id} from task {self.source_task_id} (run {self.run_id})"
