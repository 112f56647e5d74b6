"""API pieces every Job endpoint shares (reward runs, fine-tunes, generations, exports):
finding a job the caller may see, its common fields, and cancel."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.models import User
from django.http import Http404
from rest_framework import serializers, status
from rest_framework.response import Response

from annotation.permissions import get_project_for
from editloop.jobs import Job


def job_for(user: User, model: type[Job], pk: int, *, select_related: tuple[str, ...] = ()) -> Job:
    """The job if the user manages its project: 404 for anyone outside the project (and for
    an unknown id), 403 for its annotators."""
    job = model.objects.filter(pk=pk).select_related(*select_related).first()
    if job is None:
        raise Http404(f"no such {model._meta.verbose_name}")
    get_project_for(user, job.project_id, manager=True)
    return job


def job_state(job: Job) -> dict:
    """What every job payload starts with."""
    return {
        "id": job.pk,
        "project": job.project_id,
        "status": job.status,
        "progress": round(job.progress, 4),
        "message": job.message,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "heartbeat_at": job.heartbeat_at,
        "finished_at": job.finished_at,
    }


class JobStateSerializer(serializers.Serializer):
    """The fields of :func:`job_state`, for the API schema (/api/schema/); each job type's
    serializer adds its own. tests/editloop/test_job_api.py checks every payload has
    exactly its serializer's fields, so the two cannot drift apart."""

    id = serializers.IntegerField()
    project = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Job.Status.choices)
    progress = serializers.FloatField(help_text="0..1")
    message = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class ConflictSerializer(serializers.Serializer):
    """A 409's body: why the request cannot be done now (and the job in the way)."""

    detail = serializers.CharField()
    run = serializers.JSONField(required=False, help_text="the active job in the way")


def cancel(job: Job, payload: Callable[[Job], dict]) -> Response:
    """A pending job stops at once, a running one at its next report: 202 with the job;
    409 when it already ended."""
    if job.is_finished:
        return Response(
            {"detail": f"it already ended ({job.status})"}, status=status.HTTP_409_CONFLICT
        )
    job.request_cancel()
    return Response(payload(job), status=status.HTTP_202_ACCEPTED)
