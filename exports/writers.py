"""Export tables out of plain rows: JSON lines, Parquet and Hugging Face ``datasets``.

Plain functions and classes over plain dicts (one per row, keys in the kind's column order,
images as :class:`ImageRef`), no Django: exports/queries.py streams the rows out of
Postgres, these turn them into files, exports/archive.py zips them with a manifest.

Kinds (one row each of):
- ``pairs``: a non-tied pair of one judgement, chosen / rejected (TRL RewardTrainer
  columns), ``aspect`` = ``overall`` from the ranking; with ``aspect_pairs`` also one row
  per aspect where the same annotator scored one variant higher than the other
  (``margin`` = the tier or score difference);
- ``rankings``: a judgement, ImageReward style: the task's ``generations`` and
  ``ranking`` (1 = best, tied generations share a rank);
- ``scores``: a (variant, aspect): every annotator's 0–5 score and their mean / median
  / count;
- ``dpo``: a pair of one judgement, Pick-a-Pic / Diffusion-DPO columns ``jpg_0``,
  ``jpg_1``, ``label_0``, ``label_1`` (1/0, or 0.5/0.5 for a tie), ``caption``, plus the
  ``source`` image an editor starts from.
Every pairs / rankings / dpo row says who labelled it (``label_source``,
``reward_version``, ``score_margin``).

Formats: JSON lines, Parquet (row groups of a fixed schema, Hugging Face feature metadata)
and a ``datasets`` directory (``DatasetDict.save_to_disk``). Embedded images are the HF
Image feature, except in ``dpo`` where they are plain binary columns as in Pick-a-Pic v2
(what the diffusers Diffusion-DPO script opens with ``Image.open(io.BytesIO(cell))``;
``image_feature`` brings the Image feature back). Images are embedded or written once as
``images/<sha256>.<ext>`` beside the tables. Layouts write what another project's own
trainer reads: ``imagereward`` (rankings: ImageReward's ``train/src/rank_pair_dataset.py``)
and ``editreward`` (pairs: TIGER-Lab EditReward's ``train.json``). Memory stays flat in
the number of rows: the writers keep at most one batch.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pyarrow as pa  # imported where used: only Arrow and Parquet exports need it

SPLITS = ("train", "val", "test")

# Rows per Parquet row group / Arrow record batch, and the embedded image bytes that close
# a batch early: the bound on what a writer holds at once.
BATCH_ROWS = 10_000
BATCH_IMAGE_BYTES = 32 * 1024 * 1024
PROGRESS_EVERY = 2_000

# (phase, done, key): phase "rows" (done = rows written, key = the row's ordering key) or
# "archive" (done = bytes archived, key = total bytes).
Progress = Callable[[str, int, int | None], None]


# --- columns ----------------------------------------------------------------------------------


class ImageRef(NamedTuple):
    """An image a row points at: its hash, format and file relative to the media root."""

    sha256: str
    format: str
    file: str

    @property
    def name(self) -> str:
        extension = self.format.lower().replace("jpeg", "jpg")
        return f"{self.sha256}.{extension}"


# Column types: int float str bool time image | images ints floats strs bools (lists).
# Who gave a row its label: "human" (a judgement) or "model" (reward_version's scores, the
# version's number; score_margin = how far apart it scored the two, null for people).
LABEL_COLUMNS = [("label_source", "str"), ("reward_version", "int"), ("score_margin", "float")]
PAIR_COLUMNS = [
    ("judgement_id", "int"),
    ("task_id", "int"),
    ("split", "str"),
    ("instruction", "str"),
    ("category", "str"),
    ("round", "int"),
    ("source", "image"),
    ("chosen", "image"),
    ("rejected", "image"),
    ("chosen_variant_id", "int"),
    ("rejected_variant_id", "int"),
    ("chosen_generator", "str"),
    ("rejected_generator", "str"),
    ("aspect", "str"),
    ("margin", "float"),
    ("annotator", "str"),
    ("simulated", "bool"),
    ("unsure", "bool"),
    ("created_at", "time"),
    *LABEL_COLUMNS,
]
DPO_COLUMNS = [
    ("ranking_id", "int"),
    ("task_id", "int"),
    ("split", "str"),
    ("caption", "str"),
    ("category", "str"),
    ("round", "int"),
    ("source", "image"),
    ("jpg_0", "image"),
    ("jpg_1", "image"),
    ("label_0", "float"),
    ("label_1", "float"),
    ("variant_0_id", "int"),
    ("variant_1_id", "int"),
    ("image_0_uid", "str"),
    ("image_1_uid", "str"),
    ("model_0", "str"),
    ("model_1", "str"),
    ("annotator", "str"),
    ("simulated", "bool"),
    ("unsure", "bool"),
    ("created_at", "time"),
    *LABEL_COLUMNS,
]
RANKING_COLUMNS = [
    ("id", "int"),
    ("task_id", "int"),
    ("split", "str"),
    ("instruction", "str"),
    ("category", "str"),
    ("round", "int"),
    ("source", "image"),
    ("generations", "images"),
    ("variant_ids", "ints"),
    ("generators", "strs"),
    ("ranking", "ints"),
    ("annotator", "str"),
    ("simulated", "bool"),
    ("unsure", "bool"),
    ("created_at", "time"),
    *LABEL_COLUMNS,
    ("model_scores", "floats"),
]
SCORE_COLUMNS = [
    ("variant_id", "int"),
    ("task_id", "int"),
    ("split", "str"),
    ("instruction", "str"),
    ("category", "str"),
    ("round", "int"),
    ("source", "image"),
    ("image", "image"),
    ("generator", "str"),
    ("aspect", "str"),
    ("values", "ints"),
    ("annotators", "strs"),
    ("judgement_ids", "ints"),
    ("simulated", "bools"),
    ("mean", "float"),
    ("median", "float"),
    ("count", "int"),
]
COLUMNS = {
    "pairs": PAIR_COLUMNS,
    "dpo": DPO_COLUMNS,
    "rankings": RANKING_COLUMNS,
    "scores": SCORE_COLUMNS,
}
# The column rows are ordered by, for progress reports.
PROGRESS_KEY = {
    "pairs": "judgement_id",
    "dpo": "ranking_id",
    "rankings": "id",
    "scores": "variant_id",
}

# ImageReward's own trainer (THUDM/ImageReward train/src/rank_pair_dataset.py) json.loads
# <data_base>/<split>.json, one array of items, and reads item["prompt"],
# item["generations"] (paths joined onto <image_base>) and item["ranking"] (per generation,
# smaller = better; equal ranks are ties and give no pair). Its config names the folders
# dataset/ and images/ and make_dataset.py the splits train, valid, test. The rest are ours.
IMAGEREWARD_COLUMNS = [
    ("id", "int"),
    ("prompt", "str"),
    ("generations", "images"),
    ("ranking", "ints"),
    ("source", "image"),
    ("task_id", "int"),
    ("split", "str"),
    ("category", "str"),
    ("round", "int"),
    ("variant_ids", "ints"),
    ("generators", "strs"),
    ("annotator", "str"),
    ("simulated", "bool"),
    ("unsure", "bool"),
    ("created_at", "time"),
    *LABEL_COLUMNS,
    ("model_scores", "floats"),
]
# TIGER-Lab EditReward's pairwise training file (EditReward/TRAIN_README.md,
# dataset/pairwise_edit_dataset.py): a JSON array; path1 is always the preferred edit;
# model<n>_dim1_score is instruction following, model<n>_dim2_score visual quality (its
# prompts.py), model<n>_overall_score their sum (as in its README's examples); tie_case
# marks a tied pair. The dataset reads every key that starts with model<n>_dim or
# model<n>_overall, so our extra aspect is named model<n>_preserving_score.
EDITREWARD_COLUMNS = [
    ("prompt", "str"),
    ("choice_dist", "floats"),
    ("confidence", "float"),
    ("path_src", "image"),
    ("path1", "image"),
    ("path2", "image"),
    ("model1", "str"),
    ("model2", "str"),
    ("model1_dim1_score", "float"),
    ("model1_dim2_score", "float"),
    ("model1_overall_score", "float"),
    ("model2_dim1_score", "float"),
    ("model2_dim2_score", "float"),
    ("model2_overall_score", "float"),
    ("tie_case", "bool"),
    ("model1_preserving_score", "float"),
    ("model2_preserving_score", "float"),
    ("judgement_id", "int"),
    ("task_id", "int"),
    ("split", "str"),
    ("category", "str"),
    ("round", "int"),
    ("variant1_id", "int"),
    ("variant2_id", "int"),
    ("margin", "float"),
    ("annotator", "str"),
    ("simulated", "bool"),
    ("unsure", "bool"),
    ("created_at", "time"),
    *LABEL_COLUMNS,
]
# EditReward's two dimensions in our aspects (its dim1 = "Instruction Following & Semantic
# Fidelity", dim2 = "Visual Quality & Realism").
EDITREWARD_DIMENSIONS = {"dim1": "following", "dim2": "quality"}


class PairExtra(NamedTuple):
    """What the editreward layout needs beyond a pair row: both variants' aspect scores
    (the annotator's, or the model's predictions) and whether the pair is a tie."""

    chosen_scores: dict
    rejected_scores: dict
    tie: bool


# --- writers ----------------------------------------------------------------------------------


class ImageSink:
    """Turns image references into table cells: the bytes (``embed``) or a path relative to
    the archive root (``files``), in which case the file is copied into ``images/`` once."""

    def __init__(self, mode: str, media_root: Path, out_dir: Path) -> None:
        self.mode, self.media_root, self.out_dir = mode, Path(media_root), Path(out_dir)
        self.paths: dict[str, str] = {}  # sha → relative path; bounded by the image count
        self.bytes_embedded = 0

    def read(self, image: ImageRef) -> bytes:
        try:
            data = (self.media_root / image.file).read_bytes()
        except FileNotFoundError:
            raise _missing(image) from None
        self.bytes_embedded += len(data)
        return data

    def path(self, image: ImageRef) -> str:
        relative = self.paths.get(image.sha256)
        if relative is None:
            relative = f"images/{image.name}"
            target = self.out_dir / relative
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    shutil.copyfile(self.media_root / image.file, target)
                except FileNotFoundError:
                    raise _missing(image) from None
            self.paths[image.sha256] = relative
        return relative


def _missing(image: ImageRef) -> FileNotFoundError:
    return FileNotFoundError(
        f"image {image.sha256[:12]} is missing from MEDIA_ROOT ({image.file}): "
        "restore the media files or re-import the task"
    )


# How an image becomes a cell: its path in the archive (images "files"), base64 text
# (embedded in JSON lines), the HF Image struct {bytes, path}, or plain bytes (dpo).
IMAGE_CELLS = ("path", "base64", "struct", "binary")


def image_cell(fmt: str, images: str, binary: bool) -> str:
    if images == "files":
        return "path"
    if fmt == "jsonl":
        return "base64"
    return "binary" if binary else "struct"


def _cell_converters(
    columns: list[tuple[str, str]],
    cell: str,
    sink: ImageSink,
    *,
    as_json: bool,
    image_base: str = "",
) -> list[tuple[str, Callable[[Any], Any] | None]]:
    """Per column, how a row value becomes a cell of a JSON (``as_json``) or Arrow table.
    ``image_base``: image paths are written relative to that folder of the archive
    (ImageReward joins them onto its image_base)."""
    if cell == "path":

        def image(ref: ImageRef) -> str:
            return sink.path(ref).removeprefix(image_base)
    elif cell == "base64":

        def image(ref: ImageRef) -> str:
            return base64.b64encode(sink.read(ref)).decode("ascii")
    elif cell == "binary":
        image = sink.read
    else:

        def image(ref: ImageRef) -> dict:
            return {"bytes": sink.read(ref), "path": ref.name}

    def images(refs: list[ImageRef]) -> list:
        return [image(ref) for ref in refs]

    def moment(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    by_type = {"image": image, "images": images, "time": moment if as_json else None}
    return [(name, by_type.get(kind)) for name, kind in columns]


class JsonlTable:
    """One JSON object a line, keys in column order (ASCII: the C encoder's fast path)."""

    LINES_PER_WRITE = 1_000

    def __init__(
        self, path: Path, columns: list, sink: ImageSink, cell: str, image_base: str = ""
    ) -> None:
        self.path = path
        self.handle = open(path, "w", encoding="ascii")  # no `with`: closed in close()
        self.converting = [
            (n, c)
            for n, c in _cell_converters(columns, cell, sink, as_json=True, image_base=image_base)
            if c
        ]
        self.encode = json.JSONEncoder(separators=(",", ":")).encode
        self.lines: list[str] = []
        self.unchecked: list[str] | None = [name for name, _ in columns]

    def write(self, row: dict) -> None:
        if self.unchecked is not None:  # the keys are written as they come: check them once
            if list(row) != self.unchecked:
                raise ValueError(f"row keys {list(row)} are not the columns {self.unchecked}")
            self.unchecked = None
        cells = dict(row)
        for name, convert in self.converting:
            cells[name] = convert(cells[name])
        self.lines.append(self.encode(cells))
        if len(self.lines) >= self.LINES_PER_WRITE:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            self.handle.write("\n".join(self.lines) + "\n")
            self.lines = []

    def close(self) -> None:
        self.flush()
        self.handle.close()


class JsonArrayTable(JsonlTable):
    """One JSON array, an object a line, streamed: what ``json.load`` reads in ImageReward's
    and EditReward's dataset code (a whole split at once: their format, not ours)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handle.write("[")
        self.items = 0

    def flush(self) -> None:
        if self.lines:
            lead = ",\n" if self.items else "\n"
            self.handle.write(lead + ",\n".join(self.lines))
            self.items += len(self.lines)
            self.lines = []

    def close(self) -> None:
        self.flush()
        self.handle.write("\n]\n" if self.items else "]\n")
        self.handle.close()


def arrow_type(kind: str, cell: str) -> pa.DataType:
    import pyarrow as pa

    image = {
        "struct": pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
        "binary": pa.binary(),
    }.get(cell, pa.string())
    return {
        "int": pa.int64(),
        "float": pa.float64(),
        "str": pa.string(),
        "bool": pa.bool_(),
        "time": pa.timestamp("us", tz="UTC"),
        "image": image,
        "images": pa.list_(image),
        "ints": pa.list_(pa.int64()),
        "floats": pa.list_(pa.float64()),
        "strs": pa.list_(pa.string()),
        "bools": pa.list_(pa.bool_()),
    }[kind]


def hf_feature(kind: str, cell: str) -> dict:
    """The column's Hugging Face ``datasets`` feature, as datasets (>= 4) writes it into
    an Arrow / Parquet schema's ``huggingface`` metadata."""

    def value(dtype: str) -> dict:
        return {"dtype": dtype, "_type": "Value"}

    image = {"struct": {"_type": "Image"}, "binary": value("binary")}.get(cell, value("string"))
    return {
        "int": value("int64"),
        "float": value("float64"),
        "str": value("string"),
        "bool": value("bool"),
        "time": value("timestamp[us, tz=UTC]"),
        "image": image,
        "images": {"feature": image, "_type": "List"},
        "ints": {"feature": value("int64"), "_type": "List"},
        "floats": {"feature": value("float64"), "_type": "List"},
        "strs": {"feature": value("string"), "_type": "List"},
        "bools": {"feature": value("bool"), "_type": "List"},
    }[kind]


def arrow_schema(columns: list[tuple[str, str]], cell: str) -> pa.Schema:
    import pyarrow as pa

    features = {name: hf_feature(kind, cell) for name, kind in columns}
    metadata = {"huggingface": json.dumps({"info": {"features": features}})}
    return pa.schema(
        [pa.field(name, arrow_type(kind, cell)) for name, kind in columns], metadata=metadata
    )


class ArrowTable:
    """Rows gathered into columns and written a record batch at a time: a Parquet row group
    (``parquet``) or an Arrow IPC stream batch (``arrow``, what ``datasets`` stores)."""

    def __init__(
        self, path: Path, columns: list, sink: ImageSink, container: str, cell: str
    ) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path, self.sink = path, sink
        self.schema = arrow_schema(columns, cell)
        self.converters = _cell_converters(columns, cell, sink, as_json=False)
        self.names = [name for name, _ in columns]
        if container == "parquet":
            self.writer = pq.ParquetWriter(path, self.schema, compression="snappy")
        else:
            self.writer = pa.ipc.new_stream(str(path), self.schema)
        self._reset()

    def _reset(self) -> None:
        self.buffer: dict[str, list] = {name: [] for name in self.names}
        self.rows = 0
        self.batch_started_at_bytes = self.sink.bytes_embedded

    def write(self, row: dict) -> None:
        buffer = self.buffer
        for name, convert in self.converters:
            buffer[name].append(convert(row[name]) if convert else row[name])
        self.rows += 1
        embedded = self.sink.bytes_embedded - self.batch_started_at_bytes
        if self.rows >= BATCH_ROWS or embedded >= BATCH_IMAGE_BYTES:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if not self.rows:
            return
        arrays = [pa.array(self.buffer[f.name], type=f.type) for f in self.schema]
        self.writer.write_batch(pa.record_batch(arrays, schema=self.schema))
        self._reset()

    def close(self) -> None:
        self.flush()
        self.writer.close()


def open_table(
    path_stem: Path, fmt: str, columns: list, sink: ImageSink, cell: str
) -> JsonlTable | ArrowTable:
    if fmt == "jsonl":
        return JsonlTable(path_stem.with_suffix(".jsonl"), columns, sink, cell)
    if fmt == "parquet":
        return ArrowTable(path_stem.with_suffix(".parquet"), columns, sink, "parquet", cell)
    return ArrowTable(path_stem.with_suffix(".arrow"), columns, sink, "arrow", cell)


# --- layouts: another project's own files ---------------------------------------------------


PROVENANCE = (
    "annotator", "simulated", "unsure", "created_at", "label_source", "reward_version",
    "score_margin",
)  # fmt: skip


def _provenance(row: dict[str, Any]) -> dict[str, Any]:
    """Who or what labelled a row, and when: the same columns in every JSON kind."""
    return {name: row[name] for name in PROVENANCE}


def _imagereward_item(row: dict) -> dict:
    """A rankings row as ImageReward's item: ``prompt`` is the instruction."""
    return {
        "id": row["id"],
        "prompt": row["instruction"],
        "generations": row["generations"],
        "ranking": row["ranking"],
        "source": row["source"],
        "task_id": row["task_id"],
        "split": row["split"],
        "category": row["category"],
        "round": row["round"],
        "variant_ids": row["variant_ids"],
        "generators": row["generators"],
        **_provenance(row),
        "model_scores": row["model_scores"],
    }


def editreward_scores(scores: dict) -> tuple[float | None, float | None, float | None]:
    """(dim1, dim2, overall) from one variant's aspect scores: following, quality and their
    sum, as EditReward-Data's overall is dim1 + dim2. None where an aspect is missing (a
    project with other aspects, or a model version with the overall head only)."""
    dim1 = scores.get(EDITREWARD_DIMENSIONS["dim1"])
    dim2 = scores.get(EDITREWARD_DIMENSIONS["dim2"])
    overall = None if dim1 is None or dim2 is None else dim1 + dim2
    return dim1, dim2, overall


def _editreward_item(row: dict) -> dict:
    """A pair row as EditReward's training item: path1 the preferred edit."""
    extra: PairExtra = row["_extra"]
    first, second = editreward_scores(extra.chosen_scores), editreward_scores(extra.rejected_scores)
    return {
        "prompt": row["instruction"],
        "choice_dist": None,
        "confidence": None,
        "path_src": row["source"],
        "path1": row["chosen"],
        "path2": row["rejected"],
        "model1": row["chosen_generator"],
        "model2": row["rejected_generator"],
        "model1_dim1_score": first[0],
        "model1_dim2_score": first[1],
        "model1_overall_score": first[2],
        "model2_dim1_score": second[0],
        "model2_dim2_score": second[1],
        "model2_overall_score": second[2],
        "tie_case": extra.tie,
        "model1_preserving_score": extra.chosen_scores.get("preserving"),
        "model2_preserving_score": extra.rejected_scores.get("preserving"),
        "judgement_id": row["judgement_id"],
        "task_id": row["task_id"],
        "split": row["split"],
        "category": row["category"],
        "round": row["round"],
        "variant1_id": row["chosen_variant_id"],
        "variant2_id": row["rejected_variant_id"],
        "margin": row["margin"],
        **_provenance(row),
    }


@dataclass(frozen=True)
class LayoutSpec:
    columns: list[tuple[str, str]]
    item: Callable[[dict], dict]  # a kind's row → the layout's item (images still refs)
    folder: str  # where the split files go in the archive ("" = its root)
    split_names: dict[str, str]  # our split → the file's stem
    image_base: str  # image paths are written relative to this folder of the archive


LAYOUT_SPECS = {
    # ImageReward's config.yaml: data_base "dataset", image_base "images"; make_dataset.py
    # makes the splits "train", "valid" and "test".
    "imagereward": LayoutSpec(
        IMAGEREWARD_COLUMNS,
        _imagereward_item,
        "dataset",
        {"train": "train", "val": "valid", "test": "test"},
        "images/",
    ),
    # EditReward opens path_src / path1 / path2 as given (os.path.exists): relative to the
    # unzipped archive, the folder its trainer runs in.
    "editreward": LayoutSpec(
        EDITREWARD_COLUMNS,
        _editreward_item,
        "",
        {"train": "train", "val": "val", "test": "test"},
        "",
    ),
}


def table_columns(kind: str, layout: str = "default") -> list[tuple[str, str]]:
    """The (name, type) columns the tables of ``kind`` in ``layout`` have, in order."""
    if layout != "default":
        return LAYOUT_SPECS[layout].columns
    return COLUMNS[kind]


class LayoutTable:
    """A kind's rows turned into a layout's items, written as one JSON array per split."""

    def __init__(self, spec: LayoutSpec, path: Path, sink: ImageSink) -> None:
        self.item = spec.item
        self.table = JsonArrayTable(path, spec.columns, sink, "path", spec.image_base)
        self.path = path

    def write(self, row: dict) -> None:
        self.table.write(self.item(row))

    def close(self) -> None:
        self.table.close()


@dataclass
class WriteResult:
    counts: dict[str, int]
    simulated_rows: int
    images_stored: int
    tables: list[str]  # data files relative to the output directory, in archive order
    seconds: float
    label_rows: dict[str, int] = field(default_factory=lambda: {"human": 0, "model": 0})


def write_tables(
    rows: Iterable[dict],
    kind: str,
    fmt: str,
    images: str,
    out_dir: Path,
    media_root: Path,
    on_progress: Progress | None = None,
    *,
    layout: str = "default",
    binary_images: bool = False,
) -> WriteResult:
    """Write ``rows`` (plain dicts with ``split``) as one table per split under ``out_dir``;
    images as ``images/<sha>.<ext>`` there when ``images == "files"``. For ``hf`` the
    tables become a ``datasets.DatasetDict`` saved in ``out_dir``. A ``layout`` other than
    default writes that project's JSON files instead (``fmt`` is then ignored)."""
    started = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sink = ImageSink(images, media_root, out_dir)
    tables = _open_tables(kind, fmt, out_dir, sink, layout, binary_images)
    counts = dict.fromkeys(SPLITS, 0)
    labelled = {"human": 0, "model": 0}
    simulated, written, key = 0, 0, PROGRESS_KEY[kind]
    try:
        for row in rows:
            tables[row["split"]].write(row)
            counts[row["split"]] += 1
            simulated += row["simulated"] is True or (
                isinstance(row["simulated"], list) and any(row["simulated"])
            )
            labelled[row.get("label_source", "human")] += 1
            written += 1
            if on_progress and written % PROGRESS_EVERY == 0:
                on_progress("rows", written, row[key])
    finally:
        for table in tables.values():
            table.close()
    if on_progress:
        on_progress("rows", written, None)
    if fmt == "hf" and layout == "default":
        staging = out_dir / "_arrow"
        names = save_hf_dataset({s: t.path for s, t in tables.items()}, out_dir)
        shutil.rmtree(staging)
    else:
        names = [str(tables[split].path.relative_to(out_dir)) for split in SPLITS]
    return WriteResult(
        counts, simulated, len(sink.paths), names, time.monotonic() - started, labelled
    )


def _open_tables(
    kind: str, fmt: str, out_dir: Path, sink: ImageSink, layout: str, binary_images: bool
) -> dict[str, Any]:
    if layout != "default":
        spec = LAYOUT_SPECS[layout]
        folder = out_dir / spec.folder
        folder.mkdir(parents=True, exist_ok=True)
        return {
            split: LayoutTable(spec, folder / f"{spec.split_names[split]}.json", sink)
            for split in SPLITS
        }
    staging = out_dir / "_arrow" if fmt == "hf" else out_dir
    staging.mkdir(exist_ok=True)
    cell = image_cell(fmt, sink.mode, binary_images)
    return {split: open_table(staging / split, fmt, COLUMNS[kind], sink, cell) for split in SPLITS}


def save_hf_dataset(arrow_files: dict[str, Path], out_dir: Path) -> list[str]:
    """The per-split Arrow streams (features in their schema metadata) as a DatasetDict
    saved with ``save_to_disk``; returns its Arrow data files (relative, sorted)."""
    import datasets

    dataset = datasets.DatasetDict(
        {split: datasets.Dataset.from_file(str(path)) for split, path in arrow_files.items()}
    )
    # An empty split would be saved as no shard at all, which load_from_disk refuses.
    empty = {split: 1 for split, found in dataset.items() if len(found) == 0}
    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the job reports its own progress
    try:
        dataset.save_to_disk(str(out_dir), num_shards=empty)
    finally:
        if shown:
            datasets.enable_progress_bars()
    del dataset
    return sorted(
        str(path.relative_to(out_dir))
        for split in arrow_files
        for path in (out_dir / split).glob("*.arrow")
    )
