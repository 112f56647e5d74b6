"""Admin building blocks for rows written by the system, and for Jobs (editloop/jobs.py):
a progress bar, a page that refreshes itself while the job runs, cancel, and the
"launch from the add form, read-only afterwards" pattern of reward runs, fine-tunes,
generations and exports."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from editloop.jobs import Job

LIVE_REFRESH = (
    "<small>refreshing every 3 s while it is active</small>"
    "<script>setTimeout(() => location.reload(), 3000)</script>"
)


def progress_bar(fraction: float, status: str) -> str:
    colour = {"failed": "#c23b3b", "cancelled": "#8a9099", "skipped": "#8a9099"}.get(
        status, "#3b6fd4"
    )
    return format_html(
        '<div title="{}%" style="width:140px;background:#e6e9ee;border-radius:3px">'
        '<div style="width:{}%;background:{};height:10px;border-radius:3px"></div></div>'
        "<small>{}% · {}</small>",
        round(100 * fraction),
        round(100 * fraction, 1),
        colour,
        round(100 * fraction),
        status,
    )


class NoAddAdmin(admin.ModelAdmin):
    """Rows written by the system: viewed, acted on through actions, never edited here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.method == "GET" and super().has_change_permission(request, obj)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)


class JobAdmin(NoAddAdmin):
    """A Job's rows: progress bar, live refresh while active, and cancel."""

    actions = ["cancel_runs"]

    @admin.display(description="progress", ordering="progress")
    def progress_column(self, job: Job) -> str:
        return progress_bar(job.progress, job.status)

    @admin.display(description="auto-refresh")
    def live(self, job: Job) -> str:
        return mark_safe(LIVE_REFRESH) if job.is_active else ""  # safe: a constant

    @admin.action(description="Cancel selected runs")
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet) -> None:
        cancelled = [job.pk for job in queryset if job.is_active and job.request_cancel()]
        self.message_user(request, f"asked {len(cancelled)} run(s) to stop: {cancelled}")


class JobLaunchAdmin(JobAdmin):
    """Staff launch a job from the add form (the form's ``Meta.fields``); once it exists the
    page shows ``readonly``. ``save_model`` starts the job and points ``obj`` at its row."""

    readonly: list[str] = []

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff

    def get_fields(self, request: HttpRequest, obj: Job | None = None) -> list[str]:
        return self.readonly if obj else list(self.form.Meta.fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Job | None = None) -> list[str]:
        return self.readonly if obj else []


def launch_form_for(add_url_name: str, projects: QuerySet) -> HttpResponseRedirect:
    """A Projects action's answer: the launch form, with the first selected project in it."""
    project = projects.first()
    url = reverse(add_url_name)
    return HttpResponseRedirect(f"{url}?project={project.pk}" if project else url)
