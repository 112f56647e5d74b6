"""ExportRun: a dataset export as a job row (exports/runs.py does the work)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models

from editloop.jobs import Job


def exports_root() -> Path:
    return Path(settings.MODEL_ROOT) / "exports"


class ExportRun(Job):
    class Trigger(models.TextChoices):
        ADMIN = "admin"
        API = "api"
        COMMAND = "command"

    class Kind(models.TextChoices):
        PAIRS = "pairs", "pairs (TRL RewardTrainer: chosen / rejected)"
        RANKINGS = "rankings", "rankings (ImageReward: generations + ranking with ties)"
        SCORES = "scores", "scores (per variant and aspect, raw and aggregated)"
        DPO = "dpo", "dpo (Pick-a-Pic / Diffusion-DPO: jpg_0, jpg_1, label_0, label_1)"

    class Format(models.TextChoices):
        JSONL = "jsonl", "JSON lines"
        PARQUET = "parquet", "Parquet"
        HF = "hf", "Hugging Face datasets directory (load_from_disk)"

    class Images(models.TextChoices):
        EMBED = "embed", "embedded in the table"
        FILES = "files", "files beside the table (images/<sha256>.<ext>)"

    project = models.ForeignKey(
        "annotation.Project", on_delete=models.CASCADE, related_name="export_runs"
    )
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.API)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    format = models.CharField(max_length=10, choices=Format.choices, default=Format.JSONL)
    images = models.CharField(max_length=10, choices=Images.choices, default=Images.FILES)
    filters = models.JSONField(default=dict, blank=True, help_text="Normalised export filters.")
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text="Kind options: aspect_pairs (pairs), include_ties (dpo).",
    )
    rows_written = models.PositiveBigIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True, help_text="Rows per split.")
    manifest = models.JSONField(default=dict, blank=True)
    file = models.CharField(
        max_length=500, blank=True, help_text="The archive, relative to MODEL_ROOT/exports."
    )
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    content_sha256 = models.CharField(max_length=64, blank=True)

    class Meta:
        # The table of the days when exports lived in annotation/: the move kept the rows.
        db_table = "annotation_exportrun"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "-created_at"], name="export_run_project")]

    def __str__(self) -> str:
        return f"export {self.pk}: {self.kind} as {self.format} ({self.status})"

    @property
    def relative_path(self) -> str:
        return f"project-{self.project_id}/export-{self.pk}-{self.kind}-{self.format}.zip"

    @property
    def path(self) -> Path | None:
        """The finished archive, or None while there is none."""
        return exports_root() / self.file if self.file else None

    @property
    def download_name(self) -> str:
        return f"editloop-project{self.project_id}-export{self.pk}-{self.kind}-{self.format}.zip"

    def delete_file(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
