from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, F, Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from annotation.models import (
    Annotator,
    AspectScore,
    Assignment,
    EditTask,
    Image,
    Judgement,
    Membership,
    Project,
    Variant,
)
from annotation.stats import Median


def thumbnail_tag(image: Image | None, side: int = 96) -> str:
    if image is None:
        return "—"
    return format_html(
        '<a href="{}" target="_blank"><img src="{}" style="max-width:{}px;max-height:{}px" '
        'alt="{}" loading="lazy"></a>',
        image.url,
        image.thumbnail_url,
        side,
        side,
        image.sha256[:12],
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Raw judgements are the record of what people said: nobody edits them here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]
    fields = ["user", "role", "paused", "flagged_at", "flag_reason"]
    readonly_fields = ["flagged_at", "flag_reason"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "mode", "overlap", "task_count", "complete_count", "gold_rate"]
    search_fields = ["name"]
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(
                _tasks=Count("tasks", filter=Q(tasks__is_gold=False)),
                _complete=Count(
                    "tasks",
                    filter=Q(tasks__is_gold=False) & Q(tasks__judgement_count__gte=F("overlap")),
                ),
            )
        )

    @admin.display(description="tasks", ordering="_tasks")
    def task_count(self, project: Project) -> int:
        return project._tasks

    @admin.display(description="complete", ordering="_complete")
    def complete_count(self, project: Project) -> int:
        return project._complete


class VariantInline(admin.TabularInline):
    model = Variant
    extra = 0
    fields = ["preview", "generator", "model_version", "seed", "params"]
    readonly_fields = ["preview"]
    show_change_link = True

    @admin.display(description="image")
    def preview(self, variant: Variant) -> str:
        return thumbnail_tag(variant.image)


@admin.register(EditTask)
class EditTaskAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "preview",
        "instruction",
        "category",
        "split",
        "priority",
        "is_gold",
        "round",
        "judgement_count",
        "extra_judgements",
        "project",
    ]
    list_filter = ["project", "category", "split", "is_gold", "round"]
    search_fields = ["instruction", "external_id"]
    list_select_related = ["source", "project"]
    readonly_fields = ["source_preview", "judgement_count", "split"]
    raw_id_fields = ["source"]
    inlines = [VariantInline]

    @admin.display(description="source")
    def preview(self, task: EditTask) -> str:
        return thumbnail_tag(task.source, side=64)

    @admin.display(description="source image")
    def source_preview(self, task: EditTask) -> str:
        return thumbnail_tag(task.source, side=256)


@admin.register(Variant)
class VariantAdmin(admin.ModelAdmin):
    list_display = ["id", "preview", "task", "generator", "model_version", "seed"]
    list_filter = ["generator", "task__project"]
    list_select_related = ["image", "task"]
    raw_id_fields = ["task", "image"]
    readonly_fields = ["preview"]

    @admin.display(description="image")
    def preview(self, variant: Variant) -> str:
        return thumbnail_tag(variant.image, side=64)


@admin.register(Image)
class ImageAdmin(ReadOnlyAdmin):
    list_display = ["sha256", "preview", "width", "height", "format", "size_bytes", "created_at"]
    search_fields = ["sha256"]

    @admin.display(description="image")
    def preview(self, image: Image) -> str:
        return thumbnail_tag(image, side=64)


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["id", "task", "annotator", "status", "leased_at", "expires_at", "finished_at"]
    list_filter = ["status", "task__project"]
    list_select_related = ["task", "annotator"]
    search_fields = ["annotator__username"]


class AspectScoreInline(admin.TabularInline):
    model = AspectScore
    extra = 0
    can_delete = False
    readonly_fields = ["variant", "aspect", "value"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Judgement)
class JudgementAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "annotator",
        "task",
        "ranking",
        "unsure",
        "simulated",
        "total_ms",
        "created_at",
    ]
    list_filter = ["simulated", "unsure", "assignment__task__project"]
    list_select_related = ["assignment__annotator", "assignment__task"]
    search_fields = ["assignment__annotator__username", "client_id"]
    inlines = [AspectScoreInline]

    @admin.display(description="annotator")
    def annotator(self, judgement: Judgement) -> str:
        return judgement.assignment.annotator.username

    @admin.display(description="task")
    def task(self, judgement: Judgement) -> str:
        return str(judgement.assignment.task)


@admin.register(Annotator)
class AnnotatorAdmin(ReadOnlyAdmin):
    list_display = [
        "username",
        "judgements",
        "skipped",
        "leased_now",
        "median_total_s",
        "median_ranking_s",
        "median_scoring_s",
        "last_login",
    ]
    search_fields = ["username"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        submitted = Q(assignments__status=Assignment.Status.SUBMITTED)
        return (
            super()
            .get_queryset(request)
            .annotate(
                _judgements=Count("assignments", filter=submitted),
                _skipped=Count(
                    "assignments", filter=Q(assignments__status=Assignment.Status.SKIPPED)
                ),
                _leased=Count(
                    "assignments", filter=Q(assignments__status=Assignment.Status.LEASED)
                ),
                _median_total=Median("assignments__judgement__total_ms"),
                _median_ranking=Median("assignments__judgement__ranking_ms"),
                _median_scoring=Median("assignments__judgement__scoring_ms"),
            )
        )

    @admin.display(ordering="_judgements")
    def judgements(self, user: Annotator) -> int:
        return user._judgements

    @admin.display(ordering="_skipped")
    def skipped(self, user: Annotator) -> int:
        return user._skipped

    @admin.display(description="open leases", ordering="_leased")
    def leased_now(self, user: Annotator) -> int:
        return user._leased

    @admin.display(description="median total (s)", ordering="_median_total")
    def median_total_s(self, user: Annotator) -> str:
        return _seconds(user._median_total)

    @admin.display(description="median ranking (s)", ordering="_median_ranking")
    def median_ranking_s(self, user: Annotator) -> str:
        return _seconds(user._median_ranking)

    @admin.display(description="median scoring (s)", ordering="_median_scoring")
    def median_scoring_s(self, user: Annotator) -> str:
        return _seconds(user._median_scoring)


def _seconds(milliseconds: float | None) -> str:
    return "—" if milliseconds is None else f"{milliseconds / 1000:.1f}"
