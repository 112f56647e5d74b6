"""The archive on plain files: what goes in, in which order, and the content hash."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from exports import archive


def staged(folder: Path) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "train.jsonl").write_text('{"a":1}\n')
    (folder / "val.jsonl").write_text("")
    (folder / "images" / "b.png").write_bytes(b"png-b")
    (folder / "images" / "a.png").write_bytes(b"png-a")
    (folder / "dataset_dict.json").write_text("{}")
    return folder


def build(folder: Path, target: Path) -> archive.ArchiveResult:
    return archive.build_archive(
        folder, ["train.jsonl", "val.jsonl"], target, lambda result: {"hash": result.content_sha256}
    )


def test_tables_then_images_then_the_rest_then_the_manifest(tmp_path):
    result = build(staged(tmp_path / "out"), tmp_path / "export.zip")

    names = zipfile.ZipFile(tmp_path / "export.zip").namelist()
    assert names == [
        "train.jsonl",
        "val.jsonl",
        "images/a.png",
        "images/b.png",
        "dataset_dict.json",
        "manifest.json",
    ]
    assert [entry["path"] for entry in result.files] == ["train.jsonl", "val.jsonl"]
    assert result.images == {"count": 2, "bytes": 10}
    assert result.size_bytes == (tmp_path / "export.zip").stat().st_size


def test_the_content_hash_is_sha256sum_lines_of_the_data_files(tmp_path):
    folder = staged(tmp_path / "out")
    result = build(folder, tmp_path / "export.zip")

    lines = "".join(
        f"{hashlib.sha256((folder / name).read_bytes()).hexdigest()}  {name}\n"
        for name in ["train.jsonl", "val.jsonl", "images/a.png", "images/b.png"]
    )
    assert result.content_sha256 == hashlib.sha256(lines.encode()).hexdigest()
    manifest = json.loads(zipfile.ZipFile(tmp_path / "export.zip").read("manifest.json"))
    assert manifest == {"hash": result.content_sha256}
    assert build(folder, tmp_path / "again.zip").content_sha256 == result.content_sha256


def test_human_bytes():
    assert archive.human_bytes(0) == "0 B"
    assert archive.human_bytes(1536) == "1.5 KB"
    assert archive.human_bytes(3 * 1024**3) == "3.0 GB"
