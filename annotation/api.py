"""REST API (``/api/v1/``), per the contract in DESIGN.md. Views stay thin: look the object
up through a helper that checks access, validate, call a plain function, answer. A request
that is wrong raises editloop.errors.RequestInvalid, which the API's exception handler
answers with a 400 naming the fields."""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import assignment as queue
from annotation import judgements, stats
from annotation.importers import ImportProblem, ImportRefused, import_zip
from annotation.models import Assignment, Membership
from annotation.permissions import get_project_for, roles_of, visible_projects
from annotation.serializers import (
    MemberSerializer,
    ProjectSerializer,
    SkipSerializer,
    UserCreateSerializer,
    lease_payload,
)
from annotation.throttling import (
    blocked_message,
    client_address,
    login_blocked,
    record_login_failure,
)
from editloop.errors import NON_FIELD, RequestInvalid


class TokenView(APIView):
    """Exchange a username and password for an API token."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def post(self, request: Request) -> Response:
        username = str(request.data.get("username", ""))
        password = str(request.data.get("password", ""))
        address = client_address(request)
        if login_blocked(username, address):
            return Response({"detail": blocked_message()}, status=status.HTTP_429_TOO_MANY_REQUESTS)
        user = authenticate(request, username=username, password=password)
        if user is None:
            record_login_failure(username, address)
            raise RequestInvalid.of(NON_FIELD, "wrong username or password")
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


class UserListView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=UserCreateSerializer, responses={201: UserCreateSerializer})
    def post(self, request: Request) -> Response:
        serializer = UserCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.save()
        return Response({"id": user.pk, "username": user.username}, status=status.HTTP_201_CREATED)


class ProjectListView(APIView):
    @extend_schema(responses=ProjectSerializer(many=True))
    def get(self, request: Request) -> Response:
        projects = visible_projects(request.user).order_by("id")
        context = {"roles": roles_of(request.user)}
        return Response(ProjectSerializer(projects, many=True, context=context).data)

    @extend_schema(request=ProjectSerializer, responses={201: ProjectSerializer})
    def post(self, request: Request) -> Response:
        if not request.user.is_staff:
            raise PermissionDenied("only staff may create projects")
        serializer = ProjectSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        project = serializer.save()
        data = ProjectSerializer(project, context={"roles": roles_of(request.user)}).data
        return Response(data, status=status.HTTP_201_CREATED)


class ProjectDetailView(APIView):
    @extend_schema(responses=ProjectSerializer)
    def get(self, request: Request, pk: int) -> Response:
        project = get_project_for(request.user, pk)
        data = ProjectSerializer(project, context={"roles": roles_of(request.user)}).data
        data["progress"] = stats.progress_for_annotator(project, request.user)
        return Response(data)


class MemberView(APIView):
    @extend_schema(request=MemberSerializer, responses={201: MemberSerializer})
    def post(self, request: Request, pk: int) -> Response:
        project = get_project_for(request.user, pk, manager=True)
        serializer = MemberSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user, role = serializer.validated_data["username"], serializer.validated_data["role"]
        membership, created = Membership.objects.update_or_create(
            project=project, user=user, defaults={"role": role}
        )
        return Response(
            {"username": user.username, "role": membership.role},
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class ImportView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {"archive": {"type": "string", "format": "binary"}},
            }
        },
        responses={201: dict, 400: dict},
    )
    def post(self, request: Request, pk: int) -> Response:
        project = get_project_for(request.user, pk, manager=True)
        upload = request.FILES.get("archive")
        if upload is None:
            raise ImportRefused([ImportProblem(None, "archive", "attach a zip as 'archive'")])
        result = import_zip(project, upload)
        return Response(
            {"tasks": result.tasks, "variants": result.variants}, status=status.HTTP_201_CREATED
        )


class NextTaskView(APIView):
    """Lease the next task. Optional body ``{"keep": [assignment ids on screen]}``."""

    def post(self, request: Request, pk: int) -> Response:
        project = get_project_for(request.user, pk)
        keep = _assignment_ids(request.data.get("keep", []) if hasattr(request.data, "get") else [])
        try:
            assignment = queue.lease_next_task(project, request.user, keep=keep)
        except queue.AnnotatorPaused as paused:
            return Response(
                {"detail": str(paused), "paused": True}, status=status.HTTP_403_FORBIDDEN
            )
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(lease_payload(assignment))


def _assignment_ids(raw: object) -> frozenset[int]:
    if not isinstance(raw, list) or not all(isinstance(i, int) for i in raw):
        return frozenset()
    return frozenset(raw)


class JudgementView(APIView):
    def post(self, request: Request, pk: int) -> Response:
        try:
            judgement, created = judgements.submit_judgement(pk, request.user, request.data)
        except Assignment.DoesNotExist:
            raise Http404("no such assignment") from None
        except judgements.JudgementConflict as conflict:
            return Response({"detail": str(conflict)}, status=status.HTTP_409_CONFLICT)
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response({"judgement": {"id": judgement.pk}}, status=code)


class SkipView(APIView):
    @extend_schema(request=SkipSerializer)
    def post(self, request: Request, pk: int) -> Response:
        try:
            assignment = judgements.skip_assignment(pk, request.user, request.data.get("reason"))
        except Assignment.DoesNotExist:
            raise Http404("no such assignment") from None
        except judgements.JudgementConflict as conflict:
            return Response({"detail": str(conflict)}, status=status.HTTP_409_CONFLICT)
        return Response({"assignment": {"id": assignment.pk, "status": assignment.status}})


class StatsView(APIView):
    def get(self, request: Request, pk: int) -> Response:
        project = get_project_for(request.user, pk, manager=True)
        return Response(stats.project_stats(project))
