"""Export endpoints of the API contract: who may do what, bad requests, follow, download."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from annotation.models import Membership, Project
from exports import runs
from exports.models import ExportRun
from tests.conftest import client_for, make_user
from tests.exports.test_exporters import judge_project


@pytest.fixture
def judged(project, annotator, other_annotator):
    return judge_project(project, annotator, other_annotator)


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    """Queued exports are recorded, not sent: these tests run them in-process."""
    queued: list[int] = []
    monkeypatch.setattr(runs, "enqueue_export", queued.append)
    return queued


def post(user, project, body):
    return client_for(user).post(f"/api/v1/projects/{project.pk}/exports/", body, format="json")


def finished(project, **body) -> ExportRun:
    run = runs.request_export(project, {"kind": "pairs", **body}, enqueue=False)
    runs.execute(run)
    run.refresh_from_db()
    return run


def test_a_manager_starts_an_export_and_it_is_queued(
    project, manager, _no_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        answer = post(manager, project, {"kind": "rankings", "format": "parquet",
                                         "filters": {"exclude_simulated": True}})

    assert answer.status_code == 202
    body = answer.json()
    run = ExportRun.objects.get(pk=body["id"])
    assert (run.trigger, run.requested_by, run.kind, run.format) == (
        "api", manager, "rankings", "parquet")
    assert body["status"] == "pending" and body["download"] is None
    assert body["filters"]["exclude_simulated"] is True and body["images"] == "files"
    assert _no_broker == [run.pk]


@pytest.mark.parametrize(
    "body, fields, filter_fields",
    [
        ({"kind": "triples"}, {"kind"}, None),
        ({"kind": "pairs", "format": "hf", "images": "files"}, {"images"}, None),
        ({"kind": "pairs", "filters": {"min_agreement": 2}}, {"filters"}, {"min_agreement"}),
        ({"kind": "pairs", "filters": {"since": "last week"}}, {"filters"}, {"since"}),
        ({"kind": "dpo", "aspect_pairs": True}, {"aspect_pairs"}, None),
        ([1, 2], {"non_field_errors"}, None),
    ],
)
def test_a_bad_request_is_400_naming_the_field(project, manager, body, fields, filter_fields):
    answer = post(manager, project, body)

    assert answer.status_code == 400
    errors = answer.json()
    assert set(errors) == fields
    if filter_fields:
        assert set(errors["filters"]) == filter_fields
    assert not ExportRun.objects.exists()


def test_a_400_says_what_is_allowed(project, manager):
    answer = post(manager, project, {"kind": "triples"})
    assert answer.json() == {"kind": ["'triples' is not one of pairs, rankings, scores, dpo"]}


def test_annotators_may_not_export_and_outsiders_see_no_project(project, annotator, outsider):
    assert post(annotator, project, {"kind": "pairs"}).status_code == 403
    assert post(outsider, project, {"kind": "pairs"}).status_code == 404
    assert client_for(annotator).get(f"/api/v1/projects/{project.pk}/exports/").status_code == 403
    assert not ExportRun.objects.exists()


def test_nobody_reads_another_projects_export(judged, annotator, outsider):
    run = finished(judged)
    other = Project.objects.create(name="Other project")
    their_manager = make_user("their_manager")
    Membership.objects.create(project=other, user=their_manager, role="manager")

    for path in (f"/api/v1/exports/{run.pk}/", f"/api/v1/exports/{run.pk}/download/"):
        assert client_for(outsider).get(path).status_code == 404
        assert client_for(their_manager).get(path).status_code == 404
        assert client_for(annotator).get(path).status_code == 403
    assert client_for(outsider).post(f"/api/v1/exports/{run.pk}/cancel/").status_code == 404
    assert client_for(outsider).get("/api/v1/exports/999999/").status_code == 404


def test_a_manager_follows_the_export_and_downloads_the_archive(judged, manager):
    run = finished(judged, format="parquet")

    followed = client_for(manager).get(f"/api/v1/exports/{run.pk}/").json()

    assert followed["status"] == "succeeded" and followed["progress"] == 1.0
    assert followed["rows"] == 33 and followed["counts"] == run.counts
    assert followed["content_sha256"] == run.content_sha256
    assert followed["manifest"]["counts"]["total"] == 33
    assert followed["download"] == f"http://testserver/api/v1/exports/{run.pk}/download/"
    answer = client_for(manager).get(followed["download"])
    assert answer.status_code == 200 and answer["Content-Type"] == "application/zip"
    assert answer["Content-Disposition"] == f'attachment; filename="{run.download_name}"'
    data = b"".join(answer.streaming_content)
    assert data == run.path.read_bytes()
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))
    assert manifest["content_sha256"] == run.content_sha256


def test_staff_read_any_export(judged, staff):
    run = finished(judged)
    assert client_for(staff).get(f"/api/v1/exports/{run.pk}/download/").status_code == 200


def test_a_manager_lists_the_projects_exports(judged, manager):
    first, second = finished(judged), finished(judged, kind="dpo")

    listed = client_for(manager).get(f"/api/v1/projects/{judged.pk}/exports/").json()

    assert [item["id"] for item in listed] == [second.pk, first.pk]


def test_there_is_nothing_to_download_before_it_succeeds(project, manager):
    run = runs.request_export(project, {"kind": "pairs"}, enqueue=False)

    answer = client_for(manager).get(f"/api/v1/exports/{run.pk}/download/")

    assert answer.status_code == 409 and "pending" in answer.json()["detail"]


def test_a_deleted_archive_is_404_with_what_to_do(judged, manager):
    run = finished(judged)
    run.delete_file()

    answer = client_for(manager).get(f"/api/v1/exports/{run.pk}/download/")

    assert answer.status_code == 404 and "start the export again" in answer.json()["detail"]


def test_a_manager_cancels_a_pending_export_but_not_a_finished_one(judged, manager):
    pending = runs.request_export(judged, {"kind": "pairs"}, enqueue=False)
    done = finished(judged)

    cancelled = client_for(manager).post(f"/api/v1/exports/{pending.pk}/cancel/")
    refused = client_for(manager).post(f"/api/v1/exports/{done.pk}/cancel/")

    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert refused.status_code == 409 and "succeeded" in refused.json()["detail"]


def test_the_schema_documents_the_export_endpoints(staff):
    schema = client_for(staff).get("/api/schema/?format=json").json()
    assert "/api/v1/projects/{id}/exports/" in schema["paths"]
    assert "/api/v1/exports/{id}/download/" in schema["paths"]


# --- layouts and model labels ------------------------------------------------------------------


@pytest.fixture
def labelled(project, annotator, other_annotator, tmp_path):
    from tests.exports.test_exporters import model_labelled_project

    return model_labelled_project(project, annotator, other_annotator, tmp_path / "more")


def test_a_manager_asks_for_imagereward_files_with_model_labels(labelled, manager):
    project, active, _, _ = labelled
    answer = post(manager, project, {"kind": "rankings", "layout": "imagereward",
                                     "labels": "both"})

    assert answer.status_code == 202, answer.json()
    body = answer.json()
    assert body["options"] == {"layout": "imagereward", "labels": "both",
                               "reward_version": active.pk}
    run = ExportRun.objects.get(pk=body["id"])
    runs.execute(run)
    followed = client_for(manager).get(f"/api/v1/exports/{run.pk}/").json()
    assert followed["status"] == "succeeded"
    assert followed["manifest"]["layout"] == "imagereward"
    assert followed["manifest"]["labels"]["reward_version"]["held_out"]["human_ceiling"] == 0.8
    names = zipfile.ZipFile(io.BytesIO(b"".join(
        client_for(manager).get(followed["download"]).streaming_content))).namelist()
    assert {"dataset/train.json", "dataset/valid.json", "dataset/test.json"} <= set(names)


@pytest.mark.parametrize("case", ["unknown", "another project", "no active version"])
def test_a_bad_reward_version_is_400_naming_it(labelled, manager, case):
    from rewards.models import RewardModelVersion
    from tests.exports.test_exporters import make_version

    project, active, _, _ = labelled
    body = {"kind": "dpo", "labels": "model"}
    if case == "unknown":
        body["reward_version"] = 424242
    elif case == "another project":
        body["reward_version"] = make_version(Project.objects.create(name="Theirs"), 1).pk
    else:
        RewardModelVersion.objects.filter(pk=active.pk).update(status="retired")

    answer = post(manager, project, body)

    assert answer.status_code == 400
    assert set(answer.json()) == {"reward_version"}
    assert not ExportRun.objects.exists()
