"""Preference datasets out of Postgres, in the formats the field already reads.

Plain functions, no Django: the glue (annotation/export_runs.py) hands in a way to run a
query on a server-side cursor, and these functions turn the rows it streams into tables.

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

Labels: people's judgements (``human``, the default), a reward-model version's scores for
the tasks nobody judged (``model``: HP-Edit's scorer-labelled preference set; pairs closer
than the version's val-calibrated ε are ties), or both; every pairs / rankings / dpo row
says which (``label_source``, ``reward_version``, ``score_margin``).

Formats: JSON lines, Parquet (row groups of a fixed schema, Hugging Face feature metadata)
and a ``datasets`` directory (``DatasetDict.save_to_disk``). Embedded images are the HF
Image feature, except in ``dpo`` where they are plain binary columns as in Pick-a-Pic v2
(what the diffusers Diffusion-DPO script opens with ``Image.open(io.BytesIO(cell))``;
``image_feature`` brings the Image feature back). Images are embedded or written once as
``images/<sha256>.<ext>`` beside the tables. Layouts write what another project's own
trainer reads: ``imagereward`` (rankings: ImageReward's ``train/src/rank_pair_dataset.py``)
and ``editreward`` (pairs: TIGER-Lab EditReward's ``train.json``). The archive (zip) holds
a table per split and ``manifest.json``. Memory stays flat in the number of rows: rows
stream from a server-side cursor straight into the writers, which keep at most one batch.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

SCHEMA_VERSION = 1
KINDS = ("pairs", "rankings", "scores", "dpo")
FORMATS = ("jsonl", "parquet", "hf")
IMAGE_MODES = ("embed", "files")
SPLITS = ("train", "val", "test")
# Who labelled a row: people, a reward-model version, or both (model rows only for the
# tasks nobody judged).
LABEL_SOURCES = ("human", "model", "both")
LABELLED_KINDS = ("pairs", "rankings", "dpo")
# Table layouts another project's training code reads unchanged, and the kind each is for.
LAYOUTS = ("default", "imagereward", "editreward")
LAYOUT_KIND = {"imagereward": "rankings", "editreward": "pairs"}
REQUEST_FIELDS = {
    "kind", "format", "images", "filters", "aspect_pairs", "include_ties", "layout",
    "labels", "reward_version", "image_feature",
}
FILTER_FIELDS = {
    "rounds", "generators", "since", "until", "exclude_simulated", "exclude_gold",
    "exclude_unsure", "min_agreement",
}

# Rows per Parquet row group / Arrow record batch, and the embedded image bytes that close
# a batch early: the bound on what a writer holds at once.
BATCH_ROWS = 10_000
BATCH_IMAGE_BYTES = 32 * 1024 * 1024
PROGRESS_EVERY = 2_000

# A query runner: (sql, params) → the rows of a server-side cursor, as tuples.
RunQuery = Callable[[str, dict], Iterable[tuple]]
# (phase, done, key): phase "rows" (done = rows written, key = the row's ordering key) or
# "archive" (done = bytes archived, key = total bytes).
Progress = Callable[[str, int, int | None], None]


class ExportInvalid(ValueError):
    """A request that names wrong fields: ``errors`` is field → messages, DRF style
    (filters nest: ``{"filters": {"min_agreement": [...]}}``)."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(json.dumps(errors))
        self.errors = errors


# --- what to export ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportFilters:
    """Which judgements an export takes (the project is always given separately)."""

    rounds: tuple[int, ...] = ()
    generators: tuple[str, ...] = ()
    since: datetime | None = None  # judgement created_at >= since
    until: datetime | None = None  # judgement created_at < until
    exclude_simulated: bool = False
    exclude_gold: bool = False
    exclude_unsure: bool = False
    # Keep only tasks whose annotators agree this much: tie-aware pairwise agreement over
    # every pair of their judgements (see agreement_cte); tasks judged once have none.
    min_agreement: float | None = None

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["rounds"], values["generators"] = list(self.rounds), list(self.generators)
        for name in ("since", "until"):
            values[name] = values[name].isoformat() if values[name] else None
        return values


@dataclass(frozen=True)
class ExportRequest:
    kind: str
    format: str = "jsonl"
    images: str = "files"
    filters: ExportFilters = field(default_factory=ExportFilters)
    aspect_pairs: bool = False  # pairs: also one row per aspect from the scores
    # dpo: tied pairs with labels 0.5 / 0.5; editreward: tied pairs with tie_case true
    include_ties: bool = True
    layout: str = "default"
    labels: str = "human"
    reward_version: int | None = None  # a RewardModelVersion id (labels model / both)
    image_feature: bool = False  # dpo: embedded images as the HF Image feature, not bytes

    @property
    def options(self) -> dict[str, Any]:
        """The kind's options, and the newer ones only when they are not the default (an
        export that uses none of them records what it always did)."""
        options: dict[str, Any] = {}
        if self.kind == "pairs":
            options["aspect_pairs"] = self.aspect_pairs
        if self.kind == "dpo" or self.layout == "editreward":
            options["include_ties"] = self.include_ties
        if self.image_feature:
            options["image_feature"] = True
        if self.layout != "default":
            options["layout"] = self.layout
        if self.labels != "human":
            options["labels"] = self.labels
            options["reward_version"] = self.reward_version
        return options

    @property
    def binary_images(self) -> bool:
        """Pick-a-Pic v2 stores jpg_0 / jpg_1 as plain binary columns, and the diffusers
        Diffusion-DPO script reads them so: ``Image.open(io.BytesIO(cell))``."""
        return self.kind == "dpo" and not self.image_feature

    @property
    def columns(self) -> list[tuple[str, str]]:
        if self.layout != "default":
            return LAYOUT_SPECS[self.layout].columns
        return COLUMNS[self.kind]


def parse_request(data: object) -> ExportRequest:
    """An API body / admin form / command line → ExportRequest, or ExportInvalid naming
    every wrong field."""
    if not isinstance(data, dict):
        raise ExportInvalid({"non_field_errors": ["the body must be a JSON object"]})
    errors: dict[str, Any] = {}
    for name in sorted(set(data) - REQUEST_FIELDS):
        errors[name] = [f"unknown field; known: {', '.join(sorted(REQUEST_FIELDS))}"]
    kind = _choice(data, "kind", KINDS, None, errors)
    fmt = _choice(data, "format", FORMATS, "jsonl", errors)
    images = _choice(data, "images", IMAGE_MODES, "embed" if fmt == "hf" else "files", errors)
    if fmt == "hf" and images == "files":
        errors["images"] = [
            "the hf format keeps images inside the dataset (an Image feature): use 'embed'"
        ]
    layout = _choice(data, "layout", LAYOUTS, "default", errors)
    aspect_pairs = _boolean(data, "aspect_pairs", False, errors)
    # EditReward's trainer takes path1 as preferred in every row: ties only when asked.
    include_ties = _boolean(data, "include_ties", layout != "editreward", errors)
    if aspect_pairs and kind not in (None, "pairs"):
        errors["aspect_pairs"] = ["only the pairs kind has aspect pairs"]
    if "include_ties" in data and kind not in (None, "dpo") and layout != "editreward":
        errors["include_ties"] = [
            "only the dpo kind (and the editreward layout) takes include_ties"
        ]
    _check_layout(data, layout, kind, fmt, images, aspect_pairs, errors)
    image_feature = _boolean(data, "image_feature", False, errors)
    if image_feature and kind not in (None, "dpo"):
        errors["image_feature"] = [
            "only the dpo kind stores images as plain bytes; the other kinds always use the "
            "Image feature"
        ]
    elif image_feature and (fmt == "jsonl" or images != "embed"):
        errors["image_feature"] = ["the Image feature is for embedded images in parquet or hf"]
    labels = _choice(data, "labels", LABEL_SOURCES, "human", errors)
    if labels not in (None, "human") and kind not in (None, *LABELLED_KINDS):
        errors["labels"] = [
            f"the {kind} kind holds people's scores only; model labels are for "
            f"{', '.join(LABELLED_KINDS)}"
        ]
    reward_version = _reward_version(data, labels, errors)
    try:
        raw = data.get("filters")
        filters = parse_filters({} if raw is None else raw)
    except ExportInvalid as invalid:
        errors["filters"] = invalid.errors
        filters = ExportFilters()
    if errors:
        raise ExportInvalid(errors)
    return ExportRequest(
        kind, fmt, images, filters, aspect_pairs, include_ties, layout, labels,
        reward_version, image_feature,
    )


def _check_layout(
    data: dict, layout: str, kind: str | None, fmt: str, images: str, aspect_pairs: bool,
    errors: dict,
) -> None:
    """A layout is another project's own files: JSON with image paths, for one kind."""
    if layout in (None, "default") or layout not in LAYOUTS:
        return
    wanted = LAYOUT_KIND[layout]
    if kind is not None and kind != wanted:
        errors["layout"] = [f"the {layout} layout is for the {wanted} kind, not {kind}"]
    if "format" in data and fmt != "jsonl":
        errors["format"] = [f"the {layout} layout writes its own JSON files: leave format out"]
    if images != "files":
        errors["images"] = [f"the {layout} layout points at image files: use 'files'"]
    if aspect_pairs:
        errors["aspect_pairs"] = [f"the {layout} layout holds the overall preference only"]


def _reward_version(data: dict, labels: str | None, errors: dict) -> int | None:
    """The shape only; the glue checks that the version exists and is the project's."""
    value = data.get("reward_version")
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        errors["reward_version"] = ["the id of a reward-model version (an integer)"]
        return None
    if labels == "human":
        errors["reward_version"] = ["only with labels 'model' or 'both'"]
        return None
    return value


def parse_filters(data: object) -> ExportFilters:
    if not isinstance(data, dict):
        raise ExportInvalid({"non_field_errors": ["filters must be an object"]})
    errors: dict[str, list[str]] = {}
    for name in sorted(set(data) - FILTER_FIELDS):
        errors[name] = [f"unknown filter; known: {', '.join(sorted(FILTER_FIELDS))}"]
    rounds = data.get("rounds") or []
    if not isinstance(rounds, list) or not all(_is_int(r) and r >= 1 for r in rounds):
        errors["rounds"] = ["a list of round numbers (1, 2, ...)"]
        rounds = []
    generators = data.get("generators") or []
    if not isinstance(generators, list) or not all(isinstance(g, str) and g for g in generators):
        errors["generators"] = ["a list of generator names"]
        generators = []
    since = _moment(data, "since", errors, end_of_day=False)
    until = _moment(data, "until", errors, end_of_day=True)
    if since and until and since >= until:
        errors["until"] = ["must be later than since"]
    flags = {
        name: _boolean(data, name, False, errors)
        for name in ("exclude_simulated", "exclude_gold", "exclude_unsure")
    }
    agreement = data.get("min_agreement")
    if agreement is not None and (
        isinstance(agreement, bool)
        or not isinstance(agreement, int | float)
        or not 0 <= agreement <= 1
    ):
        errors["min_agreement"] = ["a number from 0 to 1 (or null for no minimum)"]
        agreement = None
    if errors:
        raise ExportInvalid(errors)
    return ExportFilters(
        rounds=tuple(sorted(set(rounds))),
        generators=tuple(sorted(set(generators))),
        since=since,
        until=until,
        min_agreement=None if agreement is None else float(agreement),
        **flags,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _choice(data: dict, name: str, allowed: tuple, default: str | None, errors: dict) -> str:
    value = data.get(name, default)
    if value is None:
        errors[name] = [f"required: one of {', '.join(allowed)}"]
    elif value not in allowed:
        errors[name] = [f"{value!r} is not one of {', '.join(allowed)}"]
    return value


def _boolean(data: dict, name: str, default: bool, errors: dict) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        errors[name] = ["must be true or false"]
        return default
    return value


def _moment(data: dict, name: str, errors: dict, *, end_of_day: bool) -> datetime | None:
    """An ISO date or date-time; a bare date as ``until`` means the end of that day (UTC),
    as ``since`` its start; a date-time without an offset is UTC."""
    raw = data.get(name)
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        errors[name] = ["an ISO 8601 date or date-time, e.g. 2026-11-01 or 2026-11-01T12:00Z"]
        return None
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end_of_day else moment
        moment = datetime.fromisoformat(raw)
    except ValueError:
        errors[name] = [f"{raw!r} is not an ISO 8601 date or date-time"]
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


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
    ("judgement_id", "int"), ("task_id", "int"), ("split", "str"), ("instruction", "str"),
    ("category", "str"), ("round", "int"), ("source", "image"), ("chosen", "image"),
    ("rejected", "image"), ("chosen_variant_id", "int"), ("rejected_variant_id", "int"),
    ("chosen_generator", "str"), ("rejected_generator", "str"), ("aspect", "str"),
    ("margin", "float"), ("annotator", "str"), ("simulated", "bool"), ("unsure", "bool"),
    ("created_at", "time"), *LABEL_COLUMNS,
]
DPO_COLUMNS = [
    ("ranking_id", "int"), ("task_id", "int"), ("split", "str"), ("caption", "str"),
    ("category", "str"), ("round", "int"), ("source", "image"), ("jpg_0", "image"),
    ("jpg_1", "image"), ("label_0", "float"), ("label_1", "float"), ("variant_0_id", "int"),
    ("variant_1_id", "int"), ("image_0_uid", "str"), ("image_1_uid", "str"),
    ("model_0", "str"), ("model_1", "str"), ("annotator", "str"), ("simulated", "bool"),
    ("unsure", "bool"), ("created_at", "time"), *LABEL_COLUMNS,
]
RANKING_COLUMNS = [
    ("id", "int"), ("task_id", "int"), ("split", "str"), ("instruction", "str"),
    ("category", "str"), ("round", "int"), ("source", "image"), ("generations", "images"),
    ("variant_ids", "ints"), ("generators", "strs"), ("ranking", "ints"), ("annotator", "str"),
    ("simulated", "bool"), ("unsure", "bool"), ("created_at", "time"), *LABEL_COLUMNS,
    ("model_scores", "floats"),
]
SCORE_COLUMNS = [
    ("variant_id", "int"), ("task_id", "int"), ("split", "str"), ("instruction", "str"),
    ("category", "str"), ("round", "int"), ("source", "image"), ("image", "image"),
    ("generator", "str"), ("aspect", "str"), ("values", "ints"), ("annotators", "strs"),
    ("judgement_ids", "ints"), ("simulated", "bools"), ("mean", "float"), ("median", "float"),
    ("count", "int"),
]
COLUMNS = {"pairs": PAIR_COLUMNS, "dpo": DPO_COLUMNS, "rankings": RANKING_COLUMNS,
           "scores": SCORE_COLUMNS}
# The column rows are ordered by, for progress reports.
PROGRESS_KEY = {"pairs": "judgement_id", "dpo": "ranking_id", "rankings": "id",
                "scores": "variant_id"}

# ImageReward's own trainer (THUDM/ImageReward train/src/rank_pair_dataset.py) json.loads
# <data_base>/<split>.json, one array of items, and reads item["prompt"],
# item["generations"] (paths joined onto <image_base>) and item["ranking"] (per generation,
# smaller = better; equal ranks are ties and give no pair). Its config names the folders
# dataset/ and images/ and make_dataset.py the splits train, valid, test. The rest are ours.
IMAGEREWARD_COLUMNS = [
    ("id", "int"), ("prompt", "str"), ("generations", "images"), ("ranking", "ints"),
    ("source", "image"), ("task_id", "int"), ("split", "str"), ("category", "str"),
    ("round", "int"), ("variant_ids", "ints"), ("generators", "strs"), ("annotator", "str"),
    ("simulated", "bool"), ("unsure", "bool"), ("created_at", "time"), *LABEL_COLUMNS,
    ("model_scores", "floats"),
]
# TIGER-Lab EditReward's pairwise training file (EditReward/TRAIN_README.md,
# dataset/pairwise_edit_dataset.py): a JSON array; path1 is always the preferred edit;
# model<n>_dim1_score is instruction following, model<n>_dim2_score visual quality (its
# prompts.py), model<n>_overall_score their sum (as in its README's examples); tie_case
# marks a tied pair. The dataset reads every key that starts with model<n>_dim or
# model<n>_overall, so our extra aspect is named model<n>_preserving_score.
EDITREWARD_COLUMNS = [
    ("prompt", "str"), ("choice_dist", "floats"), ("confidence", "float"),
    ("path_src", "image"), ("path1", "image"), ("path2", "image"), ("model1", "str"),
    ("model2", "str"), ("model1_dim1_score", "float"), ("model1_dim2_score", "float"),
    ("model1_overall_score", "float"), ("model2_dim1_score", "float"),
    ("model2_dim2_score", "float"), ("model2_overall_score", "float"), ("tie_case", "bool"),
    ("model1_preserving_score", "float"), ("model2_preserving_score", "float"),
    ("judgement_id", "int"), ("task_id", "int"), ("split", "str"), ("category", "str"),
    ("round", "int"), ("variant1_id", "int"), ("variant2_id", "int"), ("margin", "float"),
    ("annotator", "str"), ("simulated", "bool"), ("unsure", "bool"), ("created_at", "time"),
    *LABEL_COLUMNS,
]
# EditReward's two dimensions in our aspects (its dim1 = "Instruction Following & Semantic
# Fidelity", dim2 = "Visual Quality & Realism").
EDITREWARD_DIMENSIONS = {"dim1": "following", "dim2": "quality"}


# --- row queries ------------------------------------------------------------------------------

# A judgement's variants with their tier (1 = best), twice: x and y.
_TIERS = """
CROSS JOIN LATERAL jsonb_array_elements(j.ranking) WITH ORDINALITY AS xt(items, n)
CROSS JOIN LATERAL jsonb_array_elements_text(xt.items) AS x(variant)
CROSS JOIN LATERAL jsonb_array_elements(j.ranking) WITH ORDINALITY AS yt(items, n)
CROSS JOIN LATERAL jsonb_array_elements_text(yt.items) AS y(variant)"""

# Two variants of a pair (v0, v1) with their images.
_PAIR_IMAGES = """
JOIN annotation_variant v0 ON v0.id = {first}
JOIN annotation_image i0 ON i0.id = v0.image_id
JOIN annotation_variant v1 ON v1.id = {second}
JOIN annotation_image i1 ON i1.id = v1.image_id"""

_PAIR_SELECT = """
SELECT j.id, t.id, t.split, t.instruction, t.category, t.round, s.sha256, s.format, s.file,
       v0.id, i0.sha256, i0.format, i0.file, v0.generator,
       v1.id, i1.sha256, i1.format, i1.file, v1.generator,
       {aspect}, ({number})::float8, u.username, j.simulated, j.unsure, j.created_at{extra}"""

# EditReward's rows carry each variant's scores from the same judgement.
_PAIR_SCORES = ", j.scores -> v0.id::text, j.scores -> v1.id::text"

def judgement_conditions(filters: ExportFilters, params: dict) -> str:
    """SQL conditions on judgement ``j`` and task ``t`` for the filters; fills ``params``."""
    parts = []
    if filters.rounds:
        parts.append("t.round = ANY(%(rounds)s)")
        params["rounds"] = list(filters.rounds)
    if filters.exclude_gold:
        parts.append("NOT t.is_gold")
    if filters.exclude_simulated:
        parts.append("NOT j.simulated")
    if filters.exclude_unsure:
        parts.append("NOT j.unsure")
    if filters.since:
        parts.append("j.created_at >= %(since)s")
        params["since"] = filters.since
    if filters.until:
        parts.append("j.created_at < %(until)s")
        params["until"] = filters.until
    return "".join(f"\n  AND {part}" for part in parts)


def agreement_cte(conditions: str) -> str:
    """Per task, the tie-aware pairwise agreement of its judgements (those the other filters
    keep, never ``unsure`` ones): over every two judgements and every variant pair both
    rank, the share where they give the same relation (better, worse or tied; Deutsch et
    al. 2023, "Ties Matter"). The same figure as evaluation.agreement.task_agreement, in
    SQL so that it streams; a task judged once has no agreement and is left out."""
    return f"""WITH placed AS (
    SELECT j.id AS judgement, t.id AS task, e.value::bigint AS variant, r.n AS tier
    FROM annotation_judgement j
    JOIN annotation_assignment a ON a.id = j.assignment_id
    JOIN annotation_edittask t ON t.id = a.task_id
    CROSS JOIN LATERAL jsonb_array_elements(j.ranking) WITH ORDINALITY AS r(items, n)
    CROSS JOIN LATERAL jsonb_array_elements_text(r.items) AS e(value)
    WHERE t.project_id = %(project)s AND NOT j.unsure{conditions}
), relation AS (
    SELECT p.judgement, p.task, p.variant AS first, q.variant AS second,
           sign(q.tier - p.tier) AS relation
    FROM placed p JOIN placed q ON q.judgement = p.judgement AND p.variant < q.variant
), agreement AS (
    SELECT p.task, avg((p.relation = q.relation)::int) AS agreement
    FROM relation p
    JOIN relation q ON q.task = p.task AND q.first = p.first AND q.second = p.second
                   AND p.judgement < q.judgement
    GROUP BY p.task
)"""


def _judged(request: ExportRequest, project_id: int) -> tuple[str, str, dict]:
    """(WITH clause, FROM clause, params) for the project's judgements the filters keep,
    with their assignment ``a``, task ``t``, source image ``s`` and annotator ``u``.

    The judgements are picked by a narrow subquery that starts from the project's tasks and
    sorts only ids; the wide rows then follow in that order by primary key. Ordering the
    wide join itself by ``j.id`` would walk every judgement of every project."""
    params: dict[str, Any] = {"project": project_id}
    conditions = judgement_conditions(request.filters, params)
    with_clause = ""
    if request.filters.min_agreement is not None:
        params["min_agreement"] = request.filters.min_agreement
        with_clause = agreement_cte(conditions)
        conditions += (
            "\n  AND t.id IN (SELECT task FROM agreement WHERE agreement >= %(min_agreement)s)"
        )
    from_clause = f"""
FROM (
    SELECT j.id
    FROM annotation_edittask t
    JOIN annotation_assignment a ON a.task_id = t.id
    JOIN annotation_judgement j ON j.assignment_id = a.id
    WHERE t.project_id = %(project)s{conditions}
    ORDER BY j.id
    OFFSET 0
) AS picked
JOIN annotation_judgement j ON j.id = picked.id
JOIN annotation_assignment a ON a.id = j.assignment_id
JOIN annotation_edittask t ON t.id = a.task_id
JOIN annotation_image s ON s.id = t.source_id
JOIN auth_user u ON u.id = a.annotator_id"""
    return with_clause, from_clause, params


def _where(*conditions: str) -> str:
    kept = [condition for condition in conditions if condition]
    return "\nWHERE " + "\n  AND ".join(kept) if kept else ""


def _generators(columns: list[str], request: ExportRequest, params: dict) -> str:
    if not request.filters.generators:
        return ""
    params["generators"] = list(request.filters.generators)
    return " AND ".join(f"{column} = ANY(%(generators)s)" for column in columns)


def overall_pairs_sql(request: ExportRequest, project_id: int) -> tuple[str, dict]:
    """Non-tied pairs of each judgement's ranking: v0 chosen (better tier), v1 rejected;
    margin = how many tiers apart. The editreward layout adds both variants' scores and,
    with include_ties, the tied pairs (margin 0, lower variant id first)."""
    with_clause, from_clause, params = _judged(request, project_id)
    editreward = request.layout == "editreward"
    apart = (
        "(yt.n > xt.n OR (yt.n = xt.n AND x.variant::bigint < y.variant::bigint))"
        if editreward and request.include_ties
        else "yt.n > xt.n"
    )
    sql = (
        with_clause
        + _PAIR_SELECT.format(
            aspect="'overall'", number="yt.n - xt.n", extra=_PAIR_SCORES if editreward else ""
        )
        + from_clause
        + _TIERS
        + _PAIR_IMAGES.format(first="x.variant::bigint", second="y.variant::bigint")
        + _where(apart, _generators(["v0.generator", "v1.generator"], request, params))
        + "\nORDER BY j.id, xt.n, v0.id, yt.n, v1.id"
    )
    return sql, params


def aspect_pairs_sql(request: ExportRequest, project_id: int) -> tuple[str, dict]:
    """Per aspect, the pairs one annotator scored apart: v0 scored higher; margin = the
    score difference. Equal scores give no row."""
    with_clause, from_clause, params = _judged(request, project_id)
    sql = (
        with_clause
        + _PAIR_SELECT.format(aspect="sx.aspect", number="sx.value - sy.value", extra="")
        + from_clause
        + "\nJOIN annotation_aspectscore sx ON sx.judgement_id = j.id"
        + "\nJOIN annotation_aspectscore sy ON sy.judgement_id = j.id AND sy.aspect = sx.aspect"
        + " AND sy.value < sx.value"
        + _PAIR_IMAGES.format(first="sx.variant_id", second="sy.variant_id")
        + _where(_generators(["v0.generator", "v1.generator"], request, params))
        + "\nORDER BY j.id, sx.aspect, v0.id, v1.id"
    )
    return sql, params


def dpo_pairs_sql(request: ExportRequest, project_id: int) -> tuple[str, dict]:
    """Every pair of each judgement's ranking, lower variant id first (jpg_0); label_0 is 1
    when jpg_0 was ranked better, 0 when worse, 0.5 for a tie."""
    with_clause, from_clause, params = _judged(request, project_id)
    label = "CASE WHEN xt.n < yt.n THEN 1.0 WHEN xt.n > yt.n THEN 0.0 ELSE 0.5 END"
    sql = (
        with_clause
        + _PAIR_SELECT.format(aspect="'overall'", number=label, extra="")
        + from_clause
        + _TIERS
        + _PAIR_IMAGES.format(first="x.variant::bigint", second="y.variant::bigint")
        + _where(
            "x.variant::bigint < y.variant::bigint",
            "" if request.include_ties else "xt.n <> yt.n",
            _generators(["v0.generator", "v1.generator"], request, params),
        )
        + "\nORDER BY j.id, v0.id, v1.id"
    )
    return sql, params


def rankings_sql(request: ExportRequest, project_id: int) -> tuple[str, dict]:
    """Each judgement with its task's variants (by id) and the ranking it gave them."""
    with_clause, from_clause, params = _judged(request, project_id)
    generators = _generators(["v.generator"], request, params)
    sql = f"""{with_clause}
SELECT j.id, t.id, t.split, t.instruction, t.category, t.round, s.sha256, s.format, s.file,
       j.ranking, g.ids, g.shas, g.formats, g.files, g.generators,
       u.username, j.simulated, j.unsure, j.created_at{from_clause}
CROSS JOIN LATERAL (
    SELECT array_agg(v.id ORDER BY v.id) AS ids, array_agg(i.sha256 ORDER BY v.id) AS shas,
           array_agg(i.format ORDER BY v.id) AS formats, array_agg(i.file ORDER BY v.id) AS files,
           array_agg(v.generator ORDER BY v.id) AS generators
    FROM annotation_variant v JOIN annotation_image i ON i.id = v.image_id
    {_where("v.task_id = t.id", generators).strip()}
) g
WHERE cardinality(g.ids) >= 2
ORDER BY j.id"""
    return sql, params


def scores_sql(request: ExportRequest, project_id: int) -> tuple[str, dict]:
    """Per variant and aspect: the scores of the judgements the filters keep, in judgement
    order, with their mean, median and count."""
    with_clause, from_clause, params = _judged(request, project_id)
    sql = f"""{with_clause}
SELECT v.id, t.id, t.split, t.instruction, t.category, t.round, s.sha256, s.format, s.file,
       i.sha256, i.format, i.file, v.generator, sc.aspect,
       array_agg(sc.value ORDER BY j.id), array_agg(u.username ORDER BY j.id),
       array_agg(j.id ORDER BY j.id), array_agg(j.simulated ORDER BY j.id),
       avg(sc.value)::float8,
       (percentile_cont(0.5) WITHIN GROUP (ORDER BY sc.value))::float8, count(*){from_clause}
JOIN annotation_aspectscore sc ON sc.judgement_id = j.id
JOIN annotation_variant v ON v.id = sc.variant_id
JOIN annotation_image i ON i.id = v.image_id{_where(_generators(["v.generator"], request, params))}
GROUP BY v.id, t.id, s.id, i.id, sc.aspect
ORDER BY v.id, sc.aspect"""
    return sql, params


def key_range_sql(request: ExportRequest, project_id: int) -> tuple[str, dict]:
    """The smallest and largest ordering key (judgement or variant id): progress reports
    place the row being written between them. Leaves min_agreement out (a superset is
    enough for progress, and the agreement is worked out once, by the export itself)."""
    params: dict[str, Any] = {"project": project_id}
    conditions = judgement_conditions(request.filters, params)
    column = "sc.variant_id" if request.kind == "scores" else "j.id"
    join = (
        "\nJOIN annotation_aspectscore sc ON sc.judgement_id = j.id"
        if request.kind == "scores"
        else ""
    )
    sql = f"""
SELECT min({column}), max({column})
FROM annotation_edittask t
JOIN annotation_assignment a ON a.task_id = t.id
JOIN annotation_judgement j ON j.assignment_id = a.id{join}
WHERE t.project_id = %(project)s{conditions}"""
    return sql, params


def row_queries(request: ExportRequest, project_id: int) -> list[tuple[str, dict]]:
    """The queries whose rows, in this order, make the people-labelled part."""
    if request.kind == "pairs":
        queries = [overall_pairs_sql(request, project_id)]
        if request.aspect_pairs:
            queries.append(aspect_pairs_sql(request, project_id))
        return queries
    builder = {"dpo": dpo_pairs_sql, "rankings": rankings_sql, "scores": scores_sql}
    return [builder[request.kind](request, project_id)]


# Labels of people: no reward version, no score margin.
_HUMAN = {"label_source": "human", "reward_version": None, "score_margin": None}


def _pair_row(r: tuple) -> dict[str, Any]:
    row = {
        "judgement_id": r[0], "task_id": r[1], "split": r[2], "instruction": r[3],
        "category": r[4], "round": r[5], "source": ImageRef(r[6], r[7], r[8]),
        "chosen": ImageRef(r[10], r[11], r[12]), "rejected": ImageRef(r[15], r[16], r[17]),
        "chosen_variant_id": r[9], "rejected_variant_id": r[14],
        "chosen_generator": r[13], "rejected_generator": r[18], "aspect": r[19],
        "margin": r[20], "annotator": r[21], "simulated": r[22], "unsure": r[23],
        "created_at": r[24], **_HUMAN,
    }
    if len(r) > 25:  # the editreward layout: both variants' scores, and ties
        row["_extra"] = PairExtra(r[25] or {}, r[26] or {}, tie=r[20] == 0)
    return row


def _dpo_row(r: tuple) -> dict[str, Any]:
    return {
        "ranking_id": r[0], "task_id": r[1], "split": r[2], "caption": r[3], "category": r[4],
        "round": r[5], "source": ImageRef(r[6], r[7], r[8]),
        "jpg_0": ImageRef(r[10], r[11], r[12]), "jpg_1": ImageRef(r[15], r[16], r[17]),
        "label_0": r[20], "label_1": 1.0 - r[20], "variant_0_id": r[9], "variant_1_id": r[14],
        "image_0_uid": r[10], "image_1_uid": r[15], "model_0": r[13], "model_1": r[18],
        "annotator": r[21], "simulated": r[22], "unsure": r[23], "created_at": r[24],
        **_HUMAN,
    }


def ranks_of(ranking: list[list[int]], variant_ids: list[int]) -> list[int | None]:
    """ImageReward's ``ranking``: per variant (in the order given) its rank, 1 = best;
    tied variants share a rank; ranks are dense over the variants given (a generator
    filter can leave tiers out). None for a variant the ranking does not name."""
    tier_of = {variant: n for n, tier in enumerate(ranking) for variant in tier}
    present = sorted({tier_of[v] for v in variant_ids if v in tier_of})
    dense = {tier: rank for rank, tier in enumerate(present, start=1)}
    return [dense.get(tier_of.get(v)) for v in variant_ids]


def _ranking_row(r: tuple) -> dict[str, Any] | None:
    ranking = json.loads(r[9]) if isinstance(r[9], str) else r[9]
    ranks = ranks_of(ranking, r[10])
    keep = [n for n, rank in enumerate(ranks) if rank is not None]
    if len(keep) < 2:
        return None
    return {
        "id": r[0], "task_id": r[1], "split": r[2], "instruction": r[3], "category": r[4],
        "round": r[5], "source": ImageRef(r[6], r[7], r[8]),
        "generations": [ImageRef(r[11][n], r[12][n], r[13][n]) for n in keep],
        "variant_ids": [r[10][n] for n in keep], "generators": [r[14][n] for n in keep],
        "ranking": [ranks[n] for n in keep], "annotator": r[15], "simulated": r[16],
        "unsure": r[17], "created_at": r[18], **_HUMAN, "model_scores": None,
    }


def _score_row(r: tuple) -> dict[str, Any]:
    return {
        "variant_id": r[0], "task_id": r[1], "split": r[2], "instruction": r[3],
        "category": r[4], "round": r[5], "source": ImageRef(r[6], r[7], r[8]),
        "image": ImageRef(r[9], r[10], r[11]), "generator": r[12], "aspect": r[13],
        "values": r[14], "annotators": r[15], "judgement_ids": r[16], "simulated": r[17],
        "mean": r[18], "median": r[19], "count": r[20],
    }


ROW_MAKERS: dict[str, Callable[[tuple], dict | None]] = {
    "pairs": _pair_row, "dpo": _dpo_row, "rankings": _ranking_row, "scores": _score_row,
}


class PairExtra(NamedTuple):
    """What the editreward layout needs beyond a pair row: both variants' aspect scores
    (the annotator's, or the model's predictions) and whether the pair is a tie."""

    chosen_scores: dict
    rejected_scores: dict
    tie: bool


# --- model-labelled rows (HP-Edit: a scorer trained on the human set labels the rest) -------


@dataclass(frozen=True)
class ModelLabels:
    """The reward-model version whose scores label the tasks nobody judged."""

    version_id: int
    number: int
    # |Δ overall| <= epsilon is a tie: the threshold calibrated on val (Deutsch et al. 2023
    # §4), the same comparison the version's tie-aware accuracy used (evaluation/metrics.py).
    epsilon: float


def model_tasks_sql(
    request: ExportRequest, project_id: int, labels: ModelLabels
) -> tuple[str, dict]:
    """Per task that no judgement names (any judgement, whatever the filters keep: a task
    people judged is theirs), its variants that the version scored, by id. The task and
    variant filters apply (rounds, exclude_gold, generators); those on judgements cannot."""
    params: dict[str, Any] = {"project": project_id, "version": labels.version_id}
    conditions = []
    if request.filters.rounds:
        conditions.append("t.round = ANY(%(rounds)s)")
        params["rounds"] = list(request.filters.rounds)
    if request.filters.exclude_gold:
        conditions.append("NOT t.is_gold")
    generators = _generators(["v.generator"], request, params)
    sql = f"""
SELECT t.id, t.split, t.instruction, t.category, t.round, s.sha256, s.format, s.file,
       g.ids, g.shas, g.formats, g.files, g.generators, g.overall, g.aspects, g.scored_at
FROM annotation_edittask t
JOIN annotation_image s ON s.id = t.source_id
CROSS JOIN LATERAL (
    SELECT array_agg(v.id ORDER BY v.id) AS ids, array_agg(i.sha256 ORDER BY v.id) AS shas,
           array_agg(i.format ORDER BY v.id) AS formats, array_agg(i.file ORDER BY v.id) AS files,
           array_agg(v.generator ORDER BY v.id) AS generators,
           array_agg(sc.overall ORDER BY v.id) AS overall,
           array_agg(sc.aspects ORDER BY v.id) AS aspects, max(sc.created_at) AS scored_at
    FROM annotation_variant v
    JOIN annotation_image i ON i.id = v.image_id
    JOIN rewards_variantscore sc ON sc.variant_id = v.id AND sc.version_id = %(version)s
    {_where("v.task_id = t.id", generators).strip()}
) g
WHERE t.project_id = %(project)s
  AND cardinality(g.ids) >= 2
  AND NOT EXISTS (
    SELECT 1 FROM annotation_assignment a JOIN annotation_judgement j ON j.assignment_id = a.id
    WHERE a.task_id = t.id
  ){"".join(f"{chr(10)}  AND {c}" for c in conditions)}
ORDER BY t.id"""
    return sql, params


class ScoredTask(NamedTuple):
    """A task nobody judged, with its variants (by id) and the version's scores."""

    task_id: int
    split: str
    instruction: str
    category: str
    round: int
    source: ImageRef
    variant_ids: list[int]
    images: list[ImageRef]
    generators: list[str]
    overall: list[float]
    aspects: list[dict]
    scored_at: datetime

    @classmethod
    def of(cls, r: tuple) -> ScoredTask:
        images = [ImageRef(sha, fmt, path) for sha, fmt, path in zip(r[9], r[10], r[11],
                                                                      strict=True)]
        aspects = [json.loads(a) if isinstance(a, str) else (a or {}) for a in r[14]]
        return cls(r[0], r[1], r[2], r[3], r[4], ImageRef(r[5], r[6], r[7]), list(r[8]),
                   images, list(r[12]), [float(x) for x in r[13]], aspects, r[15])

    def common(self, labels: ModelLabels, margin: float | None) -> dict[str, Any]:
        return {"label_source": "model", "reward_version": labels.number,
                "score_margin": margin}


def model_ranks(scores: list[float], epsilon: float) -> list[int]:
    """ImageReward-style ranks (1 = best) from scores, ε-ties sharing a rank: best first,
    a score joins the current rank while it is within ε of that rank's best. Every two
    generations of one rank are then within ε of each other; two of neighbouring ranks can
    be too (ties are not transitive) — pairs and dpo compare each pair on its own."""
    order = sorted(range(len(scores)), key=lambda k: (-scores[k], k))
    ranks = [0] * len(scores)
    rank, best = 0, math.inf
    for k in order:
        if best - scores[k] > epsilon:
            rank, best = rank + 1, scores[k]
        ranks[k] = rank
    return ranks


def _model_pair_rows(
    task: ScoredTask, labels: ModelLabels, request: ExportRequest
) -> Iterator[dict]:
    """Each two scored variants further apart than ε, the higher-scored one chosen;
    margin and score_margin are the score difference. The editreward layout with
    include_ties also keeps the tied pairs (lower id as path1)."""
    with_ties = request.layout == "editreward" and request.include_ties
    for a in range(len(task.variant_ids)):
        for b in range(a + 1, len(task.variant_ids)):
            delta = task.overall[a] - task.overall[b]
            tie = abs(delta) <= labels.epsilon
            if tie and not with_ties:
                continue
            won, lost = (b, a) if delta < 0 and not tie else (a, b)
            row = {
                "judgement_id": None, "task_id": task.task_id, "split": task.split,
                "instruction": task.instruction, "category": task.category,
                "round": task.round, "source": task.source, "chosen": task.images[won],
                "rejected": task.images[lost], "chosen_variant_id": task.variant_ids[won],
                "rejected_variant_id": task.variant_ids[lost],
                "chosen_generator": task.generators[won],
                "rejected_generator": task.generators[lost], "aspect": "overall",
                "margin": abs(delta), "annotator": None, "simulated": False, "unsure": False,
                "created_at": task.scored_at, **task.common(labels, abs(delta)),
            }
            if request.layout == "editreward":
                row["_extra"] = PairExtra(task.aspects[won], task.aspects[lost], tie)
            yield row


def _model_dpo_rows(
    task: ScoredTask, labels: ModelLabels, request: ExportRequest
) -> Iterator[dict]:
    """Each two scored variants, lower id as jpg_0: label_0 1 when the model scored it
    more than ε higher, 0 when more than ε lower, 0.5 / 0.5 for a tie (left out without
    include_ties); score_margin = |Δ|."""
    for a in range(len(task.variant_ids)):
        for b in range(a + 1, len(task.variant_ids)):
            delta = task.overall[a] - task.overall[b]
            label = 0.5 if abs(delta) <= labels.epsilon else 1.0 if delta > 0 else 0.0
            if label == 0.5 and not request.include_ties:
                continue
            yield {
                "ranking_id": None, "task_id": task.task_id, "split": task.split,
                "caption": task.instruction, "category": task.category, "round": task.round,
                "source": task.source, "jpg_0": task.images[a], "jpg_1": task.images[b],
                "label_0": label, "label_1": 1.0 - label,
                "variant_0_id": task.variant_ids[a], "variant_1_id": task.variant_ids[b],
                "image_0_uid": task.images[a].sha256, "image_1_uid": task.images[b].sha256,
                "model_0": task.generators[a], "model_1": task.generators[b],
                "annotator": None, "simulated": False, "unsure": False,
                "created_at": task.scored_at, **task.common(labels, abs(delta)),
            }


def _model_ranking_rows(
    task: ScoredTask, labels: ModelLabels, request: ExportRequest
) -> Iterator[dict]:
    """The task's scored variants ranked by the model (ε-ties share a rank);
    score_margin = the smallest score gap between two differently ranked variants (null
    when the model ties them all)."""
    ranks = model_ranks(task.overall, labels.epsilon)
    ordered = sorted(range(len(ranks)), key=lambda k: (ranks[k], -task.overall[k]))
    gaps = [
        task.overall[high] - task.overall[low]
        for high, low in itertools.pairwise(ordered)
        if ranks[high] != ranks[low]
    ]
    yield {
        "id": None, "task_id": task.task_id, "split": task.split,
        "instruction": task.instruction, "category": task.category, "round": task.round,
        "source": task.source, "generations": task.images, "variant_ids": task.variant_ids,
        "generators": task.generators, "ranking": ranks, "annotator": None,
        "simulated": False, "unsure": False, "created_at": task.scored_at,
        **task.common(labels, min(gaps) if gaps else None), "model_scores": task.overall,
    }


MODEL_ROW_MAKERS = {
    "pairs": _model_pair_rows, "dpo": _model_dpo_rows, "rankings": _model_ranking_rows,
}


def model_rows(
    request: ExportRequest, project_id: int, labels: ModelLabels, run_query: RunQuery
) -> Iterator[dict]:
    make = MODEL_ROW_MAKERS[request.kind]
    for raw in run_query(*model_tasks_sql(request, project_id, labels)):
        yield from make(ScoredTask.of(raw), labels, request)


def export_rows(
    request: ExportRequest,
    project_id: int,
    run_query: RunQuery,
    labels: ModelLabels | None = None,
) -> Iterator[dict]:
    """The export's rows as plain dicts, streamed: ``run_query`` must fetch from a
    server-side cursor (the glue passes one) so no more than a fetch is ever in memory.
    People's rows first, then (labels model / both) the version's for the tasks nobody
    judged."""
    if request.labels in ("human", "both"):
        make = ROW_MAKERS[request.kind]
        for sql, params in row_queries(request, project_id):
            for raw in run_query(sql, params):
                row = make(raw)
                if row is not None:
                    yield row
    if request.labels in ("model", "both"):
        if labels is None:
            raise ValueError(f"labels {request.labels!r} needs the reward version's ModelLabels")
        yield from model_rows(request, project_id, labels, run_query)


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
    columns: list[tuple[str, str]], cell: str, sink: ImageSink, *, as_json: bool,
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
        self.handle = open(path, "w", encoding="ascii")  # noqa: SIM115  (closed in close())
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


def arrow_type(kind: str, cell: str):  # noqa: ANN201  (a pyarrow DataType)
    import pyarrow as pa

    image = {
        "struct": pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
        "binary": pa.binary(),
    }.get(cell, pa.string())
    return {
        "int": pa.int64(), "float": pa.float64(), "str": pa.string(), "bool": pa.bool_(),
        "time": pa.timestamp("us", tz="UTC"), "image": image, "images": pa.list_(image),
        "ints": pa.list_(pa.int64()), "floats": pa.list_(pa.float64()),
        "strs": pa.list_(pa.string()), "bools": pa.list_(pa.bool_()),
    }[kind]


def hf_feature(kind: str, cell: str) -> dict:
    """The column's Hugging Face ``datasets`` feature, as datasets (>= 4) writes it into
    an Arrow / Parquet schema's ``huggingface`` metadata."""
    def value(dtype: str) -> dict:
        return {"dtype": dtype, "_type": "Value"}

    image = {"struct": {"_type": "Image"}, "binary": value("binary")}.get(cell, value("string"))
    return {
        "int": value("int64"), "float": value("float64"), "str": value("string"),
        "bool": value("bool"), "time": value("timestamp[us, tz=UTC]"), "image": image,
        "images": {"feature": image, "_type": "List"},
        "ints": {"feature": value("int64"), "_type": "List"},
        "floats": {"feature": value("float64"), "_type": "List"},
        "strs": {"feature": value("string"), "_type": "List"},
        "bools": {"feature": value("bool"), "_type": "List"},
    }[kind]


def arrow_schema(columns: list[tuple[str, str]], cell: str):  # noqa: ANN201
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
        arrays = [
            pa.array(self.buffer[f.name], type=f.type) for f in self.schema
        ]
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


def _imagereward_item(row: dict) -> dict:
    """A rankings row as ImageReward's item: ``prompt`` is the instruction."""
    return {
        "id": row["id"], "prompt": row["instruction"], "generations": row["generations"],
        "ranking": row["ranking"], "source": row["source"], "task_id": row["task_id"],
        "split": row["split"], "category": row["category"], "round": row["round"],
        "variant_ids": row["variant_ids"], "generators": row["generators"],
        "annotator": row["annotator"], "simulated": row["simulated"], "unsure": row["unsure"],
        "created_at": row["created_at"], "label_source": row["label_source"],
        "reward_version": row["reward_version"], "score_margin": row["score_margin"],
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
    first, second = editreward_scores(extra.chosen_scores), editreward_scores(
        extra.rejected_scores
    )
    return {
        "prompt": row["instruction"], "choice_dist": None, "confidence": None,
        "path_src": row["source"], "path1": row["chosen"], "path2": row["rejected"],
        "model1": row["chosen_generator"], "model2": row["rejected_generator"],
        "model1_dim1_score": first[0], "model1_dim2_score": first[1],
        "model1_overall_score": first[2], "model2_dim1_score": second[0],
        "model2_dim2_score": second[1], "model2_overall_score": second[2],
        "tie_case": extra.tie,
        "model1_preserving_score": extra.chosen_scores.get("preserving"),
        "model2_preserving_score": extra.rejected_scores.get("preserving"),
        "judgement_id": row["judgement_id"], "task_id": row["task_id"], "split": row["split"],
        "category": row["category"], "round": row["round"],
        "variant1_id": row["chosen_variant_id"], "variant2_id": row["rejected_variant_id"],
        "margin": row["margin"], "annotator": row["annotator"], "simulated": row["simulated"],
        "unsure": row["unsure"], "created_at": row["created_at"],
        "label_source": row["label_source"], "reward_version": row["reward_version"],
        "score_margin": row["score_margin"],
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
        IMAGEREWARD_COLUMNS, _imagereward_item, "dataset",
        {"train": "train", "val": "valid", "test": "test"}, "images/",
    ),
    # EditReward opens path_src / path1 / path2 as given (os.path.exists): relative to the
    # unzipped archive, the folder its trainer runs in.
    "editreward": LayoutSpec(
        EDITREWARD_COLUMNS, _editreward_item, "",
        {"train": "train", "val": "val", "test": "test"}, "",
    ),
}


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
    return {
        split: open_table(staging / split, fmt, COLUMNS[kind], sink, cell) for split in SPLITS
    }


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


# --- the archive and its manifest ----------------------------------------------------------


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
        if path.is_file() and not path.is_relative_to(image_dir)
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
        "columns": [{"name": name, "type": kind} for name, kind in request.columns],
        "files": archived.files,
        "image_files": archived.images,
        "content_sha256": archived.content_sha256,
        "created_at": created_at.isoformat(),
        "editloop_version": version,
    }


# The training code each table was checked against (tests/annotation/test_export_consumers.py).
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
        request.format != "parquet" or image_cell(
            request.format, request.images, request.binary_images) != "binary"
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
        f"{rows} row(s) come from simulated annotators (evaluation/simulated.py), not "
        f"people: column {column} marks them; export with exclude_simulated to leave them out"
    )


def fraction_done(key: int, low: int | None, high: int | None) -> float:
    """Where ordering key ``key`` sits between ``low`` and ``high`` (0..1)."""
    if low is None or high is None or high <= low:
        return 1.0
    return min(1.0, max(0.0, (key - low) / (high - low)))


def human_bytes(size: int | None) -> str:
    if not size:
        return "0 B"
    power = min(int(math.log(size, 1024)), 4)
    return f"{size / 1024**power:.1f} {['B', 'KB', 'MB', 'GB', 'TB'][power]}"
