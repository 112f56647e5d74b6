"""The annotator's pages: the queue of projects and the annotation app for one project.

Both are thin: the annotation page is a static shell plus the project as JSON; everything
it does afterwards goes through the REST API (``/api/v1/``).
"""

from __future__ import annotations

import re

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie

from annotation.models import Project
from annotation.permissions import get_project_for, roles_of, visible_projects
from annotation.stats import progress_for_annotator

_BLANK_LINES = re.compile(r"\n\s*\n")


def guideline_paragraphs(markdown: str) -> list[str]:
    """Guidelines as plain-text paragraphs (split on blank lines); the template escapes them."""
    text = markdown.replace("\r\n", "\n").strip()
    return [paragraph.strip() for paragraph in _BLANK_LINES.split(text) if paragraph.strip()]


@login_required
def queue(request: HttpRequest) -> HttpResponse:
    projects = visible_projects(request.user).order_by("name")
    roles = roles_of(request.user)
    rows = [
        {
            "project": project,
            "progress": progress_for_annotator(project, request.user),
            "role": roles.get(project.pk),
        }
        for project in projects
    ]
    return render(request, "annotation/queue.html", {"rows": rows})


def _app_config(project: Project, user: User) -> dict:
    """What the annotation app needs to start; the rest comes from the API."""
    return {
        "id": project.pk,
        "user": user.pk,  # keys the browser's saved work, so a shared browser keeps it apart
        "name": project.name,
        "mode": project.mode,
        "aspects": project.aspects,
        "guidelines": project.guidelines,
        "urls": {
            "project": reverse("api-project", args=[project.pk]),
            "next": reverse("api-next", args=[project.pk]),
            # The app swaps the 0 for an assignment id.
            "judgement": reverse("api-judgement", args=[0]),
            "skip": reverse("api-skip", args=[0]),
            "queue": reverse("queue"),
        },
    }


@login_required
@ensure_csrf_cookie  # the app sends the csrftoken cookie back as X-CSRFToken
def annotate(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_project_for(request.user, project_id)
    context = {
        "project": project,
        "progress": progress_for_annotator(project, request.user),
        "guidelines": guideline_paragraphs(project.guidelines),
        "app_config": _app_config(project, request.user),
    }
    return render(request, "annotation/annotate.html", context)
