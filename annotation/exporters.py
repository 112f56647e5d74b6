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

Formats: JSON lines, Parquet (row groups of a fixed schema, Hugging Face feature metadata
so ``datasets`` decodes the image columns) and a ``datasets`` directory
(``DatasetDict.save_to_disk``, Image features). Images are embedded or written once as
``images/<sha256>.<ext>`` beside the tables. The archive (zip) holds a table per split
and ``manifest.json``. Memory stays flat in the number of rows: rows stream from a
server-side cursor straight into the writers, which keep at most one batch.
"""

from __future__ import annotations

import base64
import hashlib
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
REQUEST_FIELDS = {"kind", "format", "images", "filters", "aspect_pairs", "include_ties"}
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
    include_ties: bool = True  # dpo: tied pairs with labels 0.5 / 0.5

    @property
    def options(self) -> dict[str, bool]:
        if self.kind == "pairs":
            return {"aspect_pairs": self.aspect_pairs}
        if self.kind == "dpo":
            return {"include_ties": self.include_ties}
        return {}


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
    aspect_pairs = _boolean(data, "aspect_pairs", False, errors)
    include_ties = _boolean(data, "include_ties", True, errors)
    if aspect_pairs and kind not in (None, "pairs"):
        errors["aspect_pairs"] = ["only the pairs kind has aspect pairs"]
    if "include_ties" in data and kind not in (None, "dpo"):
        errors["include_ties"] = ["only the dpo kind takes include_ties"]
    try:
        raw = data.get("filters")
        filters = parse_filters({} if raw is None else raw)
    except ExportInvalid as invalid:
        errors["filters"] = invalid.errors
        filters = ExportFilters()
    if errors:
        raise ExportInvalid(errors)
    return ExportRequest(kind, fmt, images, filters, aspect_pairs, include_ties)


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


# Column types: int float str bool time image | images ints strs bools (lists).
PAIR_COLUMNS = [
    ("judgement_id", "int"), ("task_id", "int"), ("split", "str"), ("instruction", "str"),
    ("category", "str"), ("round", "int"), ("source", "image"), ("chosen", "image"),
    ("rejected", "image"), ("chosen_variant_id", "int"), ("rejected_variant_id", "int"),
    ("chosen_generator", "str"), ("rejected_generator", "str"), ("aspect", "str"),
    ("margin", "float"), ("annotator", "str"), ("simulated", "bool"), ("unsure", "bool"),
    ("created_at", "time"),
]
DPO_COLUMNS = [
    ("ranking_id", "int"), ("task_id", "int"), ("split", "str"), ("caption", "str"),
    ("category", "str"), ("round", "int"), ("source", "image"), ("jpg_0", "image"),
    ("jpg_1", "image"), ("label_0", "float"), ("label_1", "float"), ("variant_0_id", "int"),
    ("variant_1_id", "int"), ("image_0_uid", "str"), ("image_1_uid", "str"),
    ("model_0", "str"), ("model_1", "str"), ("annotator", "str"), ("simulated", "bool"),
    ("unsure", "bool"), ("created_at", "time"),
]
RANKING_COLUMNS = [
    ("id", "int"), ("task_id", "int"), ("split", "str"), ("instruction", "str"),
    ("category", "str"), ("round", "int"), ("source", "image"), ("generations", "images"),
    ("variant_ids", "ints"), ("generators", "strs"), ("ranking", "ints"), ("annotator", "str"),
    ("simulated", "bool"), ("unsure", "bool"), ("created_at", "time"),
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
       {aspect}, ({number})::float8, u.username, j.simulated, j.unsure, j.created_at"""

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
    margin = how many tiers apart."""
    with_clause, from_clause, params = _judged(request, project_id)
    sql = (
        with_clause
        + _PAIR_SELECT.format(aspect="'overall'", number="yt.n - xt.n")
        + from_clause
        + _TIERS
        + _PAIR_IMAGES.format(first="x.variant::bigint", second="y.variant::bigint")
        + _where("yt.n > xt.n", _generators(["v0.generator", "v1.generator"], request, params))
        + "\nORDER BY j.id, xt.n, v0.id, yt.n, v1.id"
    )
    return sql, params


def aspect_pairs_sql(request: ExportRequest, project_id: int) -> tuple[str, dict]:
    """Per aspect, the pairs one annotator scored apart: v0 scored higher; margin = the
    score difference. Equal scores give no row."""
    with_clause, from_clause, params = _judged(request, project_id)
    sql = (
        with_clause
        + _PAIR_SELECT.format(aspect="sx.aspect", number="sx.value - sy.value")
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
        + _PAIR_SELECT.format(aspect="'overall'", number=label)
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
    """The queries whose rows, in this order, make the export."""
    if request.kind == "pairs":
        queries = [overall_pairs_sql(request, project_id)]
        if request.aspect_pairs:
            queries.append(aspect_pairs_sql(request, project_id))
        return queries
    builder = {"dpo": dpo_pairs_sql, "rankings": rankings_sql, "scores": scores_sql}
    return [builder[request.kind](request, project_id)]


def _pair_row(r: tuple) -> dict[str, Any]:
    return {
        "judgement_id": r[0], "task_id": r[1], "split": r[2], "instruction": r[3],
        "category": r[4], "round": r[5], "source": ImageRef(r[6], r[7], r[8]),
        "chosen": ImageRef(r[10], r[11], r[12]), "rejected": ImageRef(r[15], r[16], r[17]),
        "chosen_variant_id": r[9], "rejected_variant_id": r[14],
        "chosen_generator": r[13], "rejected_generator": r[18], "aspect": r[19],
        "margin": r[20], "annotator": r[21], "simulated": r[22], "unsure": r[23],
        "created_at": r[24],
    }


def _dpo_row(r: tuple) -> dict[str, Any]:
    return {
        "ranking_id": r[0], "task_id": r[1], "split": r[2], "caption": r[3], "category": r[4],
        "round": r[5], "source": ImageRef(r[6], r[7], r[8]),
        "jpg_0": ImageRef(r[10], r[11], r[12]), "jpg_1": ImageRef(r[15], r[16], r[17]),
        "label_0": r[20], "label_1": 1.0 - r[20], "variant_0_id": r[9], "variant_1_id": r[14],
        "image_0_uid": r[10], "image_1_uid": r[15], "model_0": r[13], "model_1": r[18],
        "annotator": r[21], "simulated": r[22], "unsure": r[23], "created_at": r[24],
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
        "unsure": r[17], "created_at": r[18],
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


def export_rows(request: ExportRequest, project_id: int, run_query: RunQuery) -> Iterator[dict]:
    """The export's rows as plain dicts, streamed: ``run_query`` must fetch from a
    server-side cursor (the glue passes one) so no more than a fetch is ever in memory."""
    make = ROW_MAKERS[request.kind]
    for sql, params in row_queries(request, project_id):
        for raw in run_query(sql, params):
            row = make(raw)
            if row is not None:
                yield row


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


def _cell_converters(
    columns: list[tuple[str, str]], target: str, sink: ImageSink
) -> list[tuple[str, Callable[[Any], Any] | None]]:
    """Per column, how a row value becomes a cell of the target ("json" or "arrow")."""
    if sink.mode == "files":
        image: Callable[[ImageRef], Any] = sink.path
    elif target == "json":
        def image(ref: ImageRef) -> str:
            return base64.b64encode(sink.read(ref)).decode("ascii")
    else:
        def image(ref: ImageRef) -> dict:
            return {"bytes": sink.read(ref), "path": ref.name}

    def images(refs: list[ImageRef]) -> list:
        return [image(ref) for ref in refs]

    def moment(value: datetime) -> str:
        return value.isoformat()

    by_type = {"image": image, "images": images, "time": moment if target == "json" else None}
    return [(name, by_type.get(kind)) for name, kind in columns]


class JsonlTable:
    """One JSON object a line, keys in column order (ASCII: the C encoder's fast path)."""

    LINES_PER_WRITE = 1_000

    def __init__(self, path: Path, columns: list, sink: ImageSink) -> None:
        self.path = path
        self.handle = open(path, "w", encoding="ascii")  # noqa: SIM115  (closed in close())
        self.converting = [(n, c) for n, c in _cell_converters(columns, "json", sink) if c]
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


def arrow_type(kind: str, images: str):  # noqa: ANN201  (a pyarrow DataType)
    import pyarrow as pa

    image = (
        pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        if images == "embed"
        else pa.string()
    )
    return {
        "int": pa.int64(), "float": pa.float64(), "str": pa.string(), "bool": pa.bool_(),
        "time": pa.timestamp("us", tz="UTC"), "image": image, "images": pa.list_(image),
        "ints": pa.list_(pa.int64()), "strs": pa.list_(pa.string()),
        "bools": pa.list_(pa.bool_()),
    }[kind]


def hf_feature(kind: str, images: str) -> dict:
    """The column's Hugging Face ``datasets`` feature, as datasets (>= 4) writes it into
    an Arrow / Parquet schema's ``huggingface`` metadata."""
    def value(dtype: str) -> dict:
        return {"dtype": dtype, "_type": "Value"}

    image = {"_type": "Image"} if images == "embed" else value("string")
    return {
        "int": value("int64"), "float": value("float64"), "str": value("string"),
        "bool": value("bool"), "time": value("timestamp[us, tz=UTC]"), "image": image,
        "images": {"feature": image, "_type": "List"},
        "ints": {"feature": value("int64"), "_type": "List"},
        "strs": {"feature": value("string"), "_type": "List"},
        "bools": {"feature": value("bool"), "_type": "List"},
    }[kind]


def arrow_schema(columns: list[tuple[str, str]], images: str):  # noqa: ANN201
    import pyarrow as pa

    features = {name: hf_feature(kind, images) for name, kind in columns}
    metadata = {"huggingface": json.dumps({"info": {"features": features}})}
    return pa.schema(
        [pa.field(name, arrow_type(kind, images)) for name, kind in columns], metadata=metadata
    )


class ArrowTable:
    """Rows gathered into columns and written a record batch at a time: a Parquet row group
    (``parquet``) or an Arrow IPC stream batch (``arrow``, what ``datasets`` stores)."""

    def __init__(self, path: Path, columns: list, sink: ImageSink, container: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path, self.sink = path, sink
        self.schema = arrow_schema(columns, sink.mode)
        self.converters = _cell_converters(columns, "arrow", sink)
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
    path_stem: Path, fmt: str, columns: list, sink: ImageSink
) -> JsonlTable | ArrowTable:
    if fmt == "jsonl":
        return JsonlTable(path_stem.with_suffix(".jsonl"), columns, sink)
    if fmt == "parquet":
        return ArrowTable(path_stem.with_suffix(".parquet"), columns, sink, "parquet")
    return ArrowTable(path_stem.with_suffix(".arrow"), columns, sink, "arrow")


@dataclass
class WriteResult:
    counts: dict[str, int]
    simulated_rows: int
    images_stored: int
    tables: list[str]  # data files relative to the output directory, in archive order
    seconds: float


def write_tables(
    rows: Iterable[dict],
    kind: str,
    fmt: str,
    images: str,
    out_dir: Path,
    media_root: Path,
    on_progress: Progress | None = None,
) -> WriteResult:
    """Write ``rows`` (plain dicts with ``split``) as one table per split under ``out_dir``;
    images as ``images/<sha>.<ext>`` there when ``images == "files"``. For ``hf`` the
    tables become a ``datasets.DatasetDict`` saved in ``out_dir``."""
    started = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = COLUMNS[kind]
    sink = ImageSink(images, media_root, out_dir)
    staging = out_dir / "_arrow" if fmt == "hf" else out_dir
    staging.mkdir(exist_ok=True)
    tables = {split: open_table(staging / split, fmt, columns, sink) for split in SPLITS}
    counts = dict.fromkeys(SPLITS, 0)
    simulated, written, key = 0, 0, PROGRESS_KEY[kind]
    try:
        for row in rows:
            tables[row["split"]].write(row)
            counts[row["split"]] += 1
            simulated += row["simulated"] is True or (
                isinstance(row["simulated"], list) and any(row["simulated"])
            )
            written += 1
            if on_progress and written % PROGRESS_EVERY == 0:
                on_progress("rows", written, row[key])
    finally:
        for table in tables.values():
            table.close()
    if on_progress:
        on_progress("rows", written, None)
    if fmt == "hf":
        names = save_hf_dataset({s: t.path for s, t in tables.items()}, out_dir)
        shutil.rmtree(staging)
    else:
        names = [tables[split].path.name for split in SPLITS]
    return WriteResult(counts, simulated, len(sink.paths), names, time.monotonic() - started)


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
) -> dict:
    counts = {**written.counts, "total": sum(written.counts.values())}
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": request.kind,
        "format": request.format,
        "images": request.images,
        "project": project,
        "filters": {"project": project["id"], **request.filters.to_dict()},
        "options": request.options,
        "counts": counts,
        "simulated_rows": written.simulated_rows,
        "contains_simulated": written.simulated_rows > 0,
        "note": _simulated_note(written.simulated_rows, request.kind),
        "columns": [{"name": name, "type": kind} for name, kind in COLUMNS[request.kind]],
        "files": archived.files,
        "image_files": archived.images,
        "content_sha256": archived.content_sha256,
        "created_at": created_at.isoformat(),
        "editloop_version": version,
    }


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
