"""The project dashboard page (managers and staff)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.exceptions import PermissionDenied as ApiPermissionDenied

from annotation.permissions import get_project_for
from evaluation.dashboard import project_dashboard


@login_required
def dashboard(request: HttpRequest, project_id: int) -> HttpResponse:
    try:
        project = get_project_for(request.user, project_id, manager=True)
    except ApiPermissionDenied as refused:
        raise PermissionDenied(str(refused.detail)) from None
    context = {"project": project, "sections": project_dashboard(project)}
    return render(request, "evaluation/dashboard.html", context)
