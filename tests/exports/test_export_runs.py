"""Export jobs: the row, its progress and archive, cancel, failure, a dead worker's export
requeued, the streaming connection and its prefetch thread, a real Celery worker, the admin."""

from __future__ import annotations

import json
import threading
import time
import zipfile
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from annotation.models import Image, Judgement, Project
from editloop import jobs
from editloop.errors import RequestInvalid
from exports import runs, writers
from exports.archive import build_archive
from exports.models import ExportRun, exports_root
from tests.conftest import PASSWORD, wait_for
from tests.exports.test_exporters import expected_pairs, jsonl_rows, judge_project


@pytest.fixture
def judged(project, annotator, other_annotator):
    return judge_project(project, annotator, other_annotator)


def start(project, **body) -> ExportRun:
    return runs.request_export(project, {"kind": "pairs", **body}, enqueue=False)


def leftovers() -> list[Path]:
    return [p for p in exports_root().rglob("*") if p.name.endswith(".partial")]


def test_a_finished_export_records_its_archive_counts_and_manifest(judged):
    run = start(judged, format="parquet")

    runs.execute(run)

    run.refresh_from_db()
    assert run.status == "succeeded" and run.progress == 1.0
    assert run.attempts == 1 and run.finished_at >= run.started_at
    assert run.path == exports_root() / f"project-{judged.pk}/export-{run.pk}-pairs-parquet.zip"
    assert run.size_bytes == run.path.stat().st_size
    assert run.rows_written == 33 == sum(run.counts.values())
    assert run.manifest["counts"]["total"] == 33
    assert run.manifest["seconds"]["rows"] >= 0
    assert run.message.startswith("33 rows (")
    assert "simulated annotators" in run.message
    assert not leftovers()


def test_running_it_twice_does_the_work_once(judged):
    run = start(judged)
    runs.execute(run)
    finished = ExportRun.objects.get(pk=run.pk).finished_at

    runs.execute(ExportRun.objects.get(pk=run.pk))

    again = ExportRun.objects.get(pk=run.pk)
    assert again.finished_at == finished and again.attempts == 1


def test_progress_is_reported_while_it_runs(judged, monkeypatch):
    monkeypatch.setattr(runs, "REPORT_SECONDS", 0.0)
    monkeypatch.setattr(writers, "PROGRESS_EVERY", 4)
    seen: list[tuple[float, str]] = []

    def watch(fraction: float, message: str) -> None:
        stored = ExportRun.objects.get(pk=run.pk)
        seen.append((fraction, message))
        assert stored.progress == pytest.approx(fraction) and stored.heartbeat_at

    run = start(judged)
    runs.execute(run, on_progress=watch)

    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] <= 1.0
    assert any("rows written" in message for _, message in seen)
    assert any(message.startswith("archiving") for _, message in seen)
    assert 0 < len([f for f in fractions if 0 < f < 0.9])


def test_cancel_stops_the_export_and_keeps_nothing(judged):
    run = start(judged)

    def cancel_at_first_report(fraction: float, message: str) -> None:
        ExportRun.objects.get(pk=run.pk).request_cancel()

    runs.execute(run, on_progress=cancel_at_first_report)

    run.refresh_from_db()
    assert run.status == "cancelled" and run.file == ""
    assert not list(exports_root().rglob("*.zip")) and not leftovers()


def test_a_pending_export_is_cancelled_at_once(judged):
    run = start(judged)
    run.request_cancel()
    runs.execute(ExportRun.objects.get(pk=run.pk))
    assert ExportRun.objects.get(pk=run.pk).status == "cancelled"


def test_a_missing_image_file_fails_the_export_saying_what_to_do(judged):
    image = Image.objects.order_by("id").first()
    (Path(settings.MEDIA_ROOT) / image.file.name).unlink()
    run = start(judged, format="jsonl", images="files")

    runs.execute(run)

    run.refresh_from_db()
    assert run.status == "failed"
    assert image.sha256[:12] in run.message and "MEDIA_ROOT" in run.message
    assert not leftovers()


def test_an_export_whose_worker_died_is_requeued_and_starts_over(judged, settings):
    settings.JOB_HEARTBEAT_TIMEOUT_SECONDS = 60
    run = start(judged)
    assert run.claim()  # a worker took it ...
    ExportRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    staging, partial = runs._work_paths(run)  # ... and died half-way
    staging.mkdir(parents=True)
    (staging / "train.jsonl").write_text("{half a line")
    partial.write_bytes(b"PK")

    assert runs.requeue_stalled_exports() == [run.pk]

    run.refresh_from_db()
    assert run.status == "pending" and "start over" in run.message
    assert runs.requeue_stalled_exports() == []
    runs.execute(run)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.attempts == 2
    assert not staging.exists() and not partial.exists()
    rows = [json.loads(line) for line in zipfile.ZipFile(run.path).read("train.jsonl").splitlines()]
    assert rows and all(row["split"] == "train" for row in rows)


def test_parquet_is_written_a_row_group_at_a_time(judged, monkeypatch):
    monkeypatch.setattr(writers, "BATCH_ROWS", 4)
    run = start(judged, format="parquet")
    runs.execute(run)
    run.refresh_from_db()
    archive = zipfile.ZipFile(run.path)
    for split in writers.SPLITS:
        with archive.open(f"{split}.parquet") as handle:
            metadata = pq.ParquetFile(handle).metadata
            assert metadata.num_rows == run.counts[split]
            assert metadata.num_row_groups == -(-run.counts[split] // 4)


# --- the streaming connection --------------------------------------------------------------


def test_outside_a_transaction_rows_stream_on_a_connection_of_their_own(
    judged, transactional_db
):
    run = start(judged)

    runs.execute(run)  # no atomic block here: its own connection and the prefetch thread

    run.refresh_from_db()
    assert run.status == "succeeded", run.message
    rows = [row for found in jsonl_rows(zipfile.ZipFile(run.path)).values() for row in found]
    assert {(r["judgement_id"], r["chosen_variant_id"], r["rejected_variant_id"], r["margin"])
            for r in rows} == expected_pairs(Judgement.objects.all())


def test_a_long_silent_phase_still_sends_heartbeats(judged, transactional_db, monkeypatch):
    monkeypatch.setattr(jobs, "HEARTBEAT_SECONDS", 0.1)
    beats = []

    def slow_archive(*args, **kwargs):
        before = ExportRun.objects.get(pk=run.pk).heartbeat_at
        time.sleep(1.0)  # e.g. zipping a very large table: no progress report meanwhile
        beats.append(ExportRun.objects.get(pk=run.pk).heartbeat_at - before)
        return build_archive(*args, **kwargs)

    monkeypatch.setattr("exports.archive.build_archive", slow_archive)
    run = start(judged)

    runs.execute(run)

    assert ExportRun.objects.get(pk=run.pk).status == "succeeded"
    assert beats and beats[0] >= timedelta(seconds=0.5)
    assert not [t for t in threading.enumerate() if t.name.startswith("job-")]


class FakeCursor:
    def __init__(self, batches: list, error: Exception | None = None) -> None:
        self.batches, self.error, self.fetches = list(batches), error, 0

    def fetchmany(self, size: int) -> list:
        self.fetches += 1
        if self.batches:
            return self.batches.pop(0)
        if self.error:
            raise self.error
        return []


def test_prefetched_rows_come_in_order_and_errors_reach_the_reader():
    cursor = FakeCursor([[1, 2], [3], [4, 5]])
    assert list(runs.prefetched(cursor)) == [1, 2, 3, 4, 5]

    failing = FakeCursor([[1]], error=RuntimeError("connection lost"))
    with pytest.raises(RuntimeError, match="connection lost"):
        list(runs.prefetched(failing))


def test_a_reader_that_stops_early_stops_the_prefetch_thread():
    cursor = FakeCursor([[n] for n in range(1000)])
    rows = runs.prefetched(cursor)
    assert next(rows) == 0

    rows.close()  # e.g. a cancel raised in the writer

    assert cursor.fetches <= 1 + runs.PREFETCH_BATCHES + 1  # no more than the queue holds


# --- a real worker ----------------------------------------------------------------------------


def test_a_celery_worker_runs_the_export(judged, manager, celery_worker):
    celery_worker()

    run = runs.request_export(judged, {"kind": "scores", "format": "jsonl"}, user=manager)

    wait_for(lambda: ExportRun.objects.get(pk=run.pk).is_finished)
    run.refresh_from_db()
    assert run.status == "succeeded", run.message
    assert run.counts == {"train": 12, "val": 12, "test": 12}
    assert zipfile.ZipFile(run.path).read("manifest.json")


# --- from the admin ---------------------------------------------------------------------------


@pytest.fixture
def root(db) -> User:
    return User.objects.create_superuser("root", password=PASSWORD)


@pytest.fixture
def staff_client(root) -> Client:
    client = Client()
    assert client.login(username="root", password=PASSWORD)
    return client


def test_the_admin_form_queues_an_export(
    judged, root, staff_client, django_capture_on_commit_callbacks, monkeypatch
):
    queued = []
    monkeypatch.setattr(runs, "enqueue_export", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        answer = staff_client.post(
            "/admin/exports/exportrun/add/",
            {"project": judged.pk, "kind": "dpo", "format": "hf", "images": "",
             "filters": '{"exclude_simulated": true}', "include_ties": "on"},
        )

    assert answer.status_code == 302, answer.content.decode()[:2000]
    run = ExportRun.objects.get()
    assert (run.kind, run.format, run.images, run.trigger) == ("dpo", "hf", "embed", "admin")
    assert run.filters["exclude_simulated"] is True and run.options == {"include_ties": True}
    assert run.requested_by == root and queued == [run.pk]


def test_the_admin_form_names_a_bad_field(judged, staff_client):
    answer = staff_client.post(
        "/admin/exports/exportrun/add/",
        {"project": judged.pk, "kind": "pairs", "format": "hf", "images": "files",
         "filters": '{"min_agreement": 3}'},
    )

    assert answer.status_code == 200
    errors = answer.context["adminform"].form.errors
    assert "images" in errors and "min_agreement" in errors["filters"][0]
    assert not ExportRun.objects.exists()


def test_the_admin_lists_exports_with_progress_and_a_download_link(judged, staff_client):
    run = start(judged)
    runs.execute(run)

    page = staff_client.get("/admin/exports/exportrun/").content.decode()
    detail = staff_client.get(f"/admin/exports/exportrun/{run.pk}/change/").content.decode()

    assert f"/api/v1/exports/{run.pk}/download/" in page and "100% · succeeded" in page
    assert run.content_sha256 in detail and "&quot;schema_version&quot;" in detail
    download = staff_client.get(f"/api/v1/exports/{run.pk}/download/")
    assert b"".join(download.streaming_content) == run.path.read_bytes()


def test_deleting_an_export_in_the_admin_deletes_its_archive(judged, staff_client):
    run = start(judged)
    runs.execute(run)
    run.refresh_from_db()
    archive = run.path
    assert archive.exists()

    staff_client.post(
        "/admin/exports/exportrun/",
        {"action": "delete_selected", "_selected_action": [run.pk], "post": "yes"},
    )

    assert not ExportRun.objects.exists() and not archive.exists()


def test_the_project_action_opens_the_export_form(judged, staff_client):
    answer = staff_client.post(
        "/admin/annotation/project/",
        {"action": "export_dataset", "_selected_action": [judged.pk]},
    )
    assert answer.status_code == 302
    assert answer["Location"] == f"/admin/exports/exportrun/add/?project={judged.pk}"


# --- model labels: the reward version, checked and pinned -------------------------------------


@pytest.fixture
def labelled(project, annotator, other_annotator, tmp_path):
    from tests.exports.test_exporters import model_labelled_project

    return model_labelled_project(project, annotator, other_annotator, tmp_path / "more")


def test_the_active_version_is_pinned_when_the_export_is_requested(labelled):
    project, active, old, _ = labelled
    run = start(project, labels="model")
    assert run.options["reward_version"] == active.pk

    old.promote()  # promoted before the worker gets to it
    runs.execute(run)
    run.refresh_from_db()

    assert run.status == "succeeded", run.message
    rows = [r for split in jsonl_rows(zipfile.ZipFile(run.path)).values() for r in split]
    assert rows and {r["reward_version"] for r in rows} == {active.number}
    assert run.manifest["labels"]["reward_version"]["id"] == active.pk


def test_bad_reward_versions_are_refused_naming_the_field_and_nothing_is_created(
    labelled, project
):
    from rewards.models import RewardModelVersion
    from tests.exports.test_exporters import make_version

    _, active, _, _ = labelled
    other = Project.objects.create(name="Another project")
    theirs = make_version(other, 1)

    cases = [
        ({"labels": "model", "reward_version": 999999}, "there is no reward-model version"),
        ({"labels": "both", "reward_version": theirs.pk}, "belongs to project"),
    ]
    for body, message in cases:
        with pytest.raises(RequestInvalid) as raised:
            start(project, **body)
        assert set(raised.value.errors) == {"reward_version"}
        assert message in raised.value.errors["reward_version"][0]
    RewardModelVersion.objects.filter(pk=active.pk).update(status="retired")
    with pytest.raises(RequestInvalid) as raised:
        start(project, labels="model")
    assert "has no active one" in raised.value.errors["reward_version"][0]
    assert not ExportRun.objects.exists()


def test_a_version_deleted_before_the_export_runs_fails_it_saying_what_to_do(labelled):
    project, active, _, _ = labelled
    run = start(project, labels="both")
    active.delete()

    runs.execute(run)
    run.refresh_from_db()

    assert run.status == "failed" and "start a new export" in run.message
    assert not leftovers()


def test_the_admin_form_checks_the_reward_version_against_the_project(labelled, staff_client):
    project, _, _, _ = labelled
    other = Project.objects.create(name="Another project")
    from tests.exports.test_exporters import make_version

    theirs = make_version(other, 1)
    answer = staff_client.post(
        "/admin/exports/exportrun/add/",
        {"project": project.pk, "kind": "pairs", "format": "jsonl", "images": "",
         "filters": "{}", "labels": "model", "reward_version": theirs.pk},
    )

    assert answer.status_code == 200
    errors = answer.context["adminform"].form.errors
    assert "belongs to project" in errors["reward_version"][0]
    assert not ExportRun.objects.exists()


def test_the_admin_form_queues_an_editreward_export_with_model_labels(
    labelled, staff_client, monkeypatch
):
    project, active, _, _ = labelled
    monkeypatch.setattr(runs, "enqueue_export", lambda pk: None)
    answer = staff_client.post(
        "/admin/exports/exportrun/add/",
        {"project": project.pk, "kind": "pairs", "format": "jsonl", "images": "",
         "filters": "{}", "layout": "editreward", "labels": "both"},
    )

    assert answer.status_code == 302, answer.content.decode()[:2000]
    run = ExportRun.objects.get()
    assert run.options == {"aspect_pairs": False, "include_ties": False,
                           "layout": "editreward", "labels": "both",
                           "reward_version": active.pk}
