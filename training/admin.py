"""Admin pages for editor fine-tuning and generation: launch from an add form (or from a
project's actions), follow the progress bar and the loss curve, compare base and
fine-tuned, cancel."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from rest_framework.exceptions import ValidationError as ApiValidationError

from annotation.admin import ProjectAdmin
from editloop import charts
from rewards.admin import NoAddAdmin, progress_bar
from training import scheduling
from training.models import FinetuneRun, GenerationRun

LIVE_REFRESH = (
    "<small>refreshing every 3 s while the run is active</small>"
    "<script>setTimeout(() => location.reload(), 3000)</script>"
)


def finetune_loss_chart(run: FinetuneRun) -> str:
    points = [(p["step"], p["loss"]) for p in run.loss_curve if p.get("loss") is not None]
    svg = charts.render(
        charts.Chart(f"Fine-tune {run.pk} ({run.method}): loss", "step", "loss",
                     [charts.Series("training loss", points)])
    )
    accuracy = [
        (p["step"], p["implicit_accuracy"])
        for p in run.loss_curve
        if p.get("implicit_accuracy") is not None
    ]
    if accuracy:
        svg += charts.render(
            charts.Chart("DPO implicit accuracy", "step", "share of pairs",
                         [charts.Series("implicit accuracy", accuracy)], y_range=(0.0, 1.0))
        )
    return svg


def evaluation_html(run: FinetuneRun) -> str:
    evaluation = run.evaluation
    if not evaluation:
        return "—"
    rows = format_html("<p>{} test tasks edited by both editors.</p>", evaluation.get("tasks", 0))
    if evaluation.get("note"):
        rows += format_html("<p>{}</p>", evaluation["note"])
    means = evaluation.get("mean_reward")
    if means:
        rows += format_html(
            "<p>Reward-model win rate of the fine-tuned editor: <b>{}</b>{}</p>",
            f"{evaluation['win_rate']:.2f}",
            " (scored by a tiny random-init reward model)"
            if evaluation.get("reward_version_random_init") else "",
        )
        keys = list(means["base"])
        header = format_html_join("", "<th>{}</th>", ((k,) for k in keys))
        body = format_html_join(
            "",
            "<tr><td>{}</td>{}</tr>",
            ((name, _reward_cells(means[name], keys)) for name in ("base", "finetuned")),
        )
        rows += format_html("<table><tr><th>mean reward</th>{}</tr>{}</table>", header, body)
        rows += charts.render(
            charts.Chart(
                "Mean reward per aspect: base vs fine-tuned",
                "aspect (" + ", ".join(f"{i}={k}" for i, k in enumerate(keys)) + ")",
                "reward",
                [
                    charts.Series(name, [(i, means[name][k]) for i, k in enumerate(keys)])
                    for name in ("base", "finetuned")
                ],
            )
        )
    return mark_safe(rows)  # noqa: S308  (format_html escaped every value)


def _reward_cells(values: dict, keys: list[str]) -> str:
    return format_html_join("", "<td>{}</td>", ((f"{values[k]:.3f}",) for k in keys))


class JsonField(forms.CharField):
    def __init__(self, *, default: object, **kwargs: object) -> None:
        super().__init__(required=False, initial=json.dumps(default), **kwargs)
        self.default = default

    def clean(self, value: str) -> object:
        value = super().clean(value)
        if not value:
            return self.default
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise forms.ValidationError(f"not JSON: {error}") from None


class FinetuneLaunchForm(forms.ModelForm):
    filters = JsonField(default={}, help_text='e.g. {"include_simulated": false, "rounds": [1]}')
    options = JsonField(default={}, help_text='FinetuneConfig fields, e.g. {"max_steps": 200}')

    class Meta:
        model = FinetuneRun
        fields = ["project", "method", "base", "reward_source", "reward_version", "filters",
                  "options", "evaluate", "ab_batch"]

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        from training.api import check_finetune_options

        try:
            check_finetune_options(data["method"], data["options"])
            scheduling.check_base(data["base"])
            scheduling.check_filters(data["filters"])
            scheduling.check_reward_version(data["project"], data.get("reward_version"))
        except ApiValidationError as error:
            self.add_error("options", str(error.detail["options"][0]))
        except scheduling.BadRequest as error:
            self.add_error(error.field, error.message)
        busy = FinetuneRun.objects.filter(project=data["project"], status__in=FinetuneRun.ACTIVE)
        if busy.exists():
            self.add_error("project", f"fine-tune run {busy.first().pk} is still active")
        return data


@admin.register(FinetuneRun)
class FinetuneRunAdmin(NoAddAdmin):
    list_display = ["id", "project", "method", "progress_column", "step", "current_loss",
                    "win_rate", "message", "created_at"]
    list_filter = ["status", "method", "project"]
    actions = ["cancel_runs"]
    form = FinetuneLaunchForm
    readonly = ["project", "progress_column", "live", "message", "curves", "evaluation_table",
                "method", "base", "is_random_init", "reward_source", "reward_version", "filters",
                "options", "examples_used", "step", "total_steps", "current_loss",
                "checkpoints", "result", "ab_project", "attempts", "requested_by",
                "created_at", "started_at", "heartbeat_at", "finished_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.method == "GET" and super().has_change_permission(request, obj)

    def get_fields(self, request: HttpRequest, obj: FinetuneRun | None = None) -> list[str]:
        return self.readonly if obj else list(FinetuneLaunchForm.Meta.fields)

    def get_readonly_fields(self, request: HttpRequest, obj: FinetuneRun | None = None):  # noqa: ANN201
        return self.readonly if obj else []

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        return {**super().get_changeform_initial_data(request), "base": "tiny"}

    def save_model(self, request: HttpRequest, obj: FinetuneRun, form, change: bool) -> None:  # noqa: ANN001
        data = form.cleaned_data
        run = scheduling.request_finetune(
            data["project"], user=request.user, method=data["method"], base=data["base"],
            reward_source=data["reward_source"], reward_version=data.get("reward_version"),
            filters=data["filters"], options=data["options"], evaluate=data["evaluate"],
            ab_batch=data["ab_batch"],
        )
        obj.pk = obj.id = run.pk

    @admin.display(description="progress", ordering="progress")
    def progress_column(self, run: FinetuneRun) -> str:
        return progress_bar(run.progress, run.status)

    @admin.display(description="auto-refresh")
    def live(self, run: FinetuneRun) -> str:
        return mark_safe(LIVE_REFRESH) if run.is_active else ""  # noqa: S308 (constant)

    @admin.display(description="loss curve")
    def curves(self, run: FinetuneRun) -> str:
        return mark_safe(finetune_loss_chart(run))  # noqa: S308  (charts escape every label)

    @admin.display(description="base vs fine-tuned")
    def evaluation_table(self, run: FinetuneRun) -> str:
        return evaluation_html(run)

    @admin.display(description="win rate")
    def win_rate(self, run: FinetuneRun) -> str:
        value = run.evaluation.get("win_rate")
        return "—" if value is None else f"{value:.2f}"

    @admin.action(description="Cancel selected runs")
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet) -> None:
        cancelled = [run.pk for run in queryset if run.is_active and run.request_cancel()]
        self.message_user(request, f"asked {len(cancelled)} run(s) to stop: {cancelled}")


class GenerationLaunchForm(forms.ModelForm):
    seeds = JsonField(default=None, help_text="One seed per variant, e.g. [0, 1, 2, 3]")
    guidance_scales = JsonField(default=None, help_text="[[text, image], ...] per variant")
    splits = JsonField(default=[], help_text='e.g. ["test"]; empty: every split')

    class Meta:
        model = GenerationRun
        fields = ["project", "editor", "finetune_run", "variants_per_task", "seeds",
                  "guidance_scales", "splits", "max_tasks"]

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        try:
            self.launch(None, enqueue=False, dry_run=True)
        except scheduling.BadRequest as error:
            self.add_error(error.field if error.field in self.fields else None, error.message)
        return data

    def launch(self, user, *, enqueue: bool = True, dry_run: bool = False) -> GenerationRun:  # noqa: ANN001
        from django.db import transaction

        data = self.cleaned_data
        with transaction.atomic():
            run = scheduling.request_generation(
                data["project"], user=user, editor=data["editor"],
                finetune_run=data.get("finetune_run"),
                variants_per_task=data.get("variants_per_task"), seeds=data["seeds"],
                guidance_scales=data["guidance_scales"], splits=data["splits"],
                max_tasks=data.get("max_tasks"), enqueue=enqueue,
            )
            if dry_run:
                transaction.set_rollback(True)
        return run


@admin.register(GenerationRun)
class GenerationRunAdmin(NoAddAdmin):
    list_display = ["id", "project", "round", "editor_name", "progress_column", "tasks_created",
                    "variants_created", "message", "created_at"]
    list_filter = ["status", "project"]
    actions = ["cancel_runs"]
    form = GenerationLaunchForm
    readonly = ["project", "progress_column", "live", "message", "round", "editor",
                "finetune_run", "variants_per_task", "seeds", "guidance_scales", "splits",
                "max_tasks", "tasks_created", "variants_created", "attempts", "requested_by",
                "created_at", "started_at", "heartbeat_at", "finished_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.method == "GET" and super().has_change_permission(request, obj)

    def get_fields(self, request: HttpRequest, obj: GenerationRun | None = None) -> list[str]:
        return self.readonly if obj else list(GenerationLaunchForm.Meta.fields)

    def get_readonly_fields(self, request: HttpRequest, obj: GenerationRun | None = None):  # noqa: ANN201
        return self.readonly if obj else []

    def save_model(self, request: HttpRequest, obj: GenerationRun, form, change: bool) -> None:  # noqa: ANN001
        run = form.launch(request.user)
        obj.pk = obj.id = run.pk

    @admin.display(description="editor")
    def editor_name(self, run: GenerationRun) -> str:
        return f"fine-tune {run.finetune_run_id}" if run.finetune_run_id else run.editor

    @admin.display(description="progress", ordering="progress")
    def progress_column(self, run: GenerationRun) -> str:
        return progress_bar(run.progress, run.status)

    @admin.display(description="auto-refresh")
    def live(self, run: GenerationRun) -> str:
        return mark_safe(LIVE_REFRESH) if run.is_active else ""  # noqa: S308 (constant)

    @admin.action(description="Cancel selected runs")
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet) -> None:
        cancelled = [run.pk for run in queryset if run.is_active and run.request_cancel()]
        self.message_user(request, f"asked {len(cancelled)} run(s) to stop: {cancelled}")


def _launch_form_for(admin_name: str, queryset: QuerySet) -> HttpResponseRedirect:
    project = queryset.first()
    url = reverse(f"admin:training_{admin_name}_add")
    return HttpResponseRedirect(f"{url}?project={project.pk}" if project else url)


@admin.action(description="Fine-tune the editor…")
def finetune_editor(modeladmin, request: HttpRequest, queryset: QuerySet):  # noqa: ANN001, ANN201
    """On the Projects page: opens the launch form with the project filled in."""
    return _launch_form_for("finetunerun", queryset)


@admin.action(description="Generate a new round of variants…")
def generate_round(modeladmin, request: HttpRequest, queryset: QuerySet):  # noqa: ANN001, ANN201
    return _launch_form_for("generationrun", queryset)


ProjectAdmin.actions = [*(ProjectAdmin.actions or []), finetune_editor, generate_round]
