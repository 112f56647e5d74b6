"""What an export asks for: kind, format, images, filters and options, parsed from an API
body, the admin form or the command line into a frozen :class:`ExportRequest`, or
:class:`~editloop.errors.RequestInvalid` naming every wrong field. Plain Python, no Django.

Kinds: ``pairs`` (chosen / rejected), ``rankings`` (ImageReward), ``scores`` (per variant
and aspect), ``dpo`` (Pick-a-Pic / Diffusion-DPO); the columns each writes are in
exports/writers.py. Labels: people's (``human``), a reward-model version's for the tasks
nobody judged (``model``), or ``both``. Layouts: another project's own files
(``imagereward`` for rankings, ``editreward`` for pairs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from editloop.errors import NON_FIELD, RequestInvalid

KINDS = ("pairs", "rankings", "scores", "dpo")
FORMATS = ("jsonl", "parquet", "hf")
IMAGE_MODES = ("embed", "files")
# Who labelled a row: people, a reward-model version, or both (model rows only for the
# tasks nobody judged).
LABEL_SOURCES = ("human", "model", "both")
LABELLED_KINDS = ("pairs", "rankings", "dpo")
# Table layouts another project's training code reads unchanged, and the kind each is for.
LAYOUTS = ("default", "imagereward", "editreward")
LAYOUT_KIND = {"imagereward": "rankings", "editreward": "pairs"}
# In the order the admin's launch form shows them.
REQUEST_FIELDS = (
    "kind",
    "format",
    "images",
    "filters",
    "aspect_pairs",
    "include_ties",
    "layout",
    "labels",
    "reward_version",
    "image_feature",
)
FILTER_FIELDS = {
    "rounds",
    "generators",
    "since",
    "until",
    "exclude_simulated",
    "exclude_gold",
    "exclude_unsure",
    "min_agreement",
}


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
    # Keep only tasks whose annotators agree this much: the tie-aware pairwise agreement of
    # evaluation.agreement.task_agreement over the judgements the other filters keep
    # (exports/queries.py, agreed_tasks); tasks judged once have none.
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


def parse_request(data: object) -> ExportRequest:
    """An API body / admin form / command line → ExportRequest, or RequestInvalid naming
    every wrong field (filters nest: ``{"filters": {"min_agreement": [...]}}``)."""
    if not isinstance(data, dict):
        raise RequestInvalid.of(NON_FIELD, "the body must be a JSON object")
    errors: dict[str, Any] = {}
    for name in sorted(set(data) - set(REQUEST_FIELDS)):
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
    except RequestInvalid as invalid:
        errors["filters"] = invalid.errors
        filters = ExportFilters()
    if errors:
        raise RequestInvalid(errors)
    return ExportRequest(
        kind,
        fmt,
        images,
        filters,
        aspect_pairs,
        include_ties,
        layout,
        labels,
        reward_version,
        image_feature,
    )


def _check_layout(
    data: dict,
    layout: str,
    kind: str | None,
    fmt: str,
    images: str,
    aspect_pairs: bool,
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
        raise RequestInvalid.of(NON_FIELD, "filters must be an object")
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
        raise RequestInvalid(errors)
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
