"""The job endpoints' response serializers: the schema describes what the payloads hold."""

from __future__ import annotations

import pytest
from rest_framework.test import APIRequestFactory

from exports.api import ExportRunSerializer, export_payload
from exports.models import ExportRun
from rewards.api import RewardRunSerializer, run_payload
from rewards.models import RewardTrainingRun
from tests.conftest import client_for
from training.api import (
    FinetuneRunSerializer,
    GenerationRunSerializer,
    finetune_payload,
    generation_payload,
)
from training.models import FinetuneRun, GenerationRun


def payloads(project) -> dict:
    request = APIRequestFactory().get("/")
    return {
        "reward run": (
            RewardRunSerializer,
            run_payload(RewardTrainingRun.objects.create(project=project)),
        ),
        "fine-tune": (
            FinetuneRunSerializer,
            finetune_payload(FinetuneRun.objects.create(project=project)),
        ),
        "generation": (
            GenerationRunSerializer,
            generation_payload(GenerationRun.objects.create(project=project, round=2)),
        ),
        "export": (
            ExportRunSerializer,
            export_payload(ExportRun.objects.create(project=project), request),
        ),
    }


@pytest.mark.parametrize("job", ["reward run", "fine-tune", "generation", "export"])
def test_every_job_payload_has_exactly_its_serializers_fields(project, job):
    serializer, payload = payloads(project)[job]
    assert set(payload) == set(serializer().fields)


def test_the_schema_describes_the_job_fields(staff):
    schema = client_for(staff).get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    assert {"loss_curve", "evaluation", "pipeline"} <= set(
        components["FinetuneRun"]["properties"]
    )
    assert {"status", "progress", "heartbeat_at", "version"} <= set(
        components["RewardRun"]["properties"]
    )
    assert {"download", "manifest"} <= set(components["ExportRun"]["properties"])
    cancel = schema["paths"]["/api/v1/finetune-runs/{id}/cancel/"]["post"]["responses"]
    assert cancel["202"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/FinetuneRun"
    )
    assert "Conflict" in cancel["409"]["content"]["application/json"]["schema"]["$ref"]
