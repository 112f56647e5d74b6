"""Dataset export endpoints of the API contract (DESIGN.md): start an export, follow it,
download the archive, cancel it. Managers of the project (and staff) only."""

from __future__ import annotations

from django.http import FileResponse, Http404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.permissions import get_project_for
from editloop.job_api import (
    ConflictSerializer,
    JobStateSerializer,
    cancel,
    job_for,
    job_state,
)
from exports.models import ExportRun
from exports.request import FORMATS, IMAGE_MODES, KINDS, LABEL_SOURCES, LAYOUTS
from exports.runs import request_export

EXPORT_REQUEST = inline_serializer(
    "ExportRequest",
    {
        "kind": serializers.ChoiceField(choices=KINDS),
        "format": serializers.ChoiceField(choices=FORMATS, required=False),
        "images": serializers.ChoiceField(choices=IMAGE_MODES, required=False),
        "filters": inline_serializer(
            "ExportFilters",
            {
                "rounds": serializers.ListField(child=serializers.IntegerField(), required=False),
                "generators": serializers.ListField(child=serializers.CharField(), required=False),
                "since": serializers.CharField(required=False),
                "until": serializers.CharField(required=False),
                "exclude_simulated": serializers.BooleanField(required=False),
                "exclude_gold": serializers.BooleanField(required=False),
                "exclude_unsure": serializers.BooleanField(required=False),
                "min_agreement": serializers.FloatField(required=False, allow_null=True),
            },
            required=False,
        ),
        "aspect_pairs": serializers.BooleanField(required=False),
        "include_ties": serializers.BooleanField(
            required=False, help_text="dpo (default true); the editreward layout (default false)"
        ),
        "layout": serializers.ChoiceField(
            choices=LAYOUTS,
            required=False,
            help_text="imagereward (rankings) or editreward (pairs): those projects' own files",
        ),
        "labels": serializers.ChoiceField(
            choices=LABEL_SOURCES,
            required=False,
            help_text="human (default), model (the reward model's, for tasks nobody judged) "
            "or both",
        ),
        "reward_version": serializers.IntegerField(
            required=False,
            allow_null=True,
            help_text="labels model/both: a reward-model version id (default: the active one)",
        ),
        "image_feature": serializers.BooleanField(
            required=False, help_text="dpo: embedded images as the HF Image feature, not bytes"
        ),
    },
)


def export_payload(run: ExportRun, request: Request) -> dict:
    succeeded = run.status == ExportRun.Status.SUCCEEDED
    download = reverse("api-export-download", args=[run.pk]) if succeeded else None
    return {
        **job_state(run),
        "kind": run.kind,
        "format": run.format,
        "images": run.images,
        "filters": run.filters,
        "options": run.options,
        "rows": run.rows_written,
        "counts": run.counts,
        "size_bytes": run.size_bytes,
        "content_sha256": run.content_sha256 or None,
        "manifest": run.manifest if succeeded else None,
        "download": request.build_absolute_uri(download) if download else None,
        "attempts": run.attempts,
    }


class ExportRunSerializer(JobStateSerializer):
    """An export, as :func:`export_payload` answers it."""

    kind = serializers.CharField()
    format = serializers.CharField()
    images = serializers.CharField()
    filters = serializers.JSONField()
    options = serializers.JSONField()
    rows = serializers.IntegerField()
    counts = serializers.JSONField(help_text="rows per table")
    size_bytes = serializers.IntegerField(allow_null=True)
    content_sha256 = serializers.CharField(allow_null=True)
    manifest = serializers.JSONField(allow_null=True, help_text="once it succeeded")
    download = serializers.URLField(allow_null=True, help_text="once it succeeded")
    attempts = serializers.IntegerField()


def _export_for(request: Request, pk: int) -> ExportRun:
    return job_for(request.user, ExportRun, pk)


class ExportListView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=EXPORT_REQUEST, responses={202: ExportRunSerializer, 400: dict})
    def post(self, request: Request, pk: int) -> Response:
        project = get_project_for(request.user, pk, manager=True)
        # A bad request raises RequestInvalid: the API's exception handler answers 400.
        run = request_export(project, request.data, user=request.user)
        return Response(export_payload(run, request), status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=ExportRunSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        project = get_project_for(request.user, pk, manager=True)
        runs = ExportRun.objects.filter(project=project).order_by("-created_at")[:50]
        return Response([export_payload(run, request) for run in runs])


class ExportView(APIView):
    @extend_schema(responses=ExportRunSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(export_payload(_export_for(request, pk), request))


class ExportDownloadView(APIView):
    @extend_schema(
        responses={
            (200, "application/zip"): OpenApiResponse(description="the export archive"),
            409: ConflictSerializer,
        }
    )
    def get(self, request: Request, pk: int) -> FileResponse | Response:
        run = _export_for(request, pk)
        if run.status != ExportRun.Status.SUCCEEDED:
            return Response(
                {"detail": f"the export is {run.status}, not succeeded; nothing to download"},
                status=status.HTTP_409_CONFLICT,
            )
        try:
            archive = open(run.path, "rb")  # no `with`: FileResponse closes it
        except FileNotFoundError:
            raise Http404("the archive was deleted; start the export again") from None
        return FileResponse(
            archive, as_attachment=True, filename=run.download_name, content_type="application/zip"
        )


class ExportCancelView(APIView):
    @extend_schema(request=None, responses={202: ExportRunSerializer, 409: ConflictSerializer})
    def post(self, request: Request, pk: int) -> Response:
        return cancel(_export_for(request, pk), lambda run: export_payload(run, request))
