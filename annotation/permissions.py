"""Who may see and change what: one lookup per kind of object, 404 for outsiders."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import OuterRef, Subquery
from django.http import Http404
from rest_framework.exceptions import PermissionDenied

from annotation.models import Membership, Project


def get_project_for(user: User, pk: int, *, manager: bool = False) -> Project:
    """The project if the user may see it (404 otherwise); 403 if ``manager`` is needed."""
    role_here = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    project = Project.objects.annotate(caller_role=Subquery(role_here)).filter(pk=pk).first()
    if project is None or (project.caller_role is None and not user.is_staff):
        raise Http404("no such project")
    if user.is_staff:
        return project
    role = project.caller_role
    if manager and role != Membership.Role.MANAGER:
        raise PermissionDenied("only the project's managers may do this")
    return project


def visible_projects(user: User):  # noqa: ANN201
    if user.is_staff:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user)


def roles_of(user: User) -> dict[int, str]:
    return dict(Membership.objects.filter(user=user).values_list("project_id", "role"))
