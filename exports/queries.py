"""The rows of an export, read from Postgres: the SQL for each kind, and the rows its
cursor streams turned into the plain dicts that exports/writers.py writes.

People's rows come from judgements (the filters pick them; ``min_agreement`` keeps the
tasks whose annotators agree, by evaluation.agreement); model rows (HP-Edit: a scorer
trained on the human set labels the rest) from a reward-model version's scores of the
tasks nobody judged. Table names come from the models, the SQL from here: nothing runs a
query but the ``run_query`` the caller hands in (exports/runs.py passes server-side
cursors), so rows stream and no more than a fetch is ever in memory.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any, NamedTuple

from django.contrib.auth.models import User

from annotation.models import AspectScore, Assignment, EditTask, Image, Judgement, Variant
from evaluation.agreement import JudgementRow, task_agreement
from exports.request import ExportFilters, ExportRequest
from exports.writers import ImageRef, PairExtra
from rewards.models import VariantScore

# A query runner: (sql, params) → the rows of a server-side cursor, as tuples.
RunQuery = Callable[[str, dict], Iterable[tuple]]

ASPECT_SCORES = AspectScore._meta.db_table
ASSIGNMENTS = Assignment._meta.db_table
IMAGES = Image._meta.db_table
JUDGEMENTS = Judgement._meta.db_table
TASKS = EditTask._meta.db_table
USERS = User._meta.db_table
VARIANTS = Variant._meta.db_table
VARIANT_SCORES = VariantScore._meta.db_table


# --- people's rows --------------------------------------------------------------------------

# A judgement's variants with their tier (1 = best), twice: x and y.
_TIERS = """
CROSS JOIN LATERAL jsonb_array_elements(j.ranking) WITH ORDINALITY AS xt(items, n)
CROSS JOIN LATERAL jsonb_array_elements_text(xt.items) AS x(variant)
CROSS JOIN LATERAL jsonb_array_elements(j.ranking) WITH ORDINALITY AS yt(items, n)
CROSS JOIN LATERAL jsonb_array_elements_text(yt.items) AS y(variant)"""


def _pair_images(first: str, second: str) -> str:
    """Two variants of a pair (v0, v1) with their images."""
    return f"""
JOIN {VARIANTS} v0 ON v0.id = {first}
JOIN {IMAGES} i0 ON i0.id = v0.image_id
JOIN {VARIANTS} v1 ON v1.id = {second}
JOIN {IMAGES} i1 ON i1.id = v1.image_id"""


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


def agreed_tasks(request: ExportRequest, project_id: int, run_query: RunQuery) -> list[int]:
    """The project's tasks whose annotators agree at least ``min_agreement``: per task,
    evaluation.agreement.task_agreement over the judgements the other filters keep (the
    tie-aware pairwise agreement of Deutsch et al. 2023, "Ties Matter"; unsure judgements
    never count), the figure the stats page and the disagreement queue show. The rows come
    ordered by task, so one task's judgements are in memory at a time; a task judged once
    has no agreement and is left out."""
    params: dict[str, Any] = {"project": project_id}
    conditions = judgement_conditions(request.filters, params)
    sql = f"""
SELECT j.id, t.id, a.annotator_id, j.ranking, j.unsure
FROM {TASKS} t
JOIN {ASSIGNMENTS} a ON a.task_id = t.id
JOIN {JUDGEMENTS} j ON j.assignment_id = a.id
WHERE t.project_id = %(project)s{conditions}
ORDER BY t.id, j.id"""
    judgements = (
        JudgementRow(judgement, task, annotator, _json(ranking), {}, [], unsure=unsure)
        for judgement, task, annotator, ranking, unsure in run_query(sql, params)
    )
    agreed = []
    for task, of_task in itertools.groupby(judgements, key=attrgetter("task_id")):
        agreement = task_agreement(of_task).get(task)
        if agreement is not None and agreement >= request.filters.min_agreement:
            agreed.append(task)
    return agreed


def _json(value: object) -> Any:
    """A jsonb cell: parsed already by psycopg's binary loader, or text to parse."""
    return json.loads(value) if isinstance(value, str) else value


def _judged(
    request: ExportRequest, project_id: int, agreed: Sequence[int] | None
) -> tuple[str, dict]:
    """(FROM clause, params) for the project's judgements the filters keep, with their
    assignment ``a``, task ``t``, source image ``s`` and annotator ``u``. With
    ``min_agreement``, ``agreed`` are the tasks agreed_tasks() kept.

    The judgements are picked by a narrow subquery that starts from the project's tasks and
    sorts only ids; the wide rows then follow in that order by primary key. Ordering the
    wide join itself by ``j.id`` would walk every judgement of every project."""
    params: dict[str, Any] = {"project": project_id}
    conditions = judgement_conditions(request.filters, params)
    if request.filters.min_agreement is not None:
        if agreed is None:
            raise ValueError("min_agreement needs the tasks agreed_tasks() kept")
        params["agreed"] = list(agreed)
        conditions += "\n  AND t.id = ANY(%(agreed)s)"
    from_clause = f"""
FROM (
    SELECT j.id
    FROM {TASKS} t
    JOIN {ASSIGNMENTS} a ON a.task_id = t.id
    JOIN {JUDGEMENTS} j ON j.assignment_id = a.id
    WHERE t.project_id = %(project)s{conditions}
    ORDER BY j.id
    OFFSET 0
) AS picked
JOIN {JUDGEMENTS} j ON j.id = picked.id
JOIN {ASSIGNMENTS} a ON a.id = j.assignment_id
JOIN {TASKS} t ON t.id = a.task_id
JOIN {IMAGES} s ON s.id = t.source_id
JOIN {USERS} u ON u.id = a.annotator_id"""
    return from_clause, params


def _where(*conditions: str) -> str:
    kept = [condition for condition in conditions if condition]
    return "\nWHERE " + "\n  AND ".join(kept) if kept else ""


def _generators(columns: list[str], request: ExportRequest, params: dict) -> str:
    if not request.filters.generators:
        return ""
    params["generators"] = list(request.filters.generators)
    return " AND ".join(f"{column} = ANY(%(generators)s)" for column in columns)


def overall_pairs_sql(
    request: ExportRequest, project_id: int, agreed: Sequence[int] | None = None
) -> tuple[str, dict]:
    """Non-tied pairs of each judgement's ranking: v0 chosen (better tier), v1 rejected;
    margin = how many tiers apart. The editreward layout adds both variants' scores and,
    with include_ties, the tied pairs (margin 0, lower variant id first)."""
    from_clause, params = _judged(request, project_id, agreed)
    editreward = request.layout == "editreward"
    apart = (
        "(yt.n > xt.n OR (yt.n = xt.n AND x.variant::bigint < y.variant::bigint))"
        if editreward and request.include_ties
        else "yt.n > xt.n"
    )
    sql = (
        _PAIR_SELECT.format(
            aspect="'overall'", number="yt.n - xt.n", extra=_PAIR_SCORES if editreward else ""
        )
        + from_clause
        + _TIERS
        + _pair_images(first="x.variant::bigint", second="y.variant::bigint")
        + _where(apart, _generators(["v0.generator", "v1.generator"], request, params))
        + "\nORDER BY j.id, xt.n, v0.id, yt.n, v1.id"
    )
    return sql, params


def aspect_pairs_sql(
    request: ExportRequest, project_id: int, agreed: Sequence[int] | None = None
) -> tuple[str, dict]:
    """Per aspect, the pairs one annotator scored apart: v0 scored higher; margin = the
    score difference. Equal scores give no row."""
    from_clause, params = _judged(request, project_id, agreed)
    sql = (
        _PAIR_SELECT.format(aspect="sx.aspect", number="sx.value - sy.value", extra="")
        + from_clause
        + f"\nJOIN {ASPECT_SCORES} sx ON sx.judgement_id = j.id"
        + f"\nJOIN {ASPECT_SCORES} sy ON sy.judgement_id = j.id AND sy.aspect = sx.aspect"
        + " AND sy.value < sx.value"
        + _pair_images(first="sx.variant_id", second="sy.variant_id")
        + _where(_generators(["v0.generator", "v1.generator"], request, params))
        + "\nORDER BY j.id, sx.aspect, v0.id, v1.id"
    )
    return sql, params


def dpo_pairs_sql(
    request: ExportRequest, project_id: int, agreed: Sequence[int] | None = None
) -> tuple[str, dict]:
    """Every pair of each judgement's ranking, lower variant id first (jpg_0); label_0 is 1
    when jpg_0 was ranked better, 0 when worse, 0.5 for a tie."""
    from_clause, params = _judged(request, project_id, agreed)
    label = "CASE WHEN xt.n < yt.n THEN 1.0 WHEN xt.n > yt.n THEN 0.0 ELSE 0.5 END"
    sql = (
        _PAIR_SELECT.format(aspect="'overall'", number=label, extra="")
        + from_clause
        + _TIERS
        + _pair_images(first="x.variant::bigint", second="y.variant::bigint")
        + _where(
            "x.variant::bigint < y.variant::bigint",
            "" if request.include_ties else "xt.n <> yt.n",
            _generators(["v0.generator", "v1.generator"], request, params),
        )
        + "\nORDER BY j.id, v0.id, v1.id"
    )
    return sql, params


def rankings_sql(
    request: ExportRequest, project_id: int, agreed: Sequence[int] | None = None
) -> tuple[str, dict]:
    """Each judgement with its task's variants (by id) and the ranking it gave them."""
    from_clause, params = _judged(request, project_id, agreed)
    generators = _generators(["v.generator"], request, params)
    sql = f"""
SELECT j.id, t.id, t.split, t.instruction, t.category, t.round, s.sha256, s.format, s.file,
       j.ranking, g.ids, g.shas, g.formats, g.files, g.generators,
       u.username, j.simulated, j.unsure, j.created_at{from_clause}
CROSS JOIN LATERAL (
    SELECT array_agg(v.id ORDER BY v.id) AS ids, array_agg(i.sha256 ORDER BY v.id) AS shas,
           array_agg(i.format ORDER BY v.id) AS formats, array_agg(i.file ORDER BY v.id) AS files,
           array_agg(v.generator ORDER BY v.id) AS generators
    FROM {VARIANTS} v JOIN {IMAGES} i ON i.id = v.image_id
    {_where("v.task_id = t.id", generators).strip()}
) g
WHERE cardinality(g.ids) >= 2
ORDER BY j.id"""
    return sql, params


def scores_sql(
    request: ExportRequest, project_id: int, agreed: Sequence[int] | None = None
) -> tuple[str, dict]:
    """Per variant and aspect: the scores of the judgements the filters keep, in judgement
    order, with their mean, median and count."""
    from_clause, params = _judged(request, project_id, agreed)
    sql = f"""
SELECT v.id, t.id, t.split, t.instruction, t.category, t.round, s.sha256, s.format, s.file,
       i.sha256, i.format, i.file, v.generator, sc.aspect,
       array_agg(sc.value ORDER BY j.id), array_agg(u.username ORDER BY j.id),
       array_agg(j.id ORDER BY j.id), array_agg(j.simulated ORDER BY j.id),
       avg(sc.value)::float8,
       (percentile_cont(0.5) WITHIN GROUP (ORDER BY sc.value))::float8, count(*){from_clause}
JOIN {ASPECT_SCORES} sc ON sc.judgement_id = j.id
JOIN {VARIANTS} v ON v.id = sc.variant_id
JOIN {IMAGES} i ON i.id = v.image_id{_where(_generators(["v.generator"], request, params))}
GROUP BY v.id, t.id, s.id, i.id, sc.aspect
ORDER BY v.id, sc.aspect"""
    return sql, params


def key_range_sql(request: ExportRequest, project_id: int) -> tuple[str, dict]:
    """The smallest and largest ordering key (judgement or variant id): progress reports
    place the row being written between them. Leaves min_agreement out (a superset is
    enough for progress, and the agreement is worked out once, by the export itself)."""
    params: dict[str, Any] = {"project": project_id}
    conditions = judgement_conditions(request.filters, params)
    scores = request.kind == "scores"
    column = "sc.variant_id" if scores else "j.id"
    join = f"\nJOIN {ASPECT_SCORES} sc ON sc.judgement_id = j.id" if scores else ""
    sql = f"""
SELECT min({column}), max({column})
FROM {TASKS} t
JOIN {ASSIGNMENTS} a ON a.task_id = t.id
JOIN {JUDGEMENTS} j ON j.assignment_id = a.id{join}
WHERE t.project_id = %(project)s{conditions}"""
    return sql, params


def row_queries(
    request: ExportRequest, project_id: int, agreed: Sequence[int] | None = None
) -> list[tuple[str, dict]]:
    """The queries whose rows, in this order, make the people-labelled part (``agreed``:
    see _judged)."""
    if request.kind == "pairs":
        queries = [overall_pairs_sql(request, project_id, agreed)]
        if request.aspect_pairs:
            queries.append(aspect_pairs_sql(request, project_id, agreed))
        return queries
    builder = {"dpo": dpo_pairs_sql, "rankings": rankings_sql, "scores": scores_sql}
    return [builder[request.kind](request, project_id, agreed)]


# Labels of people: no reward version, no score margin.
_HUMAN = {"label_source": "human", "reward_version": None, "score_margin": None}


def _task_columns(r: tuple) -> dict[str, Any]:
    """Columns 1-8 of every row query: the task and its source image."""
    return {
        "task_id": r[1],
        "split": r[2],
        "instruction": r[3],
        "category": r[4],
        "round": r[5],
        "source": ImageRef(r[6], r[7], r[8]),
    }


def _pair_row(r: tuple) -> dict[str, Any]:
    row = {
        "judgement_id": r[0],
        **_task_columns(r),
        "chosen": ImageRef(r[10], r[11], r[12]),
        "rejected": ImageRef(r[15], r[16], r[17]),
        "chosen_variant_id": r[9],
        "rejected_variant_id": r[14],
        "chosen_generator": r[13],
        "rejected_generator": r[18],
        "aspect": r[19],
        "margin": r[20],
        "annotator": r[21],
        "simulated": r[22],
        "unsure": r[23],
        "created_at": r[24],
        **_HUMAN,
    }
    if len(r) > 25:  # the editreward layout: both variants' scores, and ties
        row["_extra"] = PairExtra(r[25] or {}, r[26] or {}, tie=r[20] == 0)
    return row


def _dpo_row(r: tuple) -> dict[str, Any]:
    return {
        "ranking_id": r[0],
        "task_id": r[1],
        "split": r[2],
        "caption": r[3],
        "category": r[4],
        "round": r[5],
        "source": ImageRef(r[6], r[7], r[8]),
        "jpg_0": ImageRef(r[10], r[11], r[12]),
        "jpg_1": ImageRef(r[15], r[16], r[17]),
        "label_0": r[20],
        "label_1": 1.0 - r[20],
        "variant_0_id": r[9],
        "variant_1_id": r[14],
        "image_0_uid": r[10],
        "image_1_uid": r[15],
        "model_0": r[13],
        "model_1": r[18],
        "annotator": r[21],
        "simulated": r[22],
        "unsure": r[23],
        "created_at": r[24],
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
    ranking = _json(r[9])
    ranks = ranks_of(ranking, r[10])
    keep = [n for n, rank in enumerate(ranks) if rank is not None]
    if len(keep) < 2:
        return None
    return {
        "id": r[0],
        **_task_columns(r),
        "generations": [ImageRef(r[11][n], r[12][n], r[13][n]) for n in keep],
        "variant_ids": [r[10][n] for n in keep],
        "generators": [r[14][n] for n in keep],
        "ranking": [ranks[n] for n in keep],
        "annotator": r[15],
        "simulated": r[16],
        "unsure": r[17],
        "created_at": r[18],
        **_HUMAN,
        "model_scores": None,
    }


def _score_row(r: tuple) -> dict[str, Any]:
    return {
        "variant_id": r[0],
        **_task_columns(r),
        "image": ImageRef(r[9], r[10], r[11]),
        "generator": r[12],
        "aspect": r[13],
        "values": r[14],
        "annotators": r[15],
        "judgement_ids": r[16],
        "simulated": r[17],
        "mean": r[18],
        "median": r[19],
        "count": r[20],
    }


ROW_MAKERS: dict[str, Callable[[tuple], dict | None]] = {
    "pairs": _pair_row,
    "dpo": _dpo_row,
    "rankings": _ranking_row,
    "scores": _score_row,
}


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
FROM {TASKS} t
JOIN {IMAGES} s ON s.id = t.source_id
CROSS JOIN LATERAL (
    SELECT array_agg(v.id ORDER BY v.id) AS ids, array_agg(i.sha256 ORDER BY v.id) AS shas,
           array_agg(i.format ORDER BY v.id) AS formats, array_agg(i.file ORDER BY v.id) AS files,
           array_agg(v.generator ORDER BY v.id) AS generators,
           array_agg(sc.overall ORDER BY v.id) AS overall,
           array_agg(sc.aspects ORDER BY v.id) AS aspects, max(sc.created_at) AS scored_at
    FROM {VARIANTS} v
    JOIN {IMAGES} i ON i.id = v.image_id
    JOIN {VARIANT_SCORES} sc ON sc.variant_id = v.id AND sc.version_id = %(version)s
    {_where("v.task_id = t.id", generators).strip()}
) g
WHERE t.project_id = %(project)s
  AND cardinality(g.ids) >= 2
  AND NOT EXISTS (
    SELECT 1 FROM {ASSIGNMENTS} a JOIN {JUDGEMENTS} j ON j.assignment_id = a.id
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
        images = [
            ImageRef(sha, fmt, path) for sha, fmt, path in zip(r[9], r[10], r[11], strict=True)
        ]
        aspects = [_json(a) or {} for a in r[14]]
        return cls(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            ImageRef(r[5], r[6], r[7]),
            list(r[8]),
            images,
            list(r[12]),
            [float(x) for x in r[13]],
            aspects,
            r[15],
        )

    def common(self, labels: ModelLabels, margin: float | None) -> dict[str, Any]:
        return {"label_source": "model", "reward_version": labels.number, "score_margin": margin}


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
                "judgement_id": None,
                "task_id": task.task_id,
                "split": task.split,
                "instruction": task.instruction,
                "category": task.category,
                "round": task.round,
                "source": task.source,
                "chosen": task.images[won],
                "rejected": task.images[lost],
                "chosen_variant_id": task.variant_ids[won],
                "rejected_variant_id": task.variant_ids[lost],
                "chosen_generator": task.generators[won],
                "rejected_generator": task.generators[lost],
                "aspect": "overall",
                "margin": abs(delta),
                "annotator": None,
                "simulated": False,
                "unsure": False,
                "created_at": task.scored_at,
                **task.common(labels, abs(delta)),
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
                "ranking_id": None,
                "task_id": task.task_id,
                "split": task.split,
                "caption": task.instruction,
                "category": task.category,
                "round": task.round,
                "source": task.source,
                "jpg_0": task.images[a],
                "jpg_1": task.images[b],
                "label_0": label,
                "label_1": 1.0 - label,
                "variant_0_id": task.variant_ids[a],
                "variant_1_id": task.variant_ids[b],
                "image_0_uid": task.images[a].sha256,
                "image_1_uid": task.images[b].sha256,
                "model_0": task.generators[a],
                "model_1": task.generators[b],
                "annotator": None,
                "simulated": False,
                "unsure": False,
                "created_at": task.scored_at,
                **task.common(labels, abs(delta)),
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
        "id": None,
        "task_id": task.task_id,
        "split": task.split,
        "instruction": task.instruction,
        "category": task.category,
        "round": task.round,
        "source": task.source,
        "generations": task.images,
        "variant_ids": task.variant_ids,
        "generators": task.generators,
        "ranking": ranks,
        "annotator": None,
        "simulated": False,
        "unsure": False,
        "created_at": task.scored_at,
        **task.common(labels, min(gaps) if gaps else None),
        "model_scores": task.overall,
    }


MODEL_ROW_MAKERS = {
    "pairs": _model_pair_rows,
    "dpo": _model_dpo_rows,
    "rankings": _model_ranking_rows,
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
    judged. With ``min_agreement`` the agreement is worked out first, over the same
    snapshot (agreed_tasks)."""
    if request.labels in ("human", "both"):
        agreed = None
        if request.filters.min_agreement is not None:
            agreed = agreed_tasks(request, project_id, run_query)
        make = ROW_MAKERS[request.kind]
        for sql, params in row_queries(request, project_id, agreed):
            for raw in run_query(sql, params):
                row = make(raw)
                if row is not None:
                    yield row
    if request.labels in ("model", "both"):
        if labels is None:
            raise ValueError(f"labels {request.labels!r} needs the reward version's ModelLabels")
        yield from model_rows(request, project_id, labels, run_query)
