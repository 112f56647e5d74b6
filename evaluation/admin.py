"""Quality control and the dashboard from the Projects page of the admin."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from annotation.admin import ProjectAdmin
from evaluation.quality import run_quality_check


@admin.action(description="Run quality check now")
def run_quality_check_now(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> None:
    """Flag (and pause, where the project says so) annotators below its thresholds, and
    send disputed tasks back for extra judgements."""
    for project in queryset:
        outcome = run_quality_check(project)
        url = reverse("dashboard", args=[project.pk])
        modeladmin.message_user(
            request,
            format_html('{}: {}. <a href="{}">Dashboard</a>', project, outcome.summary(), url),
        )


ProjectAdmin.actions = [*(ProjectAdmin.actions or []), run_quality_check_now]
