"""Reward-model versions, the runs that train them, the scores they give variants, and the
named base checkpoints staff registered."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.validators import validate_slug
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from annotation.models import Project, Variant
from editloop.jobs import Job, enqueue
from rewards.config import TINY


class RewardModelVersion(models.Model):
    class Status(models.TextChoices):
        CANDIDATE = "candidate", "candidate (did not beat the active version)"
        ACTIVE = "active"
        RETIRED = "retired", "retired (replaced or rolled back)"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="reward_models")
    number = models.PositiveIntegerField(help_text="1, 2, 3 ... within the project.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CANDIDATE)
    base = models.CharField(max_length=500, help_text="`tiny` or the local BLIP directory.")
    heads = models.CharField(max_length=10, default="fine")
    is_random_init = models.BooleanField(
        default=False, help_text="A tiny random-init model (tests and the demo), not BLIP."
    )
    directory = models.CharField(max_length=500, help_text="Relative to REWARD_MODEL_ROOT.")
    config = models.JSONField(default=dict, help_text="Model and training configuration.")
    judgement_ids = models.JSONField(
        default=list, help_text="The exact judgements it was trained and evaluated on."
    )
    dataset_hash = models.CharField(max_length=64, help_text="sha256 of the judgement ids.")
    last_judgement_id = models.BigIntegerField(
        default=0, help_text="Newest judgement it saw: later ones count as new for retraining."
    )
    metrics = models.JSONField(default=dict)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        help_text="The version that was active when this one was trained.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="reward_version_number"),
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status="active"),
                name="one_active_reward_model_per_project",
            ),
        ]

    def __str__(self) -> str:
        label = " (tiny random-init)" if self.is_random_init else ""
        return f"{self.project} reward model v{self.number}{label}"

    @property
    def path(self) -> Path:
        return Path(settings.REWARD_MODEL_ROOT) / self.directory

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    def headline(self, split: str = "test") -> float | None:
        """The number versions are compared on: tie-aware pairwise accuracy."""
        return self.metrics.get(split, {}).get("pairwise_accuracy")

    def ceiling(self, split: str = "test") -> float | None:
        """The annotators' own pairwise agreement on the same items: what a model can reach."""
        ceiling = self.metrics.get(split, {}).get("human_ceiling") or {}
        return ceiling.get("pairwise_accuracy")

    def promote(self) -> None:
        """Make this the project's active version; the previous one is retired. Row locks
        on the project's versions keep two promotions from interleaving. Once it commits,
        the new active version scores every variant it has not scored (issue 11 §5)."""
        with transaction.atomic():
            versions = RewardModelVersion.objects.select_for_update().filter(
                project_id=self.project_id
            )
            list(versions)  # take the locks
            versions.filter(status=self.Status.ACTIVE).exclude(pk=self.pk).update(
                status=self.Status.RETIRED
            )
            now = timezone.now()
            versions.filter(pk=self.pk).update(status=self.Status.ACTIVE, promoted_at=now)
            transaction.on_commit(lambda: enqueue("rewards.score_variants", self.pk))
        self.status, self.promoted_at = self.Status.ACTIVE, now

    def roll_back(self) -> RewardModelVersion | None:
        """Retire this active version and reactivate the one it replaced (its parent, or the
        newest earlier version that was once active). Returns the reactivated version."""
        previous = self.parent or (
            RewardModelVersion.objects.filter(
                project_id=self.project_id, number__lt=self.number, status=self.Status.RETIRED
            )
            .order_by("-number")
            .first()
        )
        with transaction.atomic():
            RewardModelVersion.objects.filter(pk=self.pk).update(status=self.Status.RETIRED)
            self.status = self.Status.RETIRED
            if previous is not None:
                previous.promote()
        return previous

    @classmethod
    def active_for(cls, project_id: int) -> RewardModelVersion | None:
        return cls.objects.filter(project_id=project_id, status=cls.Status.ACTIVE).first()


class RewardTrainingRun(Job):
    class Trigger(models.TextChoices):
        ADMIN = "admin"
        API = "api"
        SCHEDULE = "schedule"
        COMMAND = "command"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="reward_runs")
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.ADMIN)
    base = models.CharField(max_length=500, default="tiny")
    heads = models.CharField(max_length=10, default="fine")
    options = models.JSONField(default=dict, blank=True, help_text="Training options overrides.")
    judgements_used = models.PositiveIntegerField(default=0)
    new_judgements = models.PositiveIntegerField(
        default=0, help_text="Judgements that arrived since the previous version."
    )
    current_loss = models.FloatField(null=True, blank=True)
    loss_curve = models.JSONField(default=list, blank=True, help_text="[{step, loss}, ...]")
    val_curve = models.JSONField(default=list, blank=True, help_text="[{step, accuracy}, ...]")
    version = models.OneToOneField(
        RewardModelVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="training_run",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Single flight: never two retrains of one project at once.
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=["pending", "running"]),
                name="one_active_reward_run_per_project",
            )
        ]

    def __str__(self) -> str:
        return f"reward run {self.pk} of {self.project} ({self.status})"

    @property
    def work_dir(self) -> Path:
        """Checkpoints of this run: a resumed run continues from here."""
        return Path(settings.REWARD_MODEL_ROOT) / "runs" / str(self.pk)


class VariantScore(models.Model):
    """What a reward-model version predicts for a variant."""

    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="reward_scores")
    version = models.ForeignKey(
        RewardModelVersion, on_delete=models.CASCADE, related_name="variant_scores"
    )
    overall = models.FloatField()
    aspects = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["variant", "version"], name="one_score_per_version")
        ]

    def __str__(self) -> str:
        return f"variant {self.variant_id}: {self.overall:.3f} by {self.version}"


class BaseCheckpoint(models.Model):
    """A local BLIP directory staff registered under a name, checked when it was registered
    (rewards/bases.py: layout, architecture, weights that load). Runs name it; only staff
    see the path."""

    name = models.CharField(
        max_length=100,
        unique=True,
        validators=[validate_slug],
        help_text="What runs call it: letters, digits, - and _ (e.g. blip-itm-base-coco).",
    )
    path = models.CharField(max_length=500, help_text="Absolute directory on the gpu workers.")
    kind = models.CharField(max_length=20, help_text="tiny, blip-itm or imagereward.")
    parameters = models.BigIntegerField(help_text="Parameters of the BLIP model.")
    image_size = models.PositiveIntegerField()
    info = models.JSONField(default=dict, help_text="Everything the check found.")
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    checked_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def path_for(cls, base: str) -> str:
        """What a run loads: `tiny` stays `tiny`, a registered name becomes its directory,
        anything else is a path (checked when the run was requested)."""
        if base == TINY:
            return base
        found = cls.objects.filter(name=base).values_list("path", flat=True).first()
        return found or base

    @property
    def parameters_shown(self) -> str:
        """1234567 -> "1.2 M": parameter counts at a glance ("—" before the first check)."""
        if self.parameters is None:
            return "—"
        for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if self.parameters >= size:
                return f"{self.parameters / size:.1f} {unit}"
        return str(self.parameters)

    def apply_check(self, info: object) -> None:
        """Copy what rewards.bases.inspect_base found (a BaseInfo) onto the row."""
        self.kind, self.parameters, self.image_size = info.kind, info.parameters, info.image_size
        self.info = info.as_dict()
        self.checked_at = timezone.now()
