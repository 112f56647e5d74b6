"""Fine-tuning and generation endpoints: `POST /projects/{id}/finetune-runs/` and
`GET /finetune-runs/{id}/` are in the API contract; generation runs and cancel sit beside.
Serializers parse types; training.scheduling checks the values and raises
editloop.errors.RequestInvalid, which the API's exception handler answers with a 400."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser
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
from editloop.jobs import Job
from rewards.models import RewardModelVersion
from training import scheduling
from training.models import FinetuneRun, GenerationRun


class FinetuneRequestSerializer(serializers.Serializer):
    """The types only: what the values may be is scheduling.check_finetune_request's (the
    admin's check too)."""

    method = serializers.CharField(help_text=f"one of {', '.join(FinetuneRun.Method.values)}")
    base = serializers.CharField(required=False)
    reward_source = serializers.CharField(
        required=False, help_text=f"one of {', '.join(FinetuneRun.RewardSource.values)}"
    )
    reward_version = serializers.IntegerField(required=False, allow_null=True)
    filters = serializers.DictField(required=False)
    options = serializers.DictField(required=False)
    evaluate = serializers.BooleanField(required=False, default=True)
    ab_batch = serializers.BooleanField(required=False, default=False)

    def validate_reward_version(self, value: int | None) -> RewardModelVersion | None:
        if value is None:
            return None
        found = RewardModelVersion.objects.filter(pk=value).first()
        if found is None:
            raise serializers.ValidationError(f"no reward model version {value}")
        return found


class GenerationRequestSerializer(serializers.Serializer):
    """The types (a split is one of three names); what the values may be is
    scheduling.check_generation_request's (the admin's check too)."""

    editor = serializers.CharField(required=False, default="procedural")
    finetune_run = serializers.IntegerField(required=False, allow_null=True)
    variants_per_task = serializers.IntegerField(required=False, help_text="2..16")
    seeds = serializers.ListField(child=serializers.IntegerField(), required=False)
    guidance_scales = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()), required=False
    )
    splits = serializers.ListField(
        child=serializers.ChoiceField(choices=["train", "val", "test"]), required=False
    )
    max_tasks = serializers.IntegerField(required=False, min_value=1, allow_null=True)

    def validate_finetune_run(self, value: int | None) -> FinetuneRun | None:
        if value is None:
            return None
        found = FinetuneRun.objects.filter(pk=value).first()
        if found is None:
            raise serializers.ValidationError(f"no fine-tune run {value}")
        return found


def job_payload(job: Job) -> dict:
    return {**job_state(job), "attempts": job.attempts}


def finetune_payload(run: FinetuneRun) -> dict:
    return {
        **job_payload(run),
        "method": run.method,
        "base": run.base,
        "tiny_random_init": run.from_tiny_editor,
        "reward_source": run.reward_source,
        "reward_version": run.reward_version_id,
        "filters": run.filters,
        "options": run.options,
        "examples_used": run.examples_used,
        "step": run.step,
        "total_steps": run.total_steps,
        "current_loss": run.current_loss,
        "loss_curve": run.loss_curve,
        "checkpoints": run.checkpoints,
        "result": run.result,
        "evaluation": run.evaluation,
        "ab_project": run.ab_project_id,
        "pipeline": str(run.pipeline_dir) if run.status == run.Status.SUCCEEDED else None,
    }


def generation_payload(run: GenerationRun) -> dict:
    return {
        **job_payload(run),
        "editor": run.editor,
        "finetune_run": run.finetune_run_id,
        "round": run.round,
        "variants_per_task": run.variants_per_task,
        "seeds": run.seeds,
        "guidance_scales": run.guidance_scales,
        "splits": run.splits,
        "max_tasks": run.max_tasks,
        "tasks_created": run.tasks_created,
        "variants_created": run.variants_created,
    }


class TrainingJobSerializer(JobStateSerializer):
    attempts = serializers.IntegerField(help_text="how many times a worker started it")


class FinetuneRunSerializer(TrainingJobSerializer):
    """A fine-tuning run, as :func:`finetune_payload` answers it."""

    method = serializers.CharField()
    base = serializers.CharField()
    tiny_random_init = serializers.BooleanField()
    reward_source = serializers.CharField()
    reward_version = serializers.IntegerField(allow_null=True)
    filters = serializers.JSONField()
    options = serializers.JSONField()
    examples_used = serializers.IntegerField()
    step = serializers.IntegerField()
    total_steps = serializers.IntegerField()
    current_loss = serializers.FloatField(allow_null=True)
    loss_curve = serializers.JSONField(help_text="[{step, loss, ...}]")
    checkpoints = serializers.JSONField(help_text="checkpoint-<step> names")
    result = serializers.JSONField()
    evaluation = serializers.JSONField(help_text="base vs fine-tuned on the test tasks")
    ab_project = serializers.IntegerField(allow_null=True)
    pipeline = serializers.CharField(allow_null=True, help_text="once it succeeded")


class GenerationRunSerializer(TrainingJobSerializer):
    """A generation round, as :func:`generation_payload` answers it."""

    editor = serializers.CharField()
    finetune_run = serializers.IntegerField(allow_null=True)
    round = serializers.IntegerField()
    variants_per_task = serializers.IntegerField()
    seeds = serializers.JSONField()
    guidance_scales = serializers.JSONField()
    splits = serializers.JSONField()
    max_tasks = serializers.IntegerField(allow_null=True)
    tasks_created = serializers.IntegerField()
    variants_created = serializers.IntegerField()


class FinetuneRunListView(APIView):
    parser_classes = [JSONParser, FormParser]

    @extend_schema(
        request=FinetuneRequestSerializer,
        responses={202: FinetuneRunSerializer, 409: ConflictSerializer},
    )
    def post(self, request: Request, pk: int) -> Response:
        project = get_project_for(request.user, pk, manager=True)
        serializer = FinetuneRequestSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = {"base": settings.FINETUNE_BASE, **serializer.validated_data}
        try:
            run = scheduling.request_finetune(project, user=request.user, **data)
        except scheduling.FinetuneAlreadyRunning as busy:
            return Response(
                {"detail": str(busy), "run": finetune_payload(busy.run)},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(finetune_payload(run), status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=FinetuneRunSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        project = get_project_for(request.user, pk, manager=True)
        return Response([finetune_payload(run) for run in project.finetune_runs.all()[:50]])


class FinetuneRunView(APIView):
    @extend_schema(responses=FinetuneRunSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(finetune_payload(job_for(request.user, FinetuneRun, pk)))


class FinetuneRunCancelView(APIView):
    @extend_schema(request=None, responses={202: FinetuneRunSerializer, 409: ConflictSerializer})
    def post(self, request: Request, pk: int) -> Response:
        return cancel(job_for(request.user, FinetuneRun, pk), finetune_payload)


class GenerationRunListView(APIView):
    parser_classes = [JSONParser, FormParser]

    @extend_schema(request=GenerationRequestSerializer, responses={202: GenerationRunSerializer})
    def post(self, request: Request, pk: int) -> Response:
        project = get_project_for(request.user, pk, manager=True)
        serializer = GenerationRequestSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        run = scheduling.request_generation(project, user=request.user, **serializer.validated_data)
        return Response(generation_payload(run), status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=GenerationRunSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        project = get_project_for(request.user, pk, manager=True)
        return Response([generation_payload(run) for run in project.generation_runs.all()[:50]])


class GenerationRunView(APIView):
    @extend_schema(responses=GenerationRunSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(generation_payload(job_for(request.user, GenerationRun, pk)))


class GenerationRunCancelView(APIView):
    @extend_schema(request=None, responses={202: GenerationRunSerializer, 409: ConflictSerializer})
    def post(self, request: Request, pk: int) -> Response:
        return cancel(job_for(request.user, GenerationRun, pk), generation_payload)
