"""Import edit tasks from a manifest (JSON lines) plus images: all or nothing.

The manifest and its images come from a zip archive (API upload) or a directory
(``manage.py import_tasks``). Every line and every image is checked before anything is
written; a single problem refuses the whole import with errors naming line, field and
reason. Images are stored content-addressed, so a photo imported twice is stored once.
"""

from __future__ import annotations

import io
import json
import posixpath
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.core.files.storage import default_storage
from django.db import transaction

from annotation.images import CheckedImage, inspect_image, store_images
from annotation.models import CATEGORIES, EditTask, Image, Project, Variant
from editloop.errors import RequestInvalid

MANIFEST_NAME = "manifest.jsonl"
MAX_IMAGE_BYTES = 100 * 1024 * 1024
MAX_INSTRUCTION_CHARS = 2000
MAX_ERRORS = 200

Refuse = Callable[[str, str], None]  # (field, message): one problem of the line being planned

Progress = Callable[[int], object]  # called with the number of images just checked


def _no_progress(_: int) -> None:
    return None


@dataclass(frozen=True)
class ImportProblem:
    line: int | None  # 1-based manifest line; None for the archive as a whole
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"line": self.line, "field": self.field, "message": self.message}


class ImportRefused(RequestInvalid):
    """An import refused as a whole. A request error like any other (the API's one handler
    answers 400), whose body keeps the contract's per-line shape
    ``{errors: [{line, field, message}]}``: a manifest has many lines that name the same
    field, so field → messages alone would lose which line is wrong."""

    def __init__(self, problems: list[ImportProblem]) -> None:
        self.problems = problems
        by_field: dict[str, list[str]] = {}
        for problem in problems:
            where = f"line {problem.line}: " if problem.line else ""
            by_field.setdefault(problem.field, []).append(where + problem.message)
        super().__init__(by_field)

    @property
    def body(self) -> dict:
        return {"errors": [problem.as_dict() for problem in self.problems]}


@dataclass(frozen=True)
class ImportResult:
    tasks: int
    variants: int
    images_stored: int


@dataclass
class PlannedVariant:
    path: str
    generator: str
    model_version: str
    seed: int | None
    params: dict


@dataclass
class PlannedTask:
    line: int
    source: str
    instruction: str
    category: str
    external_id: str
    priority: int
    is_gold: bool
    gold_ranking: list[list[int]] | None
    variants: list[PlannedVariant] = field(default_factory=list)


# --- where the files come from ------------------------------------------------------


class FileSource:
    """Reads manifest-relative paths from a zip archive or a directory."""

    def read(self, path: str) -> bytes:
        raise NotImplementedError

    def has(self, path: str) -> bool:
        raise NotImplementedError


class ZipSource(FileSource):
    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.members = {info.filename: info for info in archive.infolist() if not info.is_dir()}

    def escaping_members(self) -> list[str]:
        return [name for name in self.members if normalised_path(name) is None]

    def has(self, path: str) -> bool:
        return path in self.members

    def read(self, path: str) -> bytes:
        info = self.members[path]
        if info.file_size > MAX_IMAGE_BYTES:
            raise ValueError(f"{info.file_size} bytes is over the {MAX_IMAGE_BYTES} byte limit")
        with self.archive.open(info) as handle:
            data = handle.read(MAX_IMAGE_BYTES + 1)
        if len(data) > MAX_IMAGE_BYTES:
            raise ValueError(f"more than {MAX_IMAGE_BYTES} bytes once decompressed")
        return data


class DirectorySource(FileSource):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _resolve(self, path: str) -> Path:
        return (self.root / path).resolve()

    def has(self, path: str) -> bool:
        resolved = self._resolve(path)
        return resolved.is_relative_to(self.root) and resolved.is_file()

    def read(self, path: str) -> bytes:
        resolved = self._resolve(path)
        if resolved.stat().st_size > MAX_IMAGE_BYTES:
            raise ValueError(f"file is over the {MAX_IMAGE_BYTES} byte limit")
        return resolved.read_bytes()


def normalised_path(path: str) -> str | None:
    """The path inside the archive, or None when it points outside it."""
    if not path or path.startswith(("/", "\\")) or "\\" in path or ":" in path.split("/")[0]:
        return None
    clean = posixpath.normpath(path)
    if clean == ".." or clean.startswith("../") or clean == ".":
        return None
    return clean


# --- entry points ----------------------------------------------------------------------


def import_zip(
    project: Project, upload: io.IOBase, progress: Progress = _no_progress
) -> ImportResult:
    try:
        archive = zipfile.ZipFile(upload)
    except zipfile.BadZipFile:
        raise ImportRefused([ImportProblem(None, "archive", "not a zip archive")]) from None
    with archive:
        source = ZipSource(archive)
        escaping = source.escaping_members()
        if escaping:
            raise ImportRefused(
                [
                    ImportProblem(None, "archive", f"member {name!r} points outside the archive")
                    for name in escaping[:MAX_ERRORS]
                ]
            )
        if not source.has(MANIFEST_NAME):
            raise ImportRefused(
                [ImportProblem(None, "archive", f"no {MANIFEST_NAME} at the top of the archive")]
            )
        manifest = source.read(MANIFEST_NAME)
        return import_tasks(project, manifest, source, progress)


def import_directory(
    project: Project, manifest_path: Path, progress: Progress = _no_progress
) -> ImportResult:
    try:
        manifest = manifest_path.read_bytes()
    except OSError as error:
        raise ImportRefused([ImportProblem(None, "manifest", str(error))]) from None
    return import_tasks(project, manifest, DirectorySource(manifest_path.parent), progress)


def import_tasks(
    project: Project, manifest: bytes, source: FileSource, progress: Progress = _no_progress
) -> ImportResult:
    problems: list[ImportProblem] = []
    planned = list(plan_tasks(project, manifest, problems))
    checked = check_images(planned, source, problems, progress)
    if not problems:
        check_duplicate_variants(planned, checked, problems)
    if not problems and not planned:
        problems.append(ImportProblem(None, "manifest", "the manifest has no tasks"))
    if problems:
        raise ImportRefused(problems[:MAX_ERRORS])
    return save_tasks(project, planned, checked, source)


# --- checking the manifest -------------------------------------------------------------


def plan_tasks(
    project: Project, manifest: bytes, problems: list[ImportProblem]
) -> Iterable[PlannedTask]:
    try:
        text = manifest.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(ImportProblem(None, "manifest", "the manifest is not UTF-8 text"))
        return
    seen_external_ids: dict[str, int] = {}
    existing_external_ids = set(
        project.tasks.exclude(external_id="").values_list("external_id", flat=True)
    )
    for number, raw_line in enumerate(text.splitlines(), start=1):
        if not raw_line.strip():
            continue
        task = plan_task(project, number, raw_line, problems)
        if task is None:
            continue
        if task.external_id:
            if task.external_id in existing_external_ids:
                problems.append(
                    ImportProblem(
                        number, "external_id", f"{task.external_id!r} is already imported"
                    )
                )
            elif task.external_id in seen_external_ids:
                problems.append(
                    ImportProblem(
                        number,
                        "external_id",
                        f"{task.external_id!r} repeats line {seen_external_ids[task.external_id]}",
                    )
                )
            seen_external_ids[task.external_id] = number
        yield task


def plan_task(
    project: Project, line: int, raw_line: str, problems: list[ImportProblem]
) -> PlannedTask | None:
    before = len(problems)

    def refuse(field_name: str, message: str) -> None:
        problems.append(ImportProblem(line, field_name, message))

    try:
        record = json.loads(raw_line)
    except json.JSONDecodeError as error:
        refuse("line", f"not valid JSON: {error.msg}")
        return None
    if not isinstance(record, dict):
        refuse("line", "each line must be a JSON object")
        return None

    source = _path_field(record, "source", refuse)
    instruction = record.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        refuse("instruction", "required: a non-empty string")
    elif len(instruction) > MAX_INSTRUCTION_CHARS:
        refuse("instruction", f"longer than {MAX_INSTRUCTION_CHARS} characters")
    category = record.get("category", "other")
    if category not in CATEGORIES:
        refuse("category", f"unknown category {category!r}; use one of {', '.join(CATEGORIES)}")
    external_id = record.get("external_id", "")
    if not isinstance(external_id, str) or len(external_id) > 200:
        refuse("external_id", "must be a string of at most 200 characters")
    priority = record.get("priority", 0)
    if not _is_int(priority):
        refuse("priority", "must be an integer")
    is_gold = record.get("is_gold", False)
    if not isinstance(is_gold, bool):
        refuse("is_gold", "must be true or false")

    variants = _plan_variants(project, record.get("variants"), refuse)
    gold_ranking = record.get("gold_ranking")
    if gold_ranking is not None or is_gold is True:
        _check_gold_ranking(gold_ranking, len(variants), refuse)

    if len(problems) > before:
        return None
    return PlannedTask(
        line=line,
        source=source,
        instruction=instruction.strip(),
        category=category,
        external_id=external_id,
        priority=priority,
        is_gold=is_gold,
        gold_ranking=gold_ranking,
        variants=variants,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _path_field(record: dict, name: str, refuse: Refuse) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value:
        refuse(name, "required: a path inside the archive")
        return ""
    clean = normalised_path(value)
    if clean is None:
        refuse(name, f"{value!r} points outside the archive")
        return ""
    return clean


def _plan_variants(project: Project, raw: object, refuse: Refuse) -> list[PlannedVariant]:
    if not isinstance(raw, list):
        refuse("variants", "required: a list of at least 2 variants")
        return []
    if len(raw) < 2:
        refuse("variants", f"needs at least 2 variants, got {len(raw)}")
    if project.mode == Project.Mode.PAIRWISE and len(raw) != 2:
        refuse("variants", f"a pairwise project needs exactly 2 variants, got {len(raw)}")
    planned = []
    for index, item in enumerate(raw):
        prefix = f"variants[{index}]"
        if not isinstance(item, dict):
            refuse(prefix, "must be an object with an 'image'")
            continue
        path = _path_field(item, "image", lambda f, m, p=prefix: refuse(f"{p}.{f}", m))
        seed = item.get("seed")
        if seed is not None and not _is_int(seed):
            refuse(f"{prefix}.seed", "must be an integer")
        params = item.get("params", {})
        if not isinstance(params, dict):
            refuse(f"{prefix}.params", "must be a JSON object")
        generator = item.get("generator", "")
        model_version = item.get("model_version", "")
        for name, value in (("generator", generator), ("model_version", model_version)):
            if not isinstance(value, str) or len(value) > 100:
                refuse(f"{prefix}.{name}", "must be a string of at most 100 characters")
        planned.append(PlannedVariant(path, generator, model_version, seed, params))
    return planned


def _check_gold_ranking(gold: object, variant_count: int, refuse: Refuse) -> None:
    message = (
        "a gold task needs gold_ranking: tiers best→worst of variant indices "
        f"0..{variant_count - 1}"
    )
    if not isinstance(gold, list) or not all(isinstance(tier, list) and tier for tier in gold):
        refuse("gold_ranking", message)
        return
    indices = [index for tier in gold for index in tier]
    if sorted(indices) != list(range(variant_count)) or not all(_is_int(i) for i in indices):
        refuse("gold_ranking", message + ", each exactly once")


# --- checking the images ---------------------------------------------------------------


def check_images(
    planned: list[PlannedTask],
    source: FileSource,
    problems: list[ImportProblem],
    progress: Progress = _no_progress,
) -> dict[str, CheckedImage]:
    checked: dict[str, CheckedImage] = {}
    failed: dict[str, str] = {}
    for task in planned:
        references = [("source", task.source)] + [
            (f"variants[{i}].image", variant.path) for i, variant in enumerate(task.variants)
        ]
        for field_name, path in references:
            if path in checked:
                continue
            if path not in failed:
                failed_reason = _check_one_image(path, source, checked)
                progress(1)
                if failed_reason:
                    failed[path] = failed_reason
            if path in failed:
                problems.append(ImportProblem(task.line, field_name, failed[path]))
    return checked


def _check_one_image(path: str, source: FileSource, checked: dict[str, CheckedImage]) -> str:
    if not source.has(path):
        return f"{path!r} is not in the archive"
    try:
        data = source.read(path)
        checked[path] = inspect_image(data)
    except ValueError as error:
        return f"{path!r}: {error}"
    return ""


def check_duplicate_variants(
    planned: list[PlannedTask], checked: dict[str, CheckedImage], problems: list[ImportProblem]
) -> None:
    for task in planned:
        seen: dict[str, int] = {}
        for index, variant in enumerate(task.variants):
            sha = checked[variant.path].sha256
            if sha in seen:
                problems.append(
                    ImportProblem(
                        task.line,
                        f"variants[{index}].image",
                        f"same image as variants[{seen[sha]}] (sha256 {sha[:12]}…)",
                    )
                )
            seen.setdefault(sha, index)


# --- saving ---------------------------------------------------------------------------


def save_tasks(
    project: Project,
    planned: list[PlannedTask],
    checked: dict[str, CheckedImage],
    source: FileSource,
) -> ImportResult:
    written: list[str] = []
    try:
        with transaction.atomic():
            images = store_images(checked, source.read, written)
            tasks = _create_tasks(project, planned, images)
            variant_count = _create_variants(planned, tasks, images)
    except BaseException:
        for name in written:  # nothing partially saved: drop files no row points to
            default_storage.delete(name)
        raise
    return ImportResult(tasks=len(tasks), variants=variant_count, images_stored=len(written))


def _create_tasks(
    project: Project, planned: list[PlannedTask], images: dict[str, Image]
) -> list[EditTask]:
    rows = [
        EditTask(
            project=project,
            source=images[task.source],
            instruction=task.instruction,
            category=task.category,
            split=project.split_for(images[task.source].sha256),
            priority=task.priority,
            is_gold=task.is_gold,
            external_id=task.external_id,
        )
        for task in planned
    ]
    return EditTask.objects.bulk_create(rows)


def _create_variants(
    planned: list[PlannedTask], tasks: list[EditTask], images: dict[str, Image]
) -> int:
    rows_per_task = [
        [
            Variant(
                task=task,
                image=images[variant.path],
                generator=variant.generator,
                model_version=variant.model_version,
                seed=variant.seed,
                params=variant.params,
            )
            for variant in plan.variants
        ]
        for plan, task in zip(planned, tasks, strict=True)
    ]
    Variant.objects.bulk_create([row for rows in rows_per_task for row in rows])
    _store_gold_rankings(planned, tasks, rows_per_task)
    return sum(len(rows) for rows in rows_per_task)


def _store_gold_rankings(
    planned: list[PlannedTask], tasks: list[EditTask], rows_per_task: list[list[Variant]]
) -> None:
    """Gold rankings arrive as variant indices; store them as variant ids."""
    gold_tasks = []
    for plan, task, rows in zip(planned, tasks, rows_per_task, strict=True):
        if plan.gold_ranking is not None:
            task.gold_ranking = [[rows[index].pk for index in tier] for tier in plan.gold_ranking]
            gold_tasks.append(task)
    EditTask.objects.bulk_update(gold_tasks, ["gold_ranking"])
