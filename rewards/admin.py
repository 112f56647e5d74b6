"""Admin pages of the reward loop: runs with progress bars and loss curves, versions with
their metrics plotted against the human ceiling, promote and roll back; named base
checkpoints (registered, checked and re-checked here); retrains with a chosen base."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from annotation.admin import ProjectAdmin
from editloop.errors import RequestInvalid
from editloop.job_admin import JobAdmin, NoAddAdmin
from rewards import scheduling
from rewards.config import HEAD_MODES, TINY
from rewards.models import BaseCheckpoint, RewardModelVersion, RewardTrainingRun, VariantScore
from rewards.plots import loss_chart, versions_chart

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from annotation.models import Project


@admin.register(RewardTrainingRun)
class RewardTrainingRunAdmin(JobAdmin):
    list_display = [
        "id",
        "project",
        "progress_column",
        "current_loss",
        "trigger",
        "version_link",
        "message",
        "created_at",
    ]
    list_filter = ["status", "project", "trigger"]
    fields = [
        "project",
        "progress_column",
        "live",
        "message",
        "curves",
        "trigger",
        "requested_by",
        "base",
        "heads",
        "options",
        "judgements_used",
        "new_judgements",
        "current_loss",
        "version_link",
        "attempts",
        "created_at",
        "started_at",
        "heartbeat_at",
        "finished_at",
    ]
    readonly_fields = [f for f in fields if f not in ("options",)] + ["options"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("project", "version")

    @admin.display(description="loss curve")
    def curves(self, run: RewardTrainingRun) -> str:
        return mark_safe(loss_chart(run))  # safe: charts escape every label

    @admin.display(description="version")
    def version_link(self, run: RewardTrainingRun) -> str:
        if run.version is None:
            return "—"
        url = reverse("admin:rewards_rewardmodelversion_change", args=[run.version_id])
        return format_html('<a href="{}">{}</a>', url, run.version)


@admin.register(RewardModelVersion)
class RewardModelVersionAdmin(NoAddAdmin):
    list_display = [
        "__str__",
        "status",
        "test_accuracy",
        "human_ceiling",
        "test_auc",
        "judgement_total",
        "created_at",
    ]
    list_filter = ["project", "status"]
    actions = ["promote", "roll_back"]
    readonly_fields = [
        "project",
        "number",
        "status",
        "base",
        "heads",
        "is_random_init",
        "directory",
        "metrics_table",
        "config",
        "dataset_hash",
        "judgement_total",
        "parent",
        "created_at",
        "promoted_at",
    ]
    exclude = ["judgement_ids", "metrics"]

    @admin.display(description="test pairwise acc.")
    def test_accuracy(self, version: RewardModelVersion) -> str:
        return _fmt(version.headline("test"))

    @admin.display(description="human ceiling")
    def human_ceiling(self, version: RewardModelVersion) -> str:
        return _fmt(version.ceiling("test"))

    @admin.display(description="test ROC-AUC")
    def test_auc(self, version: RewardModelVersion) -> str:
        return _fmt(version.metrics.get("test", {}).get("roc_auc"))

    @admin.display(description="judgements")
    def judgement_total(self, version: RewardModelVersion) -> int:
        return len(version.judgement_ids)

    @admin.display(description="metrics")
    def metrics_table(self, version: RewardModelVersion) -> str:
        return mark_safe(_metrics_html(version.metrics))  # safe: values escaped

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        if isinstance(response, TemplateResponse) and "cl" in response.context_data:
            versions = list(response.context_data["cl"].queryset.select_related("project"))
            response.context_data["charts"] = _charts_per_project(versions)
        return response

    @admin.action(description="Promote to active")
    def promote(self, request: HttpRequest, queryset: QuerySet) -> None:
        if queryset.count() != 1:
            self.message_user(request, "choose exactly one version", messages.ERROR)
            return
        version = queryset.get()
        version.promote()
        self.message_user(request, f"{version} is now active")

    @admin.action(description="Roll back (reactivate the previous version)")
    def roll_back(self, request: HttpRequest, queryset: QuerySet) -> None:
        version = queryset.first()
        if queryset.count() != 1 or not version.is_active:
            self.message_user(request, "choose the one active version", messages.ERROR)
            return
        previous = version.roll_back()
        self.message_user(request, f"{version} retired; active now: {previous or 'none'}")


def _charts_per_project(versions: list[RewardModelVersion]) -> list[str]:
    by_project: dict[str, list[RewardModelVersion]] = {}
    for version in versions:
        by_project.setdefault(str(version.project), []).append(version)
    return [
        mark_safe(versions_chart(found, f"{name}: reward model versions"))  # safe: charts escape
        for name, found in by_project.items()
    ]


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _shown(value: object) -> object:
    """A metric cell: floats to 3 places, an undefined metric as a dash (its reason is the
    ``<metric>_undefined`` row beside it)."""
    if value is None or isinstance(value, float):
        return _fmt(value)
    return value


def _metrics_html(metrics: dict) -> str:
    rows = []
    for split in ("val", "test"):
        values = metrics.get(split)
        if not values:
            continue
        ceiling = values.get("human_ceiling") or {}
        for key, value in values.items():
            if key == "human_ceiling" or isinstance(value, dict | list):
                continue
            rows.append(
                format_html(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    split,
                    key,
                    _shown(value),
                    _shown(ceiling[key]) if key in ceiling else "",
                )
            )
    versus = metrics.get("versus_active")
    if versus:
        rows.append(
            format_html(
                "<tr><td colspan=4>against v{} on the same {} {} judgements: "
                "this {} vs active {} ({})</td></tr>",
                versus["against_version"],
                versus["items"],
                versus.get("split", "test"),  # versions before issue 11 were compared on test
                _fmt(versus["candidate"]),
                _fmt(versus["active"]),
                versus.get("reason", ""),
            )
        )
    header = "<tr><th>split</th><th>metric</th><th>model</th><th>human ceiling</th></tr>"
    return f"<table>{header}{''.join(rows)}</table>"


@admin.register(VariantScore)
class VariantScoreAdmin(NoAddAdmin):
    list_display = ["variant", "version", "overall", "aspects"]
    list_filter = ["version"]
    readonly_fields = ["variant", "version", "overall", "aspects", "created_at"]


@admin.action(description="Retrain reward model now")
def retrain_reward_model_now(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> None:
    """On the Projects page: a retrain per selected project (single flight per project), on
    the deployment's default base (REWARD_BASE)."""
    for project in queryset:
        _queue_retrain(modeladmin, request, project)


# --- retrain with a chosen base -----------------------------------------------------------


class RetrainForm(forms.Form):
    base = forms.ChoiceField(help_text="The built-in random-init model or a registered base.")
    path = forms.CharField(
        required=False,
        max_length=500,
        help_text="Or an absolute checkpoint directory (checked now; staff only).",
    )
    heads = forms.ChoiceField(choices=[(h, h) for h in HEAD_MODES], initial="fine")

    def __init__(self, *args: object, user: User | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        names = BaseCheckpoint.objects.values_list("name", flat=True)
        self.fields["base"].choices = [(TINY, "tiny (random init)")] + [(n, n) for n in names]

    def clean(self) -> dict:
        data = super().clean()
        field = "path" if data.get("path") else "base"
        chosen = data.get("path") or data.get("base")
        if chosen:
            try:  # the same check as the API and train_reward
                data["chosen"] = scheduling.check_base(
                    chosen, may_name_paths=bool(self.user and self.user.is_staff)
                )
            except scheduling.InvalidBase as error:
                self.add_error(field, str(error))
        return data


@admin.action(description="Retrain reward model with a chosen base…")
def retrain_reward_model_with_base(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> TemplateResponse | None:
    """On the Projects page: pick the base (and heads) on a form, then a retrain per project."""
    form = RetrainForm(request.POST if "apply" in request.POST else None, user=request.user)
    if not form.is_valid():
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": "Retrain the reward model",
            "form": form,
            "projects": queryset,
            "action": "retrain_reward_model_with_base",
            "checkbox_name": ACTION_CHECKBOX_NAME,
            "opts": modeladmin.model._meta,
        }
        return TemplateResponse(request, "admin/rewards/retrain_with_base.html", context)
    for project in queryset:
        _queue_retrain(
            modeladmin, request, project,
            base=form.cleaned_data["chosen"], heads=form.cleaned_data["heads"],
        )  # fmt: skip
    return None


def _queue_retrain(
    modeladmin: admin.ModelAdmin, request: HttpRequest, project: Project, **choices: str
) -> None:
    try:
        run = scheduling.request_retrain(
            project, trigger=RewardTrainingRun.Trigger.ADMIN, user=request.user, **choices
        )
    except scheduling.RetrainAlreadyRunning as busy:
        modeladmin.message_user(request, str(busy), messages.WARNING)
        return
    except RequestInvalid as error:  # the base or the project's reward options do not hold
        modeladmin.message_user(request, f"{project}: {error}", messages.ERROR)
        return
    url = reverse("admin:rewards_rewardtrainingrun_change", args=[run.pk])
    modeladmin.message_user(
        request, format_html('Queued <a href="{}">reward run {}</a> for {}.', url, run.pk, project)
    )


ProjectAdmin.actions = [
    *(ProjectAdmin.actions or []),
    retrain_reward_model_now,
    retrain_reward_model_with_base,
]


# --- named base checkpoints --------------------------------------------------------------


class BaseCheckpointForm(forms.ModelForm):
    """Name and directory; the directory is checked (rewards/bases.py) before anything is
    saved, with the same check as a run request's path."""

    class Meta:
        model = BaseCheckpoint
        fields = ["name", "path"]

    def clean_name(self) -> str:
        try:
            return scheduling.checked_base_name(self.cleaned_data["name"])
        except scheduling.InvalidBase as error:
            raise forms.ValidationError(str(error)) from None

    def clean_path(self) -> str:
        path = self.cleaned_data["path"].strip()
        try:
            self.checked = scheduling.inspect_directory(path, field="path")
        except scheduling.InvalidBase as error:
            raise forms.ValidationError(str(error)) from None
        return path


@admin.register(BaseCheckpoint)
class BaseCheckpointAdmin(admin.ModelAdmin):
    form = BaseCheckpointForm
    list_display = ["name", "kind", "parameter_count", "image_size", "path", "checked_at"]
    readonly_fields = [
        "kind", "parameter_count", "image_size", "info", "registered_by", "created_at",
        "checked_at",
    ]  # fmt: skip
    search_fields = ["name", "path"]
    actions = ["recheck"]

    def get_readonly_fields(
        self, request: HttpRequest, obj: BaseCheckpoint | None = None
    ) -> Sequence[str]:
        # Runs refer to a base by name: renaming one would orphan what they asked for.
        return [*self.readonly_fields, "name"] if obj is not None else self.readonly_fields

    @admin.display(description="parameters", ordering="parameters")
    def parameter_count(self, base: BaseCheckpoint) -> str:
        return base.parameters_shown

    def save_model(
        self, request: HttpRequest, obj: BaseCheckpoint, form: BaseCheckpointForm, change: bool
    ) -> None:
        obj.apply_check(form.checked)
        if not change:
            obj.registered_by = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="Re-check the selected bases")
    def recheck(self, request: HttpRequest, queryset: QuerySet) -> None:
        for base in queryset:
            try:
                scheduling.recheck_base(base)
            except scheduling.InvalidBase as error:
                self.message_user(request, f"{base}: {error}", messages.ERROR)
            else:
                self.message_user(
                    request, f"{base}: {base.kind}, {base.parameters_shown} parameters"
                )
