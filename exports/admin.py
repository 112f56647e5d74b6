"""Admin pages for dataset exports: launch from an add form (or a project's action), follow
the progress bar, download the archive, cancel; deleting an export deletes its archive."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from annotation.admin import ProjectAdmin
from editloop.errors import RequestInvalid
from editloop.job_admin import JobLaunchAdmin, launch_form_for
from exports.archive import human_bytes
from exports.models import ExportRun
from exports.request import LABEL_SOURCES, REQUEST_FIELDS, parse_request
from exports.runs import request_export, validated_request


class ExportLaunchForm(forms.ModelForm):
    images = forms.ChoiceField(
        choices=[("", "default for the format (files; embed for hf)"), *ExportRun.Images.choices],
        required=False,
    )
    filters = forms.JSONField(
        required=False,
        initial=dict,
        help_text='e.g. {"exclude_simulated": true, "rounds": [1], "min_agreement": 0.6, '
        '"since": "2026-11-01", "generators": ["ip2p"], "exclude_gold": true}',
    )
    aspect_pairs = forms.BooleanField(
        required=False, help_text="pairs: also one row per aspect from the scores"
    )
    include_ties = forms.BooleanField(
        required=False,
        initial=True,
        help_text="dpo: tied pairs with labels 0.5 / 0.5; editreward layout: tied pairs (tie_case)",
    )
    layout = forms.ChoiceField(
        choices=[
            ("default", "default (the format's tables)"),
            ("imagereward", "imagereward (rankings: ImageReward's train/ dataset files)"),
            ("editreward", "editreward (pairs: EditReward's train.json)"),
        ],
        required=False,
        initial="default",
        help_text="another project's own files (JSON with image paths; format is ignored)",
    )
    labels = forms.ChoiceField(
        choices=[(choice, choice) for choice in LABEL_SOURCES],
        required=False,
        initial="human",
        help_text="model / both: the reward model's labels for the tasks nobody judged",
    )
    reward_version = forms.IntegerField(
        required=False,
        min_value=1,
        help_text="labels model / both: the reward-model version id (empty: the active one)",
    )
    image_feature = forms.BooleanField(
        required=False, help_text="dpo: embedded images as the HF Image feature, not bytes"
    )

    class Meta:
        model = ExportRun
        fields = ["project", *REQUEST_FIELDS]

    def request_data(self) -> dict:
        data = self.cleaned_data
        layout = data.get("layout") or "default"
        body = {"kind": data.get("kind"), "filters": data.get("filters") or {}}
        if layout == "default":
            body["format"] = data.get("format")
        else:
            body["layout"] = layout
        if data.get("images"):
            body["images"] = data["images"]
        if data.get("kind") == "pairs" and layout == "default":
            body["aspect_pairs"] = bool(data.get("aspect_pairs"))
        if data.get("kind") == "dpo" or layout == "editreward":
            body["include_ties"] = bool(data.get("include_ties"))
        if data.get("labels") and data["labels"] != "human":
            body["labels"] = data["labels"]
        if data.get("reward_version"):
            body["reward_version"] = data["reward_version"]
        if data.get("image_feature"):
            body["image_feature"] = True
        return body

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        try:
            if data.get("project") is None:
                parse_request(self.request_data())
            else:  # also the reward version: that it exists and is the project's
                validated_request(data["project"], self.request_data())
        except RequestInvalid as invalid:
            invalid.add_to_form(self)
        return data


@admin.register(ExportRun)
class ExportRunAdmin(JobLaunchAdmin):
    list_display = [
        "id",
        "project",
        "kind",
        "format",
        "images",
        "progress_column",
        "rows_written",
        "size",
        "download_link",
        "message",
        "created_at",
    ]
    list_filter = ["status", "kind", "format", "project"]
    form = ExportLaunchForm
    readonly = [
        "project",
        "progress_column",
        "live",
        "message",
        "download_link",
        "kind",
        "format",
        "images",
        "filters",
        "options",
        "counts",
        "rows_written",
        "size",
        "content_sha256",
        "manifest_pretty",
        "trigger",
        "requested_by",
        "attempts",
        "created_at",
        "started_at",
        "heartbeat_at",
        "finished_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("project")

    def save_model(
        self, request: HttpRequest, obj: ExportRun, form: ExportLaunchForm, change: bool
    ) -> None:
        run = request_export(
            form.cleaned_data["project"],
            form.request_data(),
            trigger=ExportRun.Trigger.ADMIN,
            user=request.user,
        )
        obj.pk = obj.id = run.pk

    def delete_model(self, request: HttpRequest, obj: ExportRun) -> None:
        obj.delete_file()
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for run in queryset:
            run.delete_file()
        super().delete_queryset(request, queryset)

    @admin.display(description="size", ordering="size_bytes")
    def size(self, run: ExportRun) -> str:
        return human_bytes(run.size_bytes) if run.size_bytes else "—"

    @admin.display(description="archive")
    def download_link(self, run: ExportRun) -> str:
        if run.status != ExportRun.Status.SUCCEEDED:
            return "—"
        url = reverse("api-export-download", args=[run.pk])
        return format_html('<a href="{}">download .zip</a>', url)

    @admin.display(description="manifest")
    def manifest_pretty(self, run: ExportRun) -> str:
        if not run.manifest:
            return "—"
        return format_html("<pre>{}</pre>", json.dumps(run.manifest, indent=2))


@admin.action(description="Export a dataset…")
def export_dataset(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponseRedirect:
    """On the Projects page: opens the export form with the project filled in."""
    return launch_form_for("admin:exports_exportrun_add", queryset)


ProjectAdmin.actions = [*(ProjectAdmin.actions or []), export_dataset]
