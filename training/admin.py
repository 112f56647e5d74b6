"""Admin pages for editor fine-tuning and generation: launch from an add form (or from a
project's actions), follow the progress bar and the loss curve, compare base and
fine-tuned, cancel."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from annotation.admin import ProjectAdmin
from editloop import charts
from editloop.errors import RequestInvalid
from editloop.job_admin import JobLaunchAdmin, launch_form_for
from training import scheduling
from training.models import FinetuneRun, GenerationRun


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
    return mark_safe(rows)


def _reward_cells(values: dict, keys: list[str]) -> str:
    return format_html_join("", "<td>{}</td>", ((f"{values[k]:.3f}",) for k in keys))


def json_field(help_text: str) -> forms.JSONField:
    return forms.JSONField(
        required=False, help_text=help_text, error_messages={"invalid": "not JSON: %(value)s"}
    )


class FinetuneLaunchForm(forms.ModelForm):
    filters = json_field('e.g. {"include_simulated": false, "rounds": [1]}')
    options = json_field('FinetuneConfig fields, e.g. {"max_steps": 200}')

    class Meta:
        model = FinetuneRun
        fields = ["project", "method", "base", "reward_source", "reward_version", "filters",
                  "options", "evaluate", "ab_batch"]

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        data["filters"], data["options"] = data["filters"] or {}, data["options"] or {}
        try:
            scheduling.check_finetune_request(
                data["project"], method=data["method"], base=data["base"],
                reward_source=data["reward_source"], reward_version=data.get("reward_version"),
                filters=data["filters"], options=data["options"],
            )
        except RequestInvalid as invalid:
            invalid.add_to_form(self)
        busy = FinetuneRun.objects.filter(project=data["project"], status__in=FinetuneRun.ACTIVE)
        if busy.exists():
            self.add_error("project", f"fine-tune run {busy.first().pk} is still active")
        return data


@admin.register(FinetuneRun)
class FinetuneRunAdmin(JobLaunchAdmin):
    list_display = ["id", "project", "method", "progress_column", "step", "current_loss",
                    "win_rate", "message", "created_at"]
    list_filter = ["status", "method", "project"]
    form = FinetuneLaunchForm
    readonly = ["project", "progress_column", "live", "message", "curves", "evaluation_table",
                "method", "base", "is_random_init", "reward_source", "reward_version", "filters",
                "options", "examples_used", "step", "total_steps", "current_loss",
                "checkpoints", "result", "ab_project", "attempts", "requested_by",
                "created_at", "started_at", "heartbeat_at", "finished_at"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        return {**super().get_changeform_initial_data(request), "base": "tiny"}

    def save_model(
        self, request: HttpRequest, obj: FinetuneRun, form: FinetuneLaunchForm, change: bool
    ) -> None:
        data = form.cleaned_data
        run = scheduling.request_finetune(
            data["project"], user=request.user, method=data["method"], base=data["base"],
            reward_source=data["reward_source"], reward_version=data.get("reward_version"),
            filters=data["filters"], options=data["options"], evaluate=data["evaluate"],
            ab_batch=data["ab_batch"],
        )
        obj.pk = obj.id = run.pk

    @admin.display(description="loss curve")
    def curves(self, run: FinetuneRun) -> str:
        return mark_safe(finetune_loss_chart(run))

    @admin.display(description="base vs fine-tuned")
    def evaluation_table(self, run: FinetuneRun) -> str:
        return evaluation_html(run)

    @admin.display(description="win rate")
    def win_rate(self, run: FinetuneRun) -> str:
        value = run.evaluation.get("win_rate")
        return "—" if value is None else f"{value:.2f}"


class GenerationLaunchForm(forms.ModelForm):
    seeds = json_field("One seed per variant, e.g. [0, 1, 2, 3]")
    guidance_scales = json_field("[[text, image], ...] per variant")
    splits = json_field('e.g. ["test"]; empty: every split')

    class Meta:
        model = GenerationRun
        fields = ["project", "editor", "finetune_run", "variants_per_task", "seeds",
                  "guidance_scales", "splits", "max_tasks"]

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        try:
            scheduling.check_generation_request(
                data["project"], editor=data["editor"], finetune_run=data.get("finetune_run"),
                variants_per_task=data.get("variants_per_task"), seeds=data["seeds"],
                guidance_scales=data["guidance_scales"],
            )
        except RequestInvalid as invalid:
            invalid.add_to_form(self)
        return data


@admin.register(GenerationRun)
class GenerationRunAdmin(JobLaunchAdmin):
    list_display = ["id", "project", "round", "editor_name", "progress_column", "tasks_created",
                    "variants_created", "message", "created_at"]
    list_filter = ["status", "project"]
    form = GenerationLaunchForm
    readonly = ["project", "progress_column", "live", "message", "round", "editor",
                "finetune_run", "variants_per_task", "seeds", "guidance_scales", "splits",
                "max_tasks", "tasks_created", "variants_created", "attempts", "requested_by",
                "created_at", "started_at", "heartbeat_at", "finished_at"]

    def save_model(
        self, request: HttpRequest, obj: GenerationRun, form: GenerationLaunchForm, change: bool
    ) -> None:
        data = form.cleaned_data
        run = scheduling.request_generation(
            data["project"], user=request.user, editor=data["editor"],
            finetune_run=data.get("finetune_run"), variants_per_task=data.get("variants_per_task"),
            seeds=data["seeds"], guidance_scales=data["guidance_scales"],
            splits=data["splits"] or [], max_tasks=data.get("max_tasks"),
        )
        obj.pk = obj.id = run.pk

    @admin.display(description="editor")
    def editor_name(self, run: GenerationRun) -> str:
        return f"fine-tune {run.finetune_run_id}" if run.finetune_run_id else run.editor


@admin.action(description="Fine-tune the editor…")
def finetune_editor(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponseRedirect:
    """On the Projects page: opens the launch form with the project filled in."""
    return launch_form_for("admin:training_finetunerun_add", queryset)


@admin.action(description="Generate a new round of variants…")
def generate_round(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponseRedirect:
    return launch_form_for("admin:training_generationrun_add", queryset)


ProjectAdmin.actions = [*(ProjectAdmin.actions or []), finetune_editor, generate_round]
