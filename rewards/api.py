"""Reward-model endpoints of the API contract (DESIGN.md): retrain runs, versions, scoring,
and the named base checkpoints. A bad request raises editloop.errors.RequestInvalid (the
API's exception handler answers 400 naming the field); any other error is a 500."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from django.contrib.auth.models import User
from django.http import Http404
from drf_spectacular.utils import extend_schema
from PIL import Image as PILImage
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.images import inspect_image
from annotation.models import Membership
from annotation.permissions import get_project_for
from editloop.errors import RequestInvalid
from editloop.job_api import (
    ConflictSerializer,
    JobStateSerializer,
    cancel,
    job_for,
    job_state,
)
from rewards import scheduling
from rewards.bases import inspect_base
from rewards.config import TINY
from rewards.models import BaseCheckpoint, RewardModelVersion, RewardTrainingRun

if TYPE_CHECKING:
    from django.core.files.uploadedfile import UploadedFile

MAX_SCORE_IMAGES = 32


class RetrainSerializer(serializers.Serializer):
    # `tiny`, a registered name, or (staff) a path: scheduling.check_base decides.
    base = serializers.CharField(required=False, max_length=500)
    heads = serializers.ChoiceField(choices=["coarse", "fine", "cbm"], required=False)
    options = serializers.DictField(required=False)


def version_payload(version: RewardModelVersion | None) -> dict | None:
    if version is None:
        return None
    return {
        "id": version.pk,
        "number": version.number,
        "active": version.is_active,
        "status": version.status,
        "base": version.base,
        "heads": version.heads,
        "tiny_random_init": version.is_random_init,
        "judgements": len(version.judgement_ids),
        "dataset_hash": version.dataset_hash,
        "parent": version.parent_id,
        "created_at": version.created_at,
        "metrics": version.metrics,
    }


def run_payload(run: RewardTrainingRun) -> dict:
    return {
        **job_state(run),
        "current_loss": run.current_loss,
        "trigger": run.trigger,
        "base": run.base,
        "heads": run.heads,
        "judgements_used": run.judgements_used,
        "version": version_payload(run.version),
    }


class RewardRunSerializer(JobStateSerializer):
    """A reward-model training run, as :func:`run_payload` answers it."""

    current_loss = serializers.FloatField(allow_null=True)
    trigger = serializers.CharField()
    base = serializers.CharField()
    heads = serializers.CharField()
    judgements_used = serializers.IntegerField()
    version = serializers.JSONField(allow_null=True, help_text="the version it registered")


def _run_for(request: Request, pk: int) -> RewardTrainingRun:
    return job_for(request.user, RewardTrainingRun, pk, select_related=("version",))


class RewardRunListView(APIView):
    parser_classes = [JSONParser, FormParser]

    @extend_schema(
        request=RetrainSerializer, responses={202: RewardRunSerializer, 409: ConflictSerializer}
    )
    def post(self, request: Request, pk: int) -> Response:
        project = get_project_for(request.user, pk, manager=True)
        serializer = RetrainSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        try:
            run = scheduling.request_retrain(
                project,
                trigger=RewardTrainingRun.Trigger.API,
                user=request.user,
                **serializer.validated_data,
            )
        except scheduling.RetrainAlreadyRunning as busy:
            return Response(
                {"detail": str(busy), "run": run_payload(busy.run)}, status=status.HTTP_409_CONFLICT
            )
        return Response(run_payload(run), status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=RewardRunSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        project = get_project_for(request.user, pk, manager=True)
        found = project.reward_runs.select_related("version")[:50]
        return Response([run_payload(run) for run in found])


class RewardRunView(APIView):
    @extend_schema(responses=RewardRunSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(run_payload(_run_for(request, pk)))


class RewardRunCancelView(APIView):
    @extend_schema(request=None, responses={202: RewardRunSerializer, 409: ConflictSerializer})
    def post(self, request: Request, pk: int) -> Response:
        return cancel(_run_for(request, pk), run_payload)


class RewardModelListView(APIView):
    def get(self, request: Request, pk: int) -> Response:
        project = get_project_for(request.user, pk, manager=True)
        versions = list(project.reward_models.all())
        active = next((v for v in versions if v.is_active), None)
        return Response(
            {
                "active": active.pk if active else None,
                "versions": [version_payload(v) for v in versions],
            }
        )


# --- named bases ------------------------------------------------------------------------------


def base_payload(base: BaseCheckpoint, *, with_path: bool) -> dict:
    payload = {
        "name": base.name,
        "kind": base.kind,
        "parameters": base.parameters,
        "image_size": base.image_size,
        "builtin": False,
        "checked_at": base.checked_at,
    }
    return {**payload, "path": base.path} if with_path else payload


def tiny_payload() -> dict:
    info = inspect_base(TINY)
    return {
        "name": TINY,
        "kind": info.kind,
        "parameters": info.parameters,
        "image_size": info.image_size,
        "builtin": True,
        "checked_at": None,
    }


def _require_staff_or_a_manager(user: User) -> None:
    """Bases are picked when starting a retrain: whoever may start one may list them."""
    if user.is_staff:
        return
    if not Membership.objects.filter(user=user, role=Membership.Role.MANAGER).exists():
        raise PermissionDenied("only staff and project managers may list the base checkpoints")


class BaseListView(APIView):
    def get(self, request: Request) -> Response:
        _require_staff_or_a_manager(request.user)
        staff = request.user.is_staff
        registered = [base_payload(b, with_path=staff) for b in BaseCheckpoint.objects.all()]
        return Response([tiny_payload(), *registered])


class ScoreSerializer(serializers.Serializer):
    instruction = serializers.CharField(max_length=2000)
    source = serializers.ImageField()
    edited = serializers.ListField(child=serializers.ImageField(), min_length=1)


class ScoreView(APIView):
    """Score any edit with a reward-model version, as ImageReward's ``score()`` does."""

    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {
                    "instruction": {"type": "string"},
                    "source": {"type": "string", "format": "binary"},
                    "edited": {"type": "array", "items": {"type": "string", "format": "binary"}},
                },
            }
        },
        responses={200: dict},
    )
    def post(self, request: Request, version: str) -> Response:
        found = self._version(request, version)
        data = {
            "instruction": request.data.get("instruction"),
            "source": request.FILES.get("source"),
            "edited": request.FILES.getlist("edited"),
        }
        serializer = ScoreSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        if len(data["edited"]) > MAX_SCORE_IMAGES:
            raise RequestInvalid.of(
                "edited", f"{len(data['edited'])} images, at most {MAX_SCORE_IMAGES} a call"
            )
        source = _open("source", data["source"])
        edited = [_open(f"edited[{n}]", upload) for n, upload in enumerate(data["edited"])]
        results = score_with_version(found, data["instruction"], source, edited)
        answer = {
            "version": found.pk,
            "version_number": found.number,
            "tiny_random_init": found.is_random_init,
            "results": results,
        }
        if len(results) == 1:
            answer.update(results[0])
        return Response(answer)

    def _version(self, request: Request, version: str) -> RewardModelVersion:
        if version == "active":
            project_id = request.query_params.get("project")
            if not project_id or not project_id.isdigit():
                raise RequestInvalid.of("project", "give ?project=<id> with 'active'")
            project = get_project_for(request.user, int(project_id), manager=True)
            found = RewardModelVersion.active_for(project.pk)
            if found is None:
                raise Http404("the project has no active reward model yet")
            return found
        if not version.isdigit():
            raise Http404("no such reward model")
        found = RewardModelVersion.objects.filter(pk=int(version)).first()
        if found is None:
            raise Http404("no such reward model")
        get_project_for(request.user, found.project_id, manager=True)
        return found


def _open(field: str, upload: UploadedFile) -> PILImage.Image:
    """The same checks as an import (annotation.images.inspect_image), then decode."""
    data = upload.read()
    try:
        inspect_image(data)
    except ValueError as error:  # inspect_image's refusal: what is wrong with the file
        raise RequestInvalid.of(field, str(error)) from None
    with PILImage.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def score_with_version(
    version: RewardModelVersion, instruction: str, source: PILImage.Image, edited: list
) -> list[dict]:
    from rewards.registry import loaded_model
    from rewards.scoring import score_images

    return score_images(loaded_model(version), source, edited, instruction)
