"""Who may see and change what: one lookup per kind of object, 404 for outsiders."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import Http404
from rest_framework.exceptions import PermissionDenied

from annotation.models import Assignment, Membership, Project


def get_project_for(user: User, pk: int, *, manager: bool = False) -> Project:
    """The project if the user may see it (404 otherwise); 403 if ``manager`` is needed."""
    project = Project.objects.filter(pk=pk).first()
    if project is None:
        raise Http404("no such project")
    if user.is_staff:
        return project
    role = project.role_of(user)
    if role is None:
        raise Http404("no such project")
    if manager and role != Membership.Role.MANAGER:
        raise PermissionDenied("only the project's managers may do this")
    return project


def visible_projects(user: User):  # noqa: ANN201
    if user.is_staff:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user)


def roles_of(user: User) -> dict[int, str]:
    return dict(Membership.objects.filter(user=user).values_list("project_id", "role"))


def assignment_exists_for(user: User, pk: int) -> bool:
    return Assignment.objects.filter(pk=pk, annotator=user).exists()
