"""Who may see and change what: one lookup per kind of object, 404 for outsiders."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import Http404
from rest_framework.exceptions import PermissionDenied

from annotation.models import Membership, Project

# Raw: this runs on every API call, and the ORM's subquery costs more to build than to run.
_PROJECT_WITH_ROLE_SQL = """
SELECT p.*, m.role AS caller_role
FROM annotation_project p
LEFT JOIN annotation_membership m ON m.project_id = p.id AND m.user_id = %s
WHERE p.id = %s
"""


def get_project_for(user: User, pk: int, *, manager: bool = False) -> Project:
    """The project if the user may see it (404 otherwise); 403 if ``manager`` is needed."""
    project = next(iter(Project.objects.raw(_PROJECT_WITH_ROLE_SQL, [user.pk, pk])), None)
    if project is None or (project.caller_role is None and not user.is_staff):
        raise Http404("no such project")
    if user.is_staff:
        return project
    role = project.caller_role
    if manager and role != Membership.Role.MANAGER:
        raise PermissionDenied("only the project's managers may do this")
    return project


def visible_projects(user: User) -> QuerySet[Project]:
    if user.is_staff:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user)


def roles_of(user: User) -> dict[int, str]:
    return dict(Membership.objects.filter(user=user).values_list("project_id", "role"))
