"""``manage.py export_dataset`` and ``manage.py seed_pairs``."""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter

import pytest
from django.core.management import CommandError, call_command

from annotation.models import AspectScore, Assignment, EditTask, Judgement, Project, Variant
from exports import runs
from exports.models import ExportRun
from tests.exports.test_exporters import expected_pairs, judge_project


@pytest.fixture
def judged(project, annotator, other_annotator):
    return judge_project(project, annotator, other_annotator)


def run_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("export_dataset", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_exports_here_with_a_progress_bar_and_prints_the_archive(judged, tmp_path):
    out, err = run_command(judged.name, "--kind", "pairs", "--format", "parquet",
                           "--exclude-gold", "--round", "1", "--output", str(tmp_path / "a.zip"))

    run = ExportRun.objects.get()
    assert run.status == "succeeded" and run.trigger == "command"
    assert run.filters["exclude_gold"] is True and run.filters["rounds"] == [1]
    assert str(tmp_path / "a.zip") in out and f"export {run.pk}: " in out
    assert (tmp_path / "a.zip").read_bytes() == run.path.read_bytes()
    assert "100%" in err and f"export {run.pk}" in err  # tqdm on stderr
    names = zipfile.ZipFile(run.path).namelist()
    assert {"train.parquet", "val.parquet", "test.parquet", "manifest.json"} <= set(names)


def test_json_prints_the_run_and_its_manifest(judged):
    out, _ = run_command(str(judged.pk), "--kind", "dpo", "--format", "jsonl", "--no-ties",
                         "--exclude-simulated", "--min-agreement", "0.5", "--json")

    printed = json.loads(out)
    run = ExportRun.objects.get()
    assert printed["id"] == run.pk and printed["rows"] == run.rows_written
    assert printed["manifest"]["options"] == {"include_ties": False}
    assert printed["manifest"]["filters"]["min_agreement"] == 0.5
    assert printed["seconds"] > 0


def test_queue_leaves_the_export_to_a_worker(
    judged, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr(runs, "enqueue_export", queued.append)

    with django_capture_on_commit_callbacks(execute=True):
        out, _ = run_command(judged.name, "--kind", "scores", "--queue")

    run = ExportRun.objects.get()
    assert run.status == "pending" and "queued" in out
    assert queued == [run.pk]


@pytest.mark.parametrize(
    "args, says",
    [
        (["--kind", "pairs", "--format", "hf", "--images", "files"], '"images"'),
        (["--kind", "pairs", "--min-agreement", "7"], "min_agreement"),
        (["--kind", "rankings", "--aspect-pairs"], "aspect_pairs"),
    ],
)
def test_a_bad_request_names_the_field(judged, args, says):
    with pytest.raises(CommandError, match=says):
        run_command(judged.name, *args)
    assert not ExportRun.objects.exists()


@pytest.fixture
def labelled(project, annotator, other_annotator, tmp_path):
    from tests.exports.test_exporters import model_labelled_project

    return model_labelled_project(project, annotator, other_annotator, tmp_path / "more")


def test_it_writes_editreward_files_with_the_models_labels(labelled):
    project, _, old, _ = labelled
    out, _ = run_command(project.name, "--kind", "pairs", "--layout", "editreward",
                         "--labels", "both", "--reward-version", str(old.pk), "--ties", "--json")

    printed = json.loads(out)
    assert printed["manifest"]["options"] == {
        "aspect_pairs": False, "include_ties": True, "layout": "editreward", "labels": "both",
        "reward_version": old.pk}
    archive = zipfile.ZipFile(ExportRun.objects.get().path)
    rows = json.loads(archive.read("train.json"))
    assert Counter(r["label_source"] for r in rows)["model"] == 6  # task 3: every pair
    assert any(r["tie_case"] for r in rows)


def test_image_feature_and_a_bad_version_from_the_command_line(labelled):
    project, _, _, _ = labelled
    out, _ = run_command(project.name, "--kind", "dpo", "--format", "parquet", "--images",
                         "embed", "--image-feature", "--json")
    assert json.loads(out)["manifest"]["image_cells"] == "struct"

    with pytest.raises(CommandError, match="reward_version"):
        run_command(project.name, "--kind", "dpo", "--labels", "model",
                    "--reward-version", "987654")
    assert ExportRun.objects.count() == 1


def test_an_unknown_project_is_an_error(db):
    with pytest.raises(CommandError, match="no project 'nope'"):
        run_command("nope", "--kind", "pairs")


def test_a_failed_export_fails_the_command(judged, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "empty-media"
    with pytest.raises(CommandError, match="ended failed: image"):
        run_command(judged.name, "--kind", "pairs")


# --- seed_pairs -------------------------------------------------------------------------------


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_pairs", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_seed_pairs_makes_n_judgements_of_one_pair_each(db):
    out = seed("12", "--project", "Bench", "--overlap", "3", "--annotators", "4",
               "--images", "5", "--batch", "5")

    project = Project.objects.get(name="Bench")
    assert project.mode == "pairwise" and "12 judgement pairs" in out
    judgements = Judgement.objects.filter(assignment__task__project=project)
    assert judgements.count() == 12
    tasks = EditTask.objects.filter(project=project)
    assert tasks.count() == 4 and set(tasks.values_list("judgement_count", flat=True)) == {3}
    for task in tasks:
        variants = sorted(task.variants.values_list("id", flat=True))
        assert len(variants) == 2
        assert task.split == project.split_for(task.source.sha256)
        people = Assignment.objects.filter(task=task).values_list("annotator", flat=True)
        assert len(set(people)) == 3
    for judgement in judgements.select_related("assignment"):
        assert sorted(v for tier in judgement.ranking for v in tier) == sorted(
            judgement.assignment.display_order)
        assert len(judgement.ranking) == 2  # no tie: exactly one pair
    scores = AspectScore.objects.filter(judgement__in=judgements)
    assert scores.count() == 12 * 2 * 3
    assert Counter(scores.values_list("aspect", flat=True)) == Counter(
        {"following": 24, "preserving": 24, "quality": 24})
    assert set(Variant.objects.filter(task__project=project).values_list("generator", flat=True)
               ) == {"seed-a", "seed-b"}


def test_seeded_pairs_export_as_exactly_n_rows(db):
    seed("8", "--project", "Bench", "--overlap", "2", "--images", "3", "--no-scores")
    seed("4", "--project", "Bench", "--overlap", "2", "--images", "3", "--no-scores")  # adds
    project = Project.objects.get(name="Bench")
    assert not AspectScore.objects.exists()

    out, _ = run_command("Bench", "--kind", "pairs", "--json")

    assert json.loads(out)["rows"] == 12
    rows = [
        json.loads(line)
        for name in ("train.jsonl", "val.jsonl", "test.jsonl")
        for line in zipfile.ZipFile(ExportRun.objects.get().path).read(name).splitlines()
    ]
    assert {(r["judgement_id"], r["chosen_variant_id"], r["rejected_variant_id"], r["margin"])
            for r in rows} == expected_pairs(
        Judgement.objects.filter(assignment__task__project=project))


def test_seed_pairs_refuses_counts_it_cannot_make(db):
    with pytest.raises(CommandError, match="multiple of --overlap"):
        seed("10", "--overlap", "4")
    with pytest.raises(CommandError, match="--overlap must be"):
        seed("8", "--overlap", "4", "--annotators", "2")
