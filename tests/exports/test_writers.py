"""The writers on plain rows: no database, only dicts, image files and the tables they give."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from exports import writers
from exports.writers import ImageRef, PairExtra
from tests.conftest import png_bytes

JUDGED_AT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def media(tmp_path: Path) -> Path:
    """Three PNGs in a media folder: a source and two edits."""
    root = tmp_path / "media"
    for name, colour in [("source", (10, 10, 10)), ("left", (200, 0, 0)), ("right", (0, 0, 200))]:
        path = root / "images" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(colour))
    return root


def image(media: Path, name: str) -> ImageRef:
    data = (media / "images" / f"{name}.png").read_bytes()
    return ImageRef(hashlib.sha256(data).hexdigest(), "PNG", f"images/{name}.png")


def pair_row(media: Path, judgement_id: int, split: str, **changed: object) -> dict:
    """A pairs row as exports/queries.py makes one: the keys in the columns' order."""
    row = {
        "judgement_id": judgement_id,
        "task_id": 7,
        "split": split,
        "instruction": "make it warmer",
        "category": "global",
        "round": 1,
        "source": image(media, "source"),
        "chosen": image(media, "left"),
        "rejected": image(media, "right"),
        "chosen_variant_id": 11,
        "rejected_variant_id": 12,
        "chosen_generator": "ip2p",
        "rejected_generator": "other",
        "aspect": "overall",
        "margin": 1.0,
        "annotator": "annotator",
        "simulated": False,
        "unsure": False,
        "created_at": JUDGED_AT,
        "label_source": "human",
        "reward_version": None,
        "score_margin": None,
    }
    assert list(row) == [name for name, _ in writers.PAIR_COLUMNS]
    return {**row, **changed}


def test_jsonl_tables_hold_each_split_and_copy_each_image_once(media, tmp_path):
    rows = [
        pair_row(media, 1, "train"),
        pair_row(media, 2, "train", simulated=True),
        pair_row(media, 3, "test"),
    ]
    out = tmp_path / "out"

    written = writers.write_tables(rows, "pairs", "jsonl", "files", out, media)

    assert written.counts == {"train": 2, "val": 0, "test": 1}
    assert written.simulated_rows == 1 and written.images_stored == 3
    assert written.label_rows == {"human": 3, "model": 0}
    assert written.tables == ["train.jsonl", "val.jsonl", "test.jsonl"]
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert [row["judgement_id"] for row in train] == [1, 2]
    assert train[0]["created_at"] == "2026-11-01T12:00:00+00:00"
    chosen = image(media, "left")
    assert train[0]["chosen"] == f"images/{chosen.sha256}.png"
    assert (out / train[0]["chosen"]).read_bytes() == (media / chosen.file).read_bytes()
    assert (out / "val.jsonl").read_text() == ""
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(
        f"{image(media, name).sha256}.png" for name in ("source", "left", "right")
    )


def test_jsonl_embeds_images_as_base64(media, tmp_path):
    writers.write_tables([pair_row(media, 1, "val")], "pairs", "jsonl", "embed", tmp_path, media)

    (row,) = [json.loads(line) for line in (tmp_path / "val.jsonl").read_text().splitlines()]
    assert base64.b64decode(row["rejected"]) == (media / "images" / "right.png").read_bytes()
    assert not (tmp_path / "images").exists()


def test_parquet_embeds_the_hf_image_struct_and_names_the_features(media, tmp_path):
    rows = [pair_row(media, n, "train") for n in range(1, 6)]

    writers.write_tables(rows, "pairs", "parquet", "embed", tmp_path, media)

    table = pq.read_table(tmp_path / "train.parquet")
    assert table.column_names == [name for name, _ in writers.PAIR_COLUMNS]
    first = table.to_pylist()[0]
    assert first["chosen"] == {
        "bytes": (media / "images" / "left.png").read_bytes(),
        "path": f"{image(media, 'left').sha256}.png",
    }
    assert first["created_at"] == JUDGED_AT
    features = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]
    assert features["chosen"] == {"_type": "Image"}
    assert features["margin"] == {"dtype": "float64", "_type": "Value"}


def test_parquet_row_groups_hold_at_most_a_batch(media, tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "BATCH_ROWS", 2)
    rows = [pair_row(media, n, "train") for n in range(1, 6)]

    writers.write_tables(rows, "pairs", "parquet", "files", tmp_path, media)

    metadata = pq.ParquetFile(tmp_path / "train.parquet").metadata
    assert (metadata.num_rows, metadata.num_row_groups) == (5, 3)


def test_binary_images_are_plain_bytes_cells(media, tmp_path):
    writers.write_tables(
        [pair_row(media, 1, "train")],
        "pairs",
        "parquet",
        "embed",
        tmp_path,
        media,
        binary_images=True,
    )

    table = pq.read_table(tmp_path / "train.parquet")
    assert table.to_pylist()[0]["source"] == (media / "images" / "source.png").read_bytes()
    assert writers.image_cell("parquet", "embed", True) == "binary"


def test_the_editreward_layout_writes_a_json_array_with_path1_preferred(media, tmp_path):
    scores = {"following": 4, "quality": 3, "preserving": 5}
    row = pair_row(media, 1, "train", _extra=PairExtra(scores, {"following": 1}, tie=False))

    written = writers.write_tables(
        [row], "pairs", "jsonl", "files", tmp_path, media, layout="editreward"
    )

    assert written.tables == ["train.json", "val.json", "test.json"]
    (item,) = json.loads((tmp_path / "train.json").read_text())
    assert item["path1"] == f"images/{image(media, 'left').sha256}.png"
    assert (item["model1_dim1_score"], item["model1_dim2_score"]) == (4, 3)
    assert item["model1_overall_score"] == 7 and item["model2_overall_score"] is None
    assert item["model1_preserving_score"] == 5 and item["tie_case"] is False
    assert json.loads((tmp_path / "val.json").read_text()) == []
    assert [name for name, _ in writers.table_columns("pairs", "editreward")] == list(item)


def test_rows_that_are_not_the_columns_are_refused(media, tmp_path):
    row = pair_row(media, 1, "train")
    del row["margin"]
    with pytest.raises(ValueError, match="are not the columns"):
        writers.write_tables([row], "pairs", "jsonl", "embed", tmp_path, media)


def test_a_missing_image_says_which_and_what_to_do(media, tmp_path):
    row = pair_row(media, 1, "train")
    (media / "images" / "right.png").unlink()
    with pytest.raises(FileNotFoundError, match="missing from MEDIA_ROOT .*images/right.png"):
        writers.write_tables([row], "pairs", "jsonl", "files", tmp_path / "out", media)


def test_progress_is_reported_by_rows_and_once_at_the_end(media, tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "PROGRESS_EVERY", 2)
    seen = []

    writers.write_tables(
        [pair_row(media, n, "train") for n in (4, 5, 6)],
        "pairs",
        "jsonl",
        "files",
        tmp_path,
        media,
        lambda phase, done, key: seen.append((phase, done, key)),
    )

    assert seen == [("rows", 2, 5), ("rows", 3, None)]


def test_an_hf_image_feature_reads_back_as_an_image(media, tmp_path):
    import datasets

    writers.write_tables([pair_row(media, 1, "train")], "pairs", "hf", "embed", tmp_path, media)

    loaded = datasets.load_from_disk(str(tmp_path))
    assert {split: len(loaded[split]) for split in writers.SPLITS} == {
        "train": 1,
        "val": 0,
        "test": 0,
    }
    assert loaded["train"][0]["chosen"].size == (32, 24)  # a PIL image, not bytes
