"""Every export kind and format, loaded back with the library that consumes it (json,
pyarrow, datasets) and compared with the judgements in Postgres."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import statistics
import uuid
import zipfile
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from django.conf import settings
from django.utils import timezone
from PIL import Image as PILImage

from annotation.assignment import lease_next_task
from annotation.judgements import submit_judgement
from annotation.models import AspectScore, EditTask, Judgement, Variant
from editloop.errors import RequestInvalid
from evaluation.agreement import JudgementRow, task_agreement
from exports import queries, runs, writers
from exports.archive import SCHEMA_VERSION
from exports.request import KINDS, LABELLED_KINDS, parse_filters, parse_request

ASPECTS = ("following", "preserving", "quality")

# Per task (by index), the tiers each annotator gives the sorted variant ids [a, b, c, d].
RANKINGS = {
    "annotator": [
        lambda a, b, c, d: [[a], [b, c], [d]],
        lambda a, b, c, d: [[a], [b], [c], [d]],
        lambda a, b, c, d: [[a, b], [c], [d]],
    ],
    "other_annotator": [
        lambda a, b, c, d: [[a], [b], [c], [d]],  # 5 of 6 (b-c: tie against better)
        lambda a, b, c, d: [[b], [a], [d], [c]],  # 4 of 6
        lambda a, b, c, d: [[d], [c], [a, b]],  # 1 of 6 (the a-b tie)
    ],
}


def judge(project, user, *, simulated: bool = False) -> Judgement:
    """Lease the next task as ``user`` and judge it as RANKINGS says, with scores that
    differ per variant, task and annotator."""
    assignment = lease_next_task(project, user)
    task_index = list(project.tasks.order_by("id").values_list("id", flat=True)).index(
        assignment.task_id
    )
    ids = sorted(Variant.objects.filter(task_id=assignment.task_id).values_list("id", flat=True))
    offset = 0 if user.username == "annotator" else 2
    payload = {
        "client_id": str(uuid.uuid4()),
        "ranking": RANKINGS[user.username][task_index](*ids),
        "scores": {
            str(v): {aspect: (n + task_index + offset + k) % 6 for k, aspect in enumerate(ASPECTS)}
            for n, v in enumerate(ids)
        },
        "timings_ms": {"total": 1000},
    }
    judgement, _ = submit_judgement(assignment.pk, user, payload, simulated=simulated)
    return judgement


@pytest.fixture
def judged(project, annotator, other_annotator):
    return judge_project(project, annotator, other_annotator)


def judge_project(project, annotator, other_annotator):
    """The shared 3-task project: one task per split, two annotators on every task (the
    other annotator's third judgement simulated), task 0's last two variants from generator
    ``other``, task 1 gold, task 2 in round 2."""
    tasks = list(project.tasks.order_by("id"))
    for task, split in zip(tasks, ["train", "val", "test"], strict=True):
        EditTask.objects.filter(pk=task.pk).update(split=split)
    for _ in range(3):
        judge(project, annotator)
    for n in range(3):
        judge(project, other_annotator, simulated=(n == 2))
    assert Judgement.objects.count() == 6
    later = sorted(tasks[0].variants.values_list("id", flat=True))[2:]
    Variant.objects.filter(pk__in=later).update(generator="other")
    EditTask.objects.filter(pk=tasks[1].pk).update(is_gold=True)
    EditTask.objects.filter(pk=tasks[2].pk).update(round=2)
    return project


def export(project, **body):
    """Run an export in-process; returns (run, opened zip)."""
    run = runs.request_export(project, body, enqueue=False)
    runs.execute(run)
    run.refresh_from_db()
    assert run.status == "succeeded", run.message
    return run, zipfile.ZipFile(run.path)


def jsonl_rows(archive: zipfile.ZipFile) -> dict[str, list[dict]]:
    return {
        split: [json.loads(line) for line in archive.read(f"{split}.jsonl").splitlines()]
        for split in writers.SPLITS
    }


def parquet_rows(archive: zipfile.ZipFile) -> dict[str, list[dict]]:
    return {
        split: pq.read_table(io.BytesIO(archive.read(f"{split}.parquet"))).to_pylist()
        for split in writers.SPLITS
    }


def every_row(by_split: dict[str, list[dict]]) -> list[dict]:
    return [row for rows in by_split.values() for row in rows]


def file_bytes(variant_or_image) -> bytes:
    image = getattr(variant_or_image, "image", variant_or_image)
    return (Path(settings.MEDIA_ROOT) / image.file.name).read_bytes()


def tier_of(ranking: list[list[int]]) -> dict[int, int]:
    return {variant: n for n, tier in enumerate(ranking) for variant in tier}


def expected_pairs(judgements) -> set[tuple]:
    """(judgement, chosen, rejected, margin) for every non-tied pair of each ranking."""
    found = set()
    for judgement in judgements:
        tier = tier_of(judgement.ranking)
        for a in tier:
            for b in tier:
                if tier[a] < tier[b]:
                    found.add((judgement.pk, a, b, float(tier[b] - tier[a])))
    return found


# --- pairs -----------------------------------------------------------------------------------


def test_pairs_as_jsonl_with_image_files_are_the_rankings_non_tied_pairs(judged):
    run, archive = export(judged, kind="pairs", format="jsonl", images="files")

    by_split = jsonl_rows(archive)
    rows = every_row(by_split)
    got = {(r["judgement_id"], r["chosen_variant_id"], r["rejected_variant_id"], r["margin"])
           for r in rows}
    assert got == expected_pairs(Judgement.objects.all())
    assert len(rows) == len(got) == 5 + 6 + 5 + 6 + 6 + 5  # ties give no pair
    for row in rows:
        judgement = Judgement.objects.select_related("assignment__task", "assignment__annotator"
                                                     ).get(pk=row["judgement_id"])
        task = judgement.assignment.task
        assert row["split"] == task.split and row["task_id"] == task.pk
        assert row["instruction"] == task.instruction and row["aspect"] == "overall"
        assert row["annotator"] == judgement.assignment.annotator.username
        assert row["simulated"] is judgement.simulated
        assert row["created_at"] == judgement.created_at.isoformat()
        chosen = Variant.objects.get(pk=row["chosen_variant_id"])
        assert row["chosen"] == f"images/{chosen.image.sha256}.png"
        assert archive.read(row["chosen"]) == file_bytes(chosen)
        assert archive.read(row["source"]) == file_bytes(task.source)
        assert row["chosen_generator"] == chosen.generator
    assert {split: len(found) for split, found in by_split.items()} == {
        split: run.counts[split] for split in writers.SPLITS
    }
    images = [name for name in archive.namelist() if name.startswith("images/")]
    assert len(images) == 3 + 12  # every source and variant, once each


def test_pairs_as_parquet_embed_the_image_bytes(judged):
    _, archive = export(judged, kind="pairs", format="parquet", images="embed")

    rows = every_row(parquet_rows(archive))
    assert {(r["judgement_id"], r["chosen_variant_id"], r["rejected_variant_id"], r["margin"])
            for r in rows} == expected_pairs(Judgement.objects.all())
    for row in rows[:6]:
        rejected = Variant.objects.get(pk=row["rejected_variant_id"])
        assert row["rejected"]["bytes"] == file_bytes(rejected)
        assert row["rejected"]["path"] == f"{rejected.image.sha256}.png"
        assert row["created_at"] == Judgement.objects.get(pk=row["judgement_id"]).created_at
    assert not [name for name in archive.namelist() if name.startswith("images/")]


def test_aspect_pairs_add_a_row_per_aspect_where_one_variant_scored_higher(judged):
    _, archive = export(judged, kind="pairs", format="jsonl", aspect_pairs=True)

    rows = every_row(jsonl_rows(archive))
    by_aspect = {}
    for row in rows:
        by_aspect.setdefault(row["aspect"], set()).add(
            (row["judgement_id"], row["chosen_variant_id"], row["rejected_variant_id"],
             row["margin"])
        )
    assert by_aspect.pop("overall") == expected_pairs(Judgement.objects.all())
    expected: dict[str, set] = {}
    for x in AspectScore.objects.all():
        for y in AspectScore.objects.filter(judgement=x.judgement_id, aspect=x.aspect):
            if x.value > y.value:
                expected.setdefault(x.aspect, set()).add(
                    (x.judgement_id, x.variant_id, y.variant_id, float(x.value - y.value))
                )
    assert by_aspect == expected


# --- dpo -------------------------------------------------------------------------------------


def test_dpo_rows_have_pick_a_pic_labels_with_ties_as_halves(judged):
    _, archive = export(judged, kind="dpo", format="jsonl")

    rows = every_row(jsonl_rows(archive))
    assert len(rows) == 6 * 6  # every pair of 4 variants, ties included
    for row in rows:
        ranking = Judgement.objects.get(pk=row["ranking_id"]).ranking
        tier = tier_of(ranking)
        first, second = row["variant_0_id"], row["variant_1_id"]
        assert first < second
        want = 1.0 if tier[first] < tier[second] else 0.0 if tier[first] > tier[second] else 0.5
        assert (row["label_0"], row["label_1"]) == (want, 1.0 - want)
        variant = Variant.objects.get(pk=first)
        assert row["image_0_uid"] == variant.image.sha256 and row["model_0"] == variant.generator
        assert row["caption"] == variant.task.instruction
        assert archive.read(row["jpg_0"]) == file_bytes(variant)


def test_dpo_without_ties_leaves_tied_pairs_out(judged):
    _, archive = export(judged, kind="dpo", format="parquet", include_ties=False)

    rows = every_row(parquet_rows(archive))
    assert len(rows) == len(expected_pairs(Judgement.objects.all()))
    assert {row["label_0"] for row in rows} == {0.0, 1.0}


# --- rankings --------------------------------------------------------------------------------


def test_rankings_as_hf_dataset_load_with_datasets(judged):
    import datasets

    _, archive = export(judged, kind="rankings", format="hf")
    folder = Path(settings.MODEL_ROOT) / "unzipped"
    archive.extractall(folder)

    loaded = datasets.load_from_disk(str(folder))

    assert set(loaded) == set(writers.SPLITS)
    assert isinstance(loaded["train"].features["source"], datasets.Image)
    assert loaded["train"].features["generations"].feature == datasets.Image()
    rows = [row for split in writers.SPLITS for row in loaded[split]]
    assert sorted(row["id"] for row in rows) == sorted(
        Judgement.objects.values_list("pk", flat=True))
    for split in writers.SPLITS:
        for row in loaded[split]:
            judgement = Judgement.objects.select_related("assignment__task").get(pk=row["id"])
            task = judgement.assignment.task
            assert task.split == split
            ids = sorted(task.variants.values_list("id", flat=True))
            assert row["variant_ids"] == ids
            tier = tier_of(judgement.ranking)
            assert row["ranking"] == [tier[v] + 1 for v in ids]  # 1 = best, ties share
            assert isinstance(row["source"], PILImage.Image)
            assert row["source"].size == (32, 24)
            first = row["generations"][0]
            stored = PILImage.open(io.BytesIO(file_bytes(Variant.objects.get(pk=ids[0]))))
            assert first.convert("RGB").tobytes() == stored.convert("RGB").tobytes()
            assert row["created_at"] == judgement.created_at


def test_ranking_ranks_are_dense_over_the_generators_kept(judged):
    _, archive = export(judged, kind="rankings", format="jsonl",
                        filters={"generators": ["other"]})

    rows = every_row(jsonl_rows(archive))
    # Only task 0 has two "other" variants (c, d); both annotators ranked c above d.
    assert len(rows) == 2
    assert all(row["ranking"] == [1, 2] and row["generators"] == ["other", "other"]
               for row in rows)


def test_ranks_of_gives_tied_variants_one_rank():
    assert queries.ranks_of([[7], [3, 9], [1]], [1, 3, 7, 9]) == [3, 2, 1, 2]
    assert queries.ranks_of([[7], [3, 9], [1]], [1, 7]) == [2, 1]
    assert queries.ranks_of([[7], [3]], [3, 5]) == [1, None]


# --- scores ----------------------------------------------------------------------------------


def test_scores_per_variant_and_aspect_with_raw_values_and_aggregates(judged):
    _, archive = export(judged, kind="scores", format="parquet")

    rows = every_row(parquet_rows(archive))
    assert len(rows) == 12 * 3
    for row in rows:
        scores = AspectScore.objects.filter(variant=row["variant_id"], aspect=row["aspect"]
                                            ).select_related("judgement__assignment__annotator"
                                                             ).order_by("judgement_id")
        values = [s.value for s in scores]
        assert row["values"] == values
        assert row["annotators"] == [s.judgement.assignment.annotator.username for s in scores]
        assert row["judgement_ids"] == [s.judgement_id for s in scores]
        assert row["simulated"] == [s.judgement.simulated for s in scores]
        assert row["mean"] == pytest.approx(statistics.fmean(values))
        assert row["median"] == pytest.approx(statistics.median(values))
        assert row["count"] == len(values) == 2
        variant = Variant.objects.get(pk=row["variant_id"])
        assert row["image"] == f"images/{variant.image.sha256}.png"


def test_scores_count_only_the_judgements_the_filters_keep(judged):
    _, archive = export(judged, kind="scores", format="jsonl",
                        filters={"exclude_simulated": True})

    rows = every_row(jsonl_rows(archive))
    test_split = [row for row in rows if row["split"] == "test"]
    assert test_split and all(row["count"] == 1 and row["simulated"] == [False]
                              for row in test_split)


# --- filters ---------------------------------------------------------------------------------


def exported_judgements(project, **filters) -> set[int]:
    _, archive = export(project, kind="rankings", format="jsonl", filters=filters)
    return {row["id"] for row in every_row(jsonl_rows(archive))}


def judgements_where(**lookup) -> set[int]:
    return set(Judgement.objects.filter(**lookup).values_list("pk", flat=True))


def test_filters_select_the_judgements_they_name(judged):
    tasks = list(judged.tasks.order_by("id"))
    assert exported_judgements(judged) == judgements_where()
    assert exported_judgements(judged, exclude_simulated=True) == judgements_where(
        simulated=False)
    assert exported_judgements(judged, exclude_gold=True) == judgements_where(
        assignment__task__is_gold=False)
    assert exported_judgements(judged, rounds=[2]) == judgements_where(
        assignment__task=tasks[2])
    Judgement.objects.filter(assignment__task=tasks[0]).update(
        created_at=timezone.now() - timedelta(days=10))
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert exported_judgements(judged, since=since) == judgements_where(
        assignment__task__in=tasks[1:])
    until = (timezone.now() - timedelta(days=5)).date().isoformat()
    assert exported_judgements(judged, until=until) == judgements_where(
        assignment__task=tasks[0])


def test_min_agreement_keeps_the_tasks_whose_annotators_agree_that_much(judged):
    rows = [
        JudgementRow(j.pk, j.assignment.task_id, j.assignment.annotator_id, j.ranking, {}, [])
        for j in Judgement.objects.select_related("assignment")
    ]
    agreement = task_agreement(rows)
    tasks = list(judged.tasks.order_by("id").values_list("id", flat=True))
    assert agreement == pytest.approx({tasks[0]: 5 / 6, tasks[1]: 4 / 6, tasks[2]: 1 / 6})

    for minimum in (0.0, 0.5, 0.7, 0.9):
        kept = {task for task, value in agreement.items() if value >= minimum}
        assert exported_judgements(judged, min_agreement=minimum) == judgements_where(
            assignment__task__in=kept), minimum
    # With the simulated judgement left out, task 2 has one annotator and no agreement.
    assert exported_judgements(judged, min_agreement=0.0, exclude_simulated=True) == (
        judgements_where(assignment__task__in=tasks[:2]))
    # An unsure judgement does not count towards agreement (evaluation/agreement.py).
    unsure = Judgement.objects.filter(assignment__task=tasks[1]).order_by("id").first()
    Judgement.objects.filter(pk=unsure.pk).update(unsure=True)
    assert exported_judgements(judged, min_agreement=0.0) == judgements_where(
        assignment__task__in=[tasks[0], tasks[2]])


def test_the_generator_filter_keeps_pairs_of_that_generators_variants(judged):
    _, archive = export(judged, kind="pairs", format="jsonl", filters={"generators": ["test"]})

    rows = every_row(jsonl_rows(archive))
    others = set(Variant.objects.filter(generator="other").values_list("id", flat=True))
    assert rows
    named = {r["chosen_variant_id"] for r in rows} | {r["rejected_variant_id"] for r in rows}
    assert not others & named
    want = {
        p for p in expected_pairs(Judgement.objects.all())
        if p[1] not in others and p[2] not in others
    }
    assert {(r["judgement_id"], r["chosen_variant_id"], r["rejected_variant_id"], r["margin"])
            for r in rows} == want


# --- manifest --------------------------------------------------------------------------------


def test_the_manifest_counts_labels_and_hashes_the_export(judged):
    run, archive = export(judged, kind="pairs", format="parquet",
                          filters={"exclude_gold": True, "rounds": [1, 2]})

    manifest = json.loads(archive.read("manifest.json"))
    assert manifest == {key: value for key, value in run.manifest.items() if key != "seconds"}
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["kind"] == "pairs" and manifest["format"] == "parquet"
    assert manifest["project"] == {"id": judged.pk, "name": judged.name}
    assert manifest["filters"]["project"] == judged.pk
    assert manifest["filters"]["exclude_gold"] is True and manifest["filters"]["rounds"] == [1, 2]
    rows = parquet_rows(archive)
    assert manifest["counts"] == {**{s: len(r) for s, r in rows.items()},
                                  "total": sum(len(r) for r in rows.values())}
    assert manifest["counts"]["val"] == 0  # the gold task was the val split's only task
    simulated = sum(row["simulated"] for row in every_row(rows))
    assert simulated == 5 and manifest["simulated_rows"] == 5
    assert manifest["contains_simulated"] is True and "simulated annotators" in manifest["note"]
    lines = []
    for name in [f["path"] for f in manifest["files"]] + sorted(
        n for n in archive.namelist() if n.startswith("images/")
    ):
        lines.append(f"{hashlib.sha256(archive.read(name)).hexdigest()}  {name}\n")
    assert manifest["content_sha256"] == hashlib.sha256("".join(lines).encode()).hexdigest()
    assert run.content_sha256 == manifest["content_sha256"]
    assert manifest["created_at"] and manifest["editloop_version"]
    assert [c["name"] for c in manifest["columns"]][:3] == ["judgement_id", "task_id", "split"]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_the_same_rows_give_the_same_content_hash(judged, fmt):
    first, _ = export(judged, kind="dpo", format=fmt)
    again, _ = export(judged, kind="dpo", format=fmt)
    assert first.content_sha256 == again.content_sha256

    Judgement.objects.filter(simulated=True).update(unsure=True)
    changed, _ = export(judged, kind="dpo", format=fmt)
    assert changed.content_sha256 != first.content_sha256


def test_an_export_of_people_only_says_so(judged):
    run, archive = export(judged, kind="rankings", format="jsonl",
                          filters={"exclude_simulated": True})
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["simulated_rows"] == 0 and manifest["contains_simulated"] is False
    assert run.counts == {"train": 2, "val": 2, "test": 1}


def load_parquet_train(archive: zipfile.ZipFile, folder: Path):
    import datasets

    archive.extractall(folder / "out")
    return datasets.load_dataset(
        "parquet", data_files={"train": str(folder / "out" / "train.parquet")},
        cache_dir=str(folder / "cache"),
    )["train"]


def test_parquet_image_columns_decode_as_images_in_datasets(judged, tmp_path):
    import datasets

    _, archive = export(judged, kind="pairs", format="parquet", images="embed")
    loaded = load_parquet_train(archive, tmp_path)

    assert isinstance(loaded.features["chosen"], datasets.Image)
    assert loaded[0]["chosen"].size == (32, 24)


def test_dpo_images_are_plain_bytes_as_in_pick_a_pic_unless_the_image_feature_is_asked(
    judged, tmp_path
):
    import datasets

    run, archive = export(judged, kind="dpo", format="parquet", images="embed")
    loaded = load_parquet_train(archive, tmp_path / "bytes")

    for column in ("jpg_0", "jpg_1", "source"):
        assert loaded.features[column] == datasets.Value("binary")
    first = loaded[0]
    assert first["jpg_0"] == file_bytes(Variant.objects.get(pk=first["variant_0_id"]))
    assert run.manifest["image_cells"] == "binary" and "diffusion_dpo" in run.manifest["read_by"]

    run, archive = export(judged, kind="dpo", format="parquet", images="embed",
                          image_feature=True)
    loaded = load_parquet_train(archive, tmp_path / "feature")

    assert isinstance(loaded.features["jpg_0"], datasets.Image)
    assert loaded[0]["jpg_0"].size == (32, 24)
    assert run.options["image_feature"] is True and run.manifest["read_by"] is None


def test_dpo_in_hf_format_keeps_plain_bytes_too(judged, tmp_path):
    import datasets

    _, archive = export(judged, kind="dpo", format="hf")
    archive.extractall(tmp_path / "hf")
    loaded = datasets.load_from_disk(str(tmp_path / "hf"))

    assert loaded["train"].features["jpg_1"] == datasets.Value("binary")
    row = loaded["train"][0]
    assert row["jpg_1"] == file_bytes(Variant.objects.get(pk=row["variant_1_id"]))


def test_every_table_has_the_kinds_columns_in_order(judged):
    for kind in KINDS:
        _, archive = export(judged, kind=kind, format="jsonl")
        names = [name for name, _ in writers.COLUMNS[kind]]
        row = json.loads(archive.read("train.jsonl").splitlines()[0])
        assert list(row) == names, kind
        _, archive = export(judged, kind=kind, format="parquet")
        assert pq.read_schema(io.BytesIO(archive.read("train.parquet"))).names == names


def test_the_jsonl_writer_refuses_rows_that_are_not_the_columns(tmp_path):
    rows = [{"variant_id": 1, "extra": 2, "split": "train", "simulated": False}]
    with pytest.raises(ValueError, match="are not the columns"):
        writers.write_tables(rows, "scores", "jsonl", "files", tmp_path, tmp_path)


def test_jsonl_embeds_images_as_base64(judged):
    _, archive = export(judged, kind="pairs", format="jsonl", images="embed")
    row = jsonl_rows(archive)["train"][0]
    chosen = Variant.objects.get(pk=row["chosen_variant_id"])
    assert base64.b64decode(row["chosen"]) == file_bytes(chosen)


def test_an_empty_export_still_has_every_split_and_a_manifest(project):
    _, archive = export(project, kind="pairs", format="hf")
    import datasets

    folder = Path(settings.MODEL_ROOT) / "empty"
    archive.extractall(folder)
    loaded = datasets.load_from_disk(str(folder))
    assert {split: len(loaded[split]) for split in writers.SPLITS} == dict.fromkeys(
        writers.SPLITS, 0)
    assert json.loads(archive.read("manifest.json"))["counts"]["total"] == 0


# --- requests --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, errors",
    [
        ({}, {"kind"}),
        ({"kind": "triples"}, {"kind"}),
        ({"kind": "pairs", "format": "csv"}, {"format"}),
        ({"kind": "pairs", "images": "links"}, {"images"}),
        ({"kind": "pairs", "format": "hf", "images": "files"}, {"images"}),
        ({"kind": "rankings", "aspect_pairs": True}, {"aspect_pairs"}),
        ({"kind": "pairs", "include_ties": False}, {"include_ties"}),
        ({"kind": "pairs", "colour": "red"}, {"colour"}),
        ({"kind": "pairs", "filters": []}, {"filters"}),
    ],
)
def test_a_bad_request_names_each_wrong_field(body, errors):
    with pytest.raises(RequestInvalid) as raised:
        parse_request(body)
    assert set(raised.value.errors) == errors


@pytest.mark.parametrize(
    "filters, field",
    [
        ({"rounds": [0]}, "rounds"),
        ({"rounds": "1"}, "rounds"),
        ({"generators": [""]}, "generators"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-11-02", "until": "2026-11-01"}, "until"),
        ({"exclude_simulated": "yes"}, "exclude_simulated"),
        ({"min_agreement": 1.5}, "min_agreement"),
        ({"min_agreement": True}, "min_agreement"),
        ({"everything": True}, "everything"),
    ],
)
def test_a_bad_filter_is_named_inside_filters(filters, field):
    with pytest.raises(RequestInvalid) as raised:
        parse_request({"kind": "pairs", "filters": filters})
    assert set(raised.value.errors) == {"filters"}
    assert set(raised.value.errors["filters"]) == {field}


def test_dates_mean_whole_days_in_utc():
    filters = parse_filters({"since": "2026-11-01", "until": "2026-11-01"})
    assert filters.since.isoformat() == "2026-11-01T00:00:00+00:00"
    assert filters.until.isoformat() == "2026-11-02T00:00:00+00:00"
    again = parse_filters(filters.to_dict())
    assert again == filters


# --- model labels (HP-Edit: the scorer labels the tasks nobody judged) ------------------------

EPSILON = 0.1
# Per unjudged task, the version's overall score of its sorted variants [a, b, c, d]:
# task 3 ties a-b (0.05 <= ε); task 4 ties b-c (equal scores).
MODEL_SCORES = [[0.9, 0.85, 0.3, -0.2], [0.2, 0.6, 0.6, 1.5]]
HELD_OUT = {
    "pairwise_accuracy": 0.71, "judgements": 40.0, "pairs": 240,
    "ceiling_items": {"pairwise_accuracy": 0.69},
    "human_ceiling": {"pairwise_accuracy": 0.8, "tasks": 12},
}


def add_unjudged_tasks(project, root: Path, indices=(3, 4)) -> list[EditTask]:
    from annotation.importers import import_directory
    from tests.conftest import task_files, task_line, write_manifest_dir

    lines, files = [], {}
    for index in indices:
        lines.append(task_line(index))
        files.update(task_files(index))
    import_directory(project, write_manifest_dir(root, lines, files))
    tasks = list(project.tasks.filter(external_id__in=[f"t-{i}" for i in indices])
                 .order_by("id"))
    for task, split in zip(tasks, ["train", "test"], strict=False):
        EditTask.objects.filter(pk=task.pk).update(split=split)
    return tasks


def make_version(project, number: int = 1, *, active: bool = True, epsilon=EPSILON):
    from rewards.models import RewardModelVersion

    metrics = {"val": {"pairwise_accuracy": 0.7}, "test": HELD_OUT}
    if epsilon is not None:
        metrics["epsilon"] = epsilon
    return RewardModelVersion.objects.create(
        project=project, number=number, base="tiny", directory=f"v{number}",
        status="active" if active else "retired", metrics=metrics,
    )


def score_variants(version, tasks, scores) -> None:
    from rewards.models import VariantScore

    for task, overall in zip(tasks, scores, strict=True):
        ids = sorted(task.variants.values_list("id", flat=True))
        for n, (variant, value) in enumerate(zip(ids, overall, strict=True)):
            VariantScore.objects.create(
                variant_id=variant, version=version, overall=value,
                aspects={"following": 4.0 - n, "preserving": 3.5, "quality": 1.0 + n / 2},
            )


def model_labelled_project(project, annotator, other_annotator, root: Path):
    """The judged 3-task project, plus two tasks nobody judged; the active version v2
    scored every variant (the judged ones too, which must not become model rows), an older
    v1 scored the unjudged ones the other way round."""
    judge_project(project, annotator, other_annotator)
    unjudged = add_unjudged_tasks(project, root)
    old = make_version(project, 1, active=False)
    score_variants(old, unjudged, [list(reversed(s)) for s in MODEL_SCORES])
    version = make_version(project, 2)
    score_variants(version, unjudged, MODEL_SCORES)
    judged_tasks = project.tasks.exclude(pk__in=[t.pk for t in unjudged]).order_by("id")
    score_variants(version, judged_tasks, [[0.0, 1.0, 2.0, 3.0]] * 3)
    return project, version, old, unjudged


@pytest.fixture
def labelled(project, annotator, other_annotator, tmp_path):
    return model_labelled_project(project, annotator, other_annotator, tmp_path / "more")


def model_pairs_expected(unjudged, scores=MODEL_SCORES) -> set[tuple]:
    """(chosen, rejected, |Δ|) of every pair more than ε apart."""
    found = set()
    for task, overall in zip(unjudged, scores, strict=True):
        ids = sorted(task.variants.values_list("id", flat=True))
        for a in range(4):
            for b in range(4):
                if overall[a] - overall[b] > EPSILON:
                    found.add((ids[a], ids[b], round(overall[a] - overall[b], 9)))
    return found


def model_pair_keys(rows: list[dict]) -> set[tuple]:
    return {(r["chosen_variant_id"], r["rejected_variant_id"], round(r["score_margin"], 9))
            for r in rows}


def test_default_rows_say_people_labelled_them(judged):
    for kind in LABELLED_KINDS:
        _, archive = export(judged, kind=kind, format="jsonl")
        rows = every_row(jsonl_rows(archive))
        assert rows and all(
            (r["label_source"], r["reward_version"], r["score_margin"]) == ("human", None, None)
            for r in rows
        ), kind
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["labels"] == {"source": "human", "rows": {"human": len(rows), "model": 0}}


def test_model_pairs_are_the_versions_preferences_beyond_epsilon_on_unjudged_tasks(labelled):
    project, version, _, unjudged = labelled
    run, archive = export(project, kind="pairs", format="jsonl", labels="model")

    rows = every_row(jsonl_rows(archive))
    assert model_pair_keys(rows) == model_pairs_expected(unjudged)
    assert len(rows) == 5 + 5  # a-b of task 3 and b-c of task 4 are ties: no pair
    for row in rows:
        assert row["label_source"] == "model" and row["reward_version"] == 2
        assert row["judgement_id"] is None and row["annotator"] is None
        assert row["margin"] == row["score_margin"] and row["aspect"] == "overall"
        assert row["task_id"] in {t.pk for t in unjudged}
        chosen = Variant.objects.get(pk=row["chosen_variant_id"])
        assert archive.read(row["chosen"]) == file_bytes(chosen)
    assert run.options == {"aspect_pairs": False, "labels": "model", "reward_version": version.pk}


def test_both_labels_keep_peoples_rows_and_add_the_models(labelled):
    project, _, _, unjudged = labelled
    _, archive = export(project, kind="pairs", format="parquet", labels="both")

    rows = every_row(parquet_rows(archive))
    human = [r for r in rows if r["label_source"] == "human"]
    model = [r for r in rows if r["label_source"] == "model"]
    assert {(r["judgement_id"], r["chosen_variant_id"], r["rejected_variant_id"], r["margin"])
            for r in human} == expected_pairs(Judgement.objects.all())
    assert model_pair_keys(model) == model_pairs_expected(unjudged)
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["labels"]["rows"] == {"human": len(human), "model": len(model)}


def test_a_named_version_labels_with_its_own_scores(labelled):
    project, _, old, unjudged = labelled
    _, archive = export(project, kind="pairs", format="jsonl", labels="model",
                        reward_version=old.pk)

    rows = every_row(jsonl_rows(archive))
    reversed_scores = [list(reversed(s)) for s in MODEL_SCORES]
    assert model_pair_keys(rows) == model_pairs_expected(unjudged, reversed_scores)
    assert {r["reward_version"] for r in rows} == {1}


def test_model_dpo_rows_give_ties_halves_and_leave_them_out_without_ties(labelled):
    project, _, _, unjudged = labelled
    _, archive = export(project, kind="dpo", format="jsonl", labels="model")

    rows = every_row(jsonl_rows(archive))
    assert len(rows) == 2 * 6
    for row in rows:
        task = unjudged[0] if row["task_id"] == unjudged[0].pk else unjudged[1]
        overall = MODEL_SCORES[unjudged.index(task)]
        ids = sorted(task.variants.values_list("id", flat=True))
        delta = overall[ids.index(row["variant_0_id"])] - overall[ids.index(row["variant_1_id"])]
        want = 0.5 if abs(delta) <= EPSILON else 1.0 if delta > 0 else 0.0
        assert (row["label_0"], row["label_1"]) == (want, 1.0 - want)
        assert row["score_margin"] == pytest.approx(abs(delta))
        assert row["ranking_id"] is None and row["reward_version"] == 2
    _, archive = export(project, kind="dpo", format="jsonl", labels="model", include_ties=False)
    assert {r["label_0"] for r in every_row(jsonl_rows(archive))} == {0.0, 1.0}
    assert len(every_row(jsonl_rows(archive))) == 10


def test_model_rankings_share_a_rank_within_epsilon(labelled):
    project, _, _, unjudged = labelled
    _, archive = export(project, kind="rankings", format="jsonl", labels="model")

    rows = sorted(every_row(jsonl_rows(archive)), key=lambda r: r["task_id"])
    assert [r["task_id"] for r in rows] == [t.pk for t in unjudged]
    assert rows[0]["ranking"] == [1, 1, 2, 3] and rows[1]["ranking"] == [3, 2, 2, 1]
    assert rows[0]["model_scores"] == MODEL_SCORES[0]
    assert rows[0]["score_margin"] == pytest.approx(0.5)  # c (0.3) to d (-0.2)
    assert rows[1]["score_margin"] == pytest.approx(0.4)  # c (0.6) to a (0.2)
    assert rows[0]["split"] == "train" and rows[1]["split"] == "test"


def test_model_ranks_join_a_rank_within_epsilon_of_its_best():
    assert queries.model_ranks([1.0, 0.75, 0.5], 0.25) == [1, 1, 2]
    assert queries.model_ranks([0.5, 0.75, 1.0], 0.0) == [3, 2, 1]
    assert queries.model_ranks([0.5, 0.5], 0.0) == [1, 1]


def test_task_filters_apply_to_model_rows(labelled):
    project, _, _, unjudged = labelled
    EditTask.objects.filter(pk=unjudged[1].pk).update(is_gold=True)
    _, archive = export(project, kind="rankings", format="jsonl", labels="model",
                        filters={"exclude_gold": True})
    assert [r["task_id"] for r in every_row(jsonl_rows(archive))] == [unjudged[0].pk]

    ids = sorted(unjudged[0].variants.values_list("id", flat=True))
    Variant.objects.filter(pk__in=ids[:2]).update(generator="other")
    _, archive = export(project, kind="rankings", format="jsonl", labels="model",
                        filters={"generators": ["other"]})
    (row,) = every_row(jsonl_rows(archive))
    assert row["variant_ids"] == ids[:2] and row["ranking"] == [1, 1]


def test_the_manifest_says_how_well_the_version_agrees_with_held_out_people(labelled):
    project, version, _, _ = labelled
    run, archive = export(project, kind="dpo", format="parquet", images="embed",
                          labels="both")

    labels = json.loads(archive.read("manifest.json"))["labels"]
    assert labels["source"] == "both"
    assert labels["reward_version"] == {
        "id": version.pk, "number": 2, "status": "active", "epsilon": EPSILON,
        "epsilon_calibrated_on": "val",
        "held_out": {"split": "test", "pairwise_accuracy": 0.71, "judgements": 40.0,
                     "pairs": 240, "human_ceiling": 0.8, "ceiling_tasks": 12,
                     "pairwise_accuracy_on_ceiling_items": 0.69},
    }
    assert labels["rows"] == {"human": 36, "model": 12}
    assert "71.0%" in labels["note"] and "80.0%" in labels["note"]
    assert [c["name"] for c in run.manifest["columns"]][-3:] == [
        "label_source", "reward_version", "score_margin"]


def test_a_version_without_epsilon_ties_only_equal_scores(labelled):
    project, version, _, unjudged = labelled
    version.metrics = {"test": HELD_OUT}
    version.save(update_fields=["metrics"])
    _, archive = export(project, kind="pairs", format="jsonl", labels="model")

    assert len(every_row(jsonl_rows(archive))) == 6 + 5  # only task 4's equal b-c ties
    assert json.loads(archive.read("manifest.json"))["labels"]["reward_version"][
        "epsilon_calibrated_on"] is None
    assert unjudged


@pytest.mark.parametrize(
    "body, errors",
    [
        ({"kind": "scores", "labels": "model"}, {"labels"}),
        ({"kind": "pairs", "labels": "people"}, {"labels"}),
        ({"kind": "pairs", "reward_version": 3}, {"reward_version"}),
        ({"kind": "pairs", "labels": "model", "reward_version": "v3"}, {"reward_version"}),
        ({"kind": "pairs", "layout": "imagereward"}, {"layout"}),
        ({"kind": "rankings", "layout": "editreward"}, {"layout"}),
        ({"kind": "rankings", "layout": "pickapic"}, {"layout"}),
        ({"kind": "rankings", "layout": "imagereward", "format": "parquet"}, {"format"}),
        ({"kind": "rankings", "layout": "imagereward", "images": "embed"}, {"images"}),
        ({"kind": "pairs", "layout": "editreward", "aspect_pairs": True}, {"aspect_pairs"}),
        ({"kind": "rankings", "include_ties": True}, {"include_ties"}),
        ({"kind": "pairs", "image_feature": True, "format": "parquet", "images": "embed"},
         {"image_feature"}),
        ({"kind": "dpo", "image_feature": True, "format": "parquet"}, {"image_feature"}),
        ({"kind": "dpo", "image_feature": "yes"}, {"image_feature"}),
    ],
)
def test_a_bad_new_option_names_its_field(body, errors):
    with pytest.raises(RequestInvalid) as raised:
        parse_request(body)
    assert set(raised.value.errors) == errors


def test_editreward_pairs_leave_ties_out_unless_asked():
    assert parse_request({"kind": "pairs", "layout": "editreward"}).include_ties is False
    asked = parse_request({"kind": "pairs", "layout": "editreward",
                                     "include_ties": True})
    assert asked.include_ties is True
    assert asked.options == {"aspect_pairs": False, "include_ties": True, "layout": "editreward"}
    assert parse_request({"kind": "dpo"}).include_ties is True
