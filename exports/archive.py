"""The export archive: a zip of the tables (one per split), the image files and
``manifest.json``, which says what was exported, how (kind, format, filters, options, who
labelled the rows), what the archive holds and its content hash. Plain Python, no Django.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from exports.request import ExportRequest
from exports.writers import Progress, WriteResult, image_cell, table_columns

SCHEMA_VERSION = 1


@dataclass
class ArchiveResult:
    files: list[dict]  # tables: path, bytes, sha256
    images: dict[str, int]  # count, bytes
    content_sha256: str
    size_bytes: int
    seconds: float


def _compression(name: str) -> int:
    # Parquet, Arrow and images are compressed already (or random enough): stored as is.
    return zipfile.ZIP_DEFLATED if name.endswith((".jsonl", ".json")) else zipfile.ZIP_STORED


def build_archive(
    out_dir: Path,
    tables: list[str],
    archive: Path,
    manifest_for: Callable[[ArchiveResult], dict],
    on_progress: Progress | None = None,
) -> ArchiveResult:
    """Zip everything under ``out_dir``: tables, then images, then the rest (hf metadata),
    then ``manifest.json``. The content hash covers the data files only (tables and
    images): sha256 over the ``sha256sum``-style lines ``<sha256>  <path>`` in archive
    order, so the same rows give the same hash whenever they are exported."""
    started = time.monotonic()
    image_dir = out_dir / "images"
    image_names = sorted(os.listdir(image_dir)) if image_dir.is_dir() else []
    others = sorted(
        str(path.relative_to(out_dir))
        for path in out_dir.rglob("*")
        if path.is_file()
        and not path.is_relative_to(image_dir)
        and str(path.relative_to(out_dir)) not in tables
    )
    total = sum((out_dir / name).stat().st_size for name in tables + others) + sum(
        (image_dir / name).stat().st_size for name in image_names
    )
    content = hashlib.sha256()
    done = 0
    files, image_bytes = [], 0
    with zipfile.ZipFile(archive, "w", allowZip64=True) as zipped:
        data = [(name, True) for name in tables] + [
            (f"images/{name}", False) for name in image_names
        ]
        for name, is_table in data + [(name, None) for name in others]:
            digest, size = _add(zipped, out_dir / name, name)
            done += size
            if is_table is not None:
                content.update(f"{digest}  {name}\n".encode())
            if is_table:
                files.append({"path": name, "bytes": size, "sha256": digest})
            elif is_table is False:
                image_bytes += size
            if on_progress:
                on_progress("archive", done, total)
        result = ArchiveResult(
            files=files,
            images={"count": len(image_names), "bytes": image_bytes},
            content_sha256=content.hexdigest(),
            size_bytes=0,
            seconds=0.0,
        )
        manifest = manifest_for(result)
        zipped.writestr(
            "manifest.json", json.dumps(manifest, indent=2) + "\n", zipfile.ZIP_DEFLATED
        )
    result.size_bytes = archive.stat().st_size
    result.seconds = time.monotonic() - started
    return result


def _add(zipped: zipfile.ZipFile, path: Path, name: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    zipped.compression = _compression(name)
    zipped.compresslevel = 1  # the table is read once, by a machine: speed over size
    with open(path, "rb") as source, zipped.open(name, "w", force_zip64=True) as target:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            target.write(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def manifest(
    request: ExportRequest,
    project: dict,
    written: WriteResult,
    archived: ArchiveResult,
    created_at: datetime,
    version: str,
    reward_version: dict | None = None,
) -> dict:
    """``reward_version``: reward_version_summary() of the version whose scores label the
    model rows (labels model / both)."""
    counts = {**written.counts, "total": sum(written.counts.values())}
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": request.kind,
        "format": request.format,
        "images": request.images,
        "image_cells": image_cell(request.format, request.images, request.binary_images),
        "layout": request.layout,
        "read_by": read_by(request),
        "project": project,
        "filters": {"project": project["id"], **request.filters.to_dict()},
        "options": request.options,
        "counts": counts,
        "labels": _labels_section(request, written, reward_version),
        "simulated_rows": written.simulated_rows,
        "contains_simulated": written.simulated_rows > 0,
        "note": _simulated_note(written.simulated_rows, request.kind),
        "columns": [
            {"name": name, "type": kind}
            for name, kind in table_columns(request.kind, request.layout)
        ],
        "files": archived.files,
        "image_files": archived.images,
        "content_sha256": archived.content_sha256,
        "created_at": created_at.isoformat(),
        "editloop_version": version,
    }


# The training code each table was checked against (tests/exports/test_export_consumers.py).
READ_BY = {
    ("rankings", "imagereward"): "THUDM/ImageReward train/src/make_dataset.py "
    "(rank_pair_dataset: dataset/<split>.json, images/)",
    ("pairs", "editreward"): "TIGER-Lab/EditReward dataset/pairwise_edit_dataset.py "
    "(train_json_list: train.json; run from the unzipped folder)",
    ("dpo", "default"): "diffusers examples/research_projects/diffusion_dpo/"
    "train_diffusion_dpo.py (--dataset_name <unzipped folder>)",
}


def read_by(request: ExportRequest) -> str | None:
    """The other project's training code that reads this export unchanged, if any. The
    diffusers script needs Parquet with the images as plain bytes."""
    if request.kind == "dpo" and (
        request.format != "parquet"
        or image_cell(request.format, request.images, request.binary_images) != "binary"
    ):
        return None
    return READ_BY.get((request.kind, request.layout))


def reward_version_summary(
    version_id: int, number: int, status: str, metrics: dict, *, held_out: str = "test"
) -> dict:
    """What the manifest says about the version that labelled the model rows: its ε and
    how well it agrees with people on judgements it never trained on (the held-out split),
    beside the annotators' own agreement on the same items."""
    split = metrics.get(held_out) or {}
    ceiling = split.get("human_ceiling") or {}
    on_ceiling_items = split.get("ceiling_items") or {}
    return {
        "id": version_id,
        "number": number,
        "status": status,
        "epsilon": float(metrics.get("epsilon") or 0.0),
        "epsilon_calibrated_on": "val" if "epsilon" in metrics else None,
        "held_out": {
            "split": held_out,
            "pairwise_accuracy": split.get("pairwise_accuracy"),
            "judgements": split.get("judgements"),
            "pairs": split.get("pairs"),
            "human_ceiling": ceiling.get("pairwise_accuracy"),
            "ceiling_tasks": ceiling.get("tasks"),
            "pairwise_accuracy_on_ceiling_items": on_ceiling_items.get("pairwise_accuracy"),
        },
    }


def _labels_section(
    request: ExportRequest, written: WriteResult, reward_version: dict | None
) -> dict:
    section: dict[str, Any] = {"source": request.labels, "rows": dict(written.label_rows)}
    if request.labels == "human":
        return section
    section["reward_version"] = reward_version
    held_out = (reward_version or {}).get("held_out") or {}
    accuracy, ceiling = held_out.get("pairwise_accuracy"), held_out.get("human_ceiling")
    section["note"] = (
        f"{written.label_rows['model']} row(s) labelled by reward model "
        f"v{(reward_version or {}).get('number')} for tasks nobody judged (label_source "
        f"'model'); on {_count(held_out.get('judgements'))} held-out judgements it agrees with "
        f"people on {_share(accuracy)} of pairs, people with each other on {_share(ceiling)}"
    )
    return section


def _count(value: float | None) -> str:
    return "an unknown number of" if value is None else f"{value:,.0f}"


def _share(value: float | None) -> str:
    return "an unknown share" if value is None else f"{value:.1%}"


def _simulated_note(rows: int, kind: str) -> str:
    if not rows:
        return "every row comes from people's judgements"
    column = "simulated (per score)" if kind == "scores" else "simulated"
    return (
        f"{rows} row(s) come from simulated annotators (evaluation/simulated_judgements.py), not "
        f"people: column {column} marks them; export with exclude_simulated to leave them out"
    )


def human_bytes(size: int | None) -> str:
    if not size:
        return "0 B"
    power = min(int(math.log(size, 1024)), 4)
    return f"{size / 1024**power:.1f} {['B', 'KB', 'MB', 'GB', 'TB'][power]}"
