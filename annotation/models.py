"""What annotators judge and what they said: projects, tasks, variants, leases, judgements."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

CATEGORIES = ["local", "remove", "add", "texture", "background", "global", "style", "other"]
SCORE_MIN, SCORE_MAX = 0, 5

DEFAULT_ASPECTS = [
    {
        "key": "following",
        "label": "Instruction following",
        "description": "Does the edit do what the instruction asks, fully and only that?",
    },
    {
        "key": "preserving",
        "label": "Detail preserving",
        "description": "Is everything the instruction did not mention left as it was?",
    },
    {
        "key": "quality",
        "label": "Generation quality",
        "description": "Is the result free of artefacts, blur, distortions and seams?",
    },
]


def default_aspects() -> list[dict]:
    return [dict(aspect) for aspect in DEFAULT_ASPECTS]


def image_url(sha256: str) -> str:
    """Where an image's original bytes are served (members only, see annotation/media.py)."""
    return f"/images/{sha256}/"


class Image(models.Model):
    """An image file stored once by the sha256 of its bytes."""

    sha256 = models.CharField(max_length=64, unique=True)
    file = models.FileField(upload_to="images/", max_length=300)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=10)
    size_bytes = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.sha256[:12]} {self.width}x{self.height} {self.format}"

    @property
    def url(self) -> str:
        return image_url(self.sha256)

    @property
    def thumbnail_url(self) -> str:
        return f"{self.url}thumb/"


class Project(models.Model):
    class Mode(models.TextChoices):
        RANKING = "ranking", "Rank K variants"
        PAIRWISE = "pairwise", "Pairwise (A/B)"

    name = models.CharField(max_length=200, unique=True)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to annotators.")
    aspects = models.JSONField(default=default_aspects)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.RANKING)
    overlap = models.PositiveSmallIntegerField(
        default=1, help_text="Distinct annotators who judge each task."
    )
    lease_minutes = models.PositiveIntegerField(default=30)
    gold_rate = models.FloatField(
        default=0.0, help_text="Share of leases that serve a gold task (0 to 1)."
    )
    val_fraction = models.FloatField(default=0.1)
    test_fraction = models.FloatField(default=0.1)
    retrain_min_new_judgements = models.PositiveIntegerField(
        default=50,
        help_text="The scheduled check retrains the reward model once this many judgements "
        "arrived since its last version.",
    )
    reward_options = models.JSONField(
        default=dict,
        blank=True,
        help_text="Options of this project's reward-model retrains, scheduled or requested "
        '(a request\'s own options override them key by key), e.g. {"frozen_prefix": true, '
        '"freeze_fraction": 1.0, "text_freeze_fraction": 0.7, "epochs": 5}. See '
        "docs/reward_model.md.",
    )
    active_learning = models.BooleanField(
        default=False,
        help_text="Serve first the tasks whose variants the active reward model cannot tell "
        "apart (after priority).",
    )
    # Quality control (evaluation/quality.py): empty thresholds switch a check off.
    qc_min_gold_accuracy = models.FloatField(
        null=True, blank=True, help_text="Flag an annotator whose gold accuracy falls below this."
    )
    qc_min_agreement = models.FloatField(
        null=True,
        blank=True,
        help_text="Flag an annotator whose pairwise agreement with the others falls below this.",
    )
    qc_min_items = models.PositiveSmallIntegerField(
        default=5, help_text="Judge nobody on fewer gold tasks or shared tasks than this."
    )
    qc_pause_flagged = models.BooleanField(
        default=False, help_text="A flagged annotator gets no more tasks until a manager resumes."
    )
    disagreement_threshold = models.FloatField(
        null=True,
        blank=True,
        help_text="A complete task whose annotators agree less than this gets extra judgements.",
    )
    disagreement_extra = models.PositiveSmallIntegerField(
        default=1, help_text="How many extra judgements a disputed task gets."
    )
    members = models.ManyToManyField(User, through="Membership", related_name="projects")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(gold_rate__gte=0) & Q(gold_rate__lte=1), name="gold_rate_0_1"
            ),
            models.CheckConstraint(condition=Q(overlap__gte=1), name="overlap_at_least_1"),
            models.CheckConstraint(
                condition=Q(val_fraction__gte=0)
                & Q(test_fraction__gte=0)
                & Q(val_fraction__lte=1.0 - models.F("test_fraction")),
                name="split_fractions_sum_at_most_1",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def aspect_keys(self) -> list[str]:
        return [aspect["key"] for aspect in self.aspects]

    @property
    def lease_length(self) -> timedelta:
        return timedelta(minutes=self.lease_minutes)

    def split_for(self, image_sha256: str) -> str:
        """Split fixed by the source image's hash: one photo never sits in two splits."""
        bucket = split_bucket(image_sha256)
        if bucket < self.test_fraction:
            return EditTask.Split.TEST
        if bucket < self.test_fraction + self.val_fraction:
            return EditTask.Split.VAL
        return EditTask.Split.TRAIN

    def clean(self) -> None:
        validate_aspects(self.aspects)
        validate_reward_options(self.reward_options)

    def role_of(self, user: User) -> str | None:
        if not user.is_authenticated:
            return None
        return self.memberships.filter(user=user).values_list("role", flat=True).first()


def split_bucket(image_sha256: str) -> float:
    """A photo's fixed place in [0, 1]: below test_fraction is test, then val, then train."""
    return int(hashlib.sha256(image_sha256.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def validate_reward_options(options: object) -> None:
    from rewards.config import split_options  # torch-free

    if not isinstance(options, dict):
        raise ValidationError({"reward_options": "give a JSON object of option: value"})
    try:
        split_options(options)
    except ValueError as error:
        raise ValidationError({"reward_options": str(error)}) from None


def validate_aspects(aspects: object) -> None:
    if not isinstance(aspects, list) or not aspects:
        raise ValidationError({"aspects": "give a non-empty list of {key, label, description}"})
    keys = []
    for index, aspect in enumerate(aspects):
        if not isinstance(aspect, dict) or not isinstance(aspect.get("key"), str):
            raise ValidationError({"aspects": f"aspect {index} needs a string 'key'"})
        if not aspect["key"].isidentifier():
            raise ValidationError({"aspects": f"aspect key {aspect['key']!r} is not an identifier"})
        keys.append(aspect["key"])
    if len(set(keys)) != len(keys):
        raise ValidationError({"aspects": "aspect keys must be unique"})


class Membership(models.Model):
    class Role(models.TextChoices):
        ANNOTATOR = "annotator"
        MANAGER = "manager"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.ANNOTATOR)
    flagged_at = models.DateTimeField(
        null=True, blank=True, help_text="Set by the quality check; cleared when figures recover."
    )
    flag_reason = models.CharField(max_length=300, blank=True)
    paused = models.BooleanField(
        default=False, help_text="Receives no tasks (quality control) until a manager resumes."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.project}"


class EditTask(models.Model):
    class Split(models.TextChoices):
        TRAIN = "train"
        VAL = "val"
        TEST = "test"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    source = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="source_of")
    instruction = models.TextField()
    category = models.CharField(max_length=12, choices=[(c, c) for c in CATEGORIES])
    split = models.CharField(max_length=5, choices=Split.choices)
    priority = models.IntegerField(default=0)
    # 0-100, how little the active reward model can tell this task's variants apart; set
    # by reward scoring when the project uses active learning, 0 otherwise.
    model_priority = models.PositiveSmallIntegerField(default=0)
    round = models.PositiveSmallIntegerField(
        default=1, help_text="1 for imported tasks; each generation run adds a round."
    )
    extra_judgements = models.PositiveSmallIntegerField(
        default=0, help_text="Judgements beyond the overlap (the disagreement queue)."
    )
    is_gold = models.BooleanField(default=False)
    gold_ranking = models.JSONField(
        null=True, blank=True, help_text="Known best→worst tiers of variant ids."
    )
    external_id = models.CharField(max_length=200, blank=True)
    # Submitted judgements, kept in step with Judgement rows inside the same transaction.
    judgement_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"],
                condition=~Q(external_id=""),
                name="unique_external_id_per_project",
            )
        ]
        indexes = [
            # The queue: highest priority, then the reward model's doubt (active learning),
            # then fewest judgements, then oldest.
            models.Index(
                fields=[
                    "project",
                    "is_gold",
                    "-priority",
                    "-model_priority",
                    "judgement_count",
                    "id",
                ],
                name="task_queue_order",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.instruction[:60]}"


class Variant(models.Model):
    task = models.ForeignKey(EditTask, on_delete=models.CASCADE, related_name="variants")
    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="variant_of")
    generator = models.CharField(max_length=100, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task", "image"], name="variant_image_once_per_task")
        ]

    def __str__(self) -> str:
        return f"variant {self.pk} of task {self.task_id}"


class Assignment(models.Model):
    class Status(models.TextChoices):
        LEASED = "leased"
        SUBMITTED = "submitted"
        SKIPPED = "skipped"
        EXPIRED = "expired"

    task = models.ForeignKey(EditTask, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(User, on_delete=models.CASCADE, related_name="assignments")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.LEASED)
    leased_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    display_order = models.JSONField(help_text="Variant ids in the order they were shown.")
    skip_reason = models.CharField(max_length=500, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # Never the same annotator twice on one task.
            models.UniqueConstraint(
                fields=["task", "annotator"], name="one_assignment_per_annotator"
            )
        ]
        indexes = [
            models.Index(fields=["task", "status"], name="assignment_task_status"),
            models.Index(fields=["annotator", "status"], name="assignment_annotator_status"),
            models.Index(
                fields=["expires_at"],
                condition=Q(status="leased"),
                name="assignment_open_leases",
            ),
            # An annotator's own open leases (handed back after a reload): without it the
            # lookup walks every open lease of every annotator.
            models.Index(
                fields=["annotator", "expires_at"],
                condition=Q(status="leased"),
                name="assignment_my_open_leases",
            ),
        ]

    def __str__(self) -> str:
        return f"assignment {self.pk}: task {self.task_id} → {self.annotator_id} ({self.status})"

    def lease_is_live(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.status == self.Status.LEASED and self.expires_at > now


class Judgement(models.Model):
    assignment = models.OneToOneField(
        Assignment, on_delete=models.CASCADE, related_name="judgement"
    )
    client_id = models.UUIDField(unique=True)
    ranking = models.JSONField(help_text="Tiers best→worst of variant ids; a tier of 2+ is a tie.")
    unsure = models.BooleanField(default=False)
    scores = models.JSONField(help_text="variant id → aspect → 0..5")
    notes = models.JSONField(default=dict, blank=True, help_text="variant id → aspect → text")
    ranking_ms = models.PositiveIntegerField(null=True, blank=True)
    scoring_ms = models.PositiveIntegerField(null=True, blank=True)
    total_ms = models.PositiveIntegerField(null=True, blank=True)
    simulated = models.BooleanField(
        default=False,
        help_text="Made by a simulated annotator (evaluation/simulated_judgements.py).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"judgement {self.pk} on assignment {self.assignment_id}"


class AspectScore(models.Model):
    """One 0–5 score as a row, so scores can be filtered and aggregated in SQL."""

    judgement = models.ForeignKey(Judgement, on_delete=models.CASCADE, related_name="aspect_scores")
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="aspect_scores")
    aspect = models.CharField(max_length=50)
    value = models.PositiveSmallIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["judgement", "variant", "aspect"], name="one_score_per_aspect"
            ),
            models.CheckConstraint(
                condition=Q(value__gte=SCORE_MIN) & Q(value__lte=SCORE_MAX), name="score_0_to_5"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.aspect}={self.value} for variant {self.variant_id}"


class Annotator(User):
    """Users seen as annotators in the admin: counts and median times."""

    class Meta:
        proxy = True
        verbose_name = "annotator"
