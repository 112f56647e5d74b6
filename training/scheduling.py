"""Starting fine-tuning and generation runs (admin, API), and requeueing the ones whose
worker died. Light on purpose: the web server and beat import this, never torch."""

from __future__ import annotations

from pathlib import Path

from django.db import transaction
from django.db.models import Max

from annotation.models import Project
from rewards.models import RewardModelVersion
from training.config import config_from_options
from training.feedback import Filters
from training.models import FinetuneRun, GenerationRun


class FinetuneAlreadyRunning(Exception):
    def __init__(self, run: FinetuneRun) -> None:
        super().__init__(f"fine-tune run {run.pk} of {run.project} is already {run.status}")
        self.run = run


class BadRequest(ValueError):
    """A launch request that names a wrong field: `field` says which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def check_base(base: str, field: str = "base") -> str:
    if base == "tiny" or (Path(base) / "model_index.json").is_file():
        return base
    raise BadRequest(
        field,
        f"{base!r} is neither 'tiny' nor a diffusers pipeline directory (no model_index.json)",
    )


def check_reward_version(
    project: Project, version: RewardModelVersion | None
) -> RewardModelVersion | None:
    if version is not None and version.project_id != project.pk:
        raise BadRequest("reward_version", f"{version} belongs to another project")
    return version


def check_filters(filters: dict) -> dict:
    try:
        Filters.from_dict(filters)
    except ValueError as error:
        raise BadRequest("filters", str(error)) from None
    return filters


def check_finetune_request(
    project: Project,
    *,
    method: str,
    base: str,
    reward_source: str,
    reward_version: RewardModelVersion | None,
    filters: dict,
    options: dict,
) -> None:
    """BadRequest naming the first field of a launch request that is wrong."""
    if method not in FinetuneRun.Method.values:
        raise BadRequest("method", f"{method!r} is not one of {', '.join(FinetuneRun.Method)}")
    if reward_source not in FinetuneRun.RewardSource.values:
        raise BadRequest("reward_source", f"{reward_source!r} is not one of "
                         f"{', '.join(FinetuneRun.RewardSource)}")
    try:
        config_from_options(method, options)
    except ValueError as error:
        raise BadRequest("options", str(error)) from None
    check_base(base)
    check_reward_version(project, reward_version)
    check_filters(filters)


def request_finetune(
    project: Project,
    *,
    method: str,
    user=None,  # noqa: ANN001
    base: str = "tiny",
    reward_source: str = FinetuneRun.RewardSource.HUMAN,
    reward_version: RewardModelVersion | None = None,
    filters: dict | None = None,
    options: dict | None = None,
    evaluate: bool = True,
    ab_batch: bool = False,
    enqueue: bool = True,
) -> FinetuneRun:
    """A pending run, queued once the transaction commits. One active fine-tune per
    project (a partial unique index holds the rule)."""
    filters, options = filters or {}, options or {}
    check_finetune_request(
        project, method=method, base=base, reward_source=reward_source,
        reward_version=reward_version, filters=filters, options=options,
    )
    run = FinetuneRun.create_single_flight(
        FinetuneAlreadyRunning,
        project=project,
        method=method,
        requested_by=user,
        base=base,
        reward_source=reward_source,
        reward_version=reward_version,
        filters=filters,
        options=options,
        evaluate=evaluate,
        ab_batch=ab_batch,
    )
    if enqueue:
        transaction.on_commit(lambda: enqueue_finetune(run.pk))
    return run


def next_round(project: Project) -> int:
    return (project.tasks.aggregate(last=Max("round"))["last"] or 0) + 1


def request_generation(
    project: Project,
    *,
    user=None,  # noqa: ANN001
    editor: str = "procedural",
    finetune_run: FinetuneRun | None = None,
    variants_per_task: int | None = None,
    seeds: list[int] | None = None,
    guidance_scales: list[list[float]] | None = None,
    splits: list[str] | None = None,
    max_tasks: int | None = None,
    enqueue: bool = True,
) -> GenerationRun:
    k = check_generation_request(
        project, editor=editor, finetune_run=finetune_run,
        variants_per_task=variants_per_task, seeds=seeds, guidance_scales=guidance_scales,
    )
    run = GenerationRun.objects.create(
        project=project,
        requested_by=user,
        editor=editor,
        finetune_run=finetune_run,
        variants_per_task=k,
        seeds=seeds if seeds is not None else list(range(k)),
        guidance_scales=guidance_scales or [],
        splits=splits or [],
        max_tasks=max_tasks,
        round=next_round(project),
    )
    if enqueue:
        transaction.on_commit(lambda: enqueue_generation(run.pk))
    return run


def check_generation_request(
    project: Project,
    *,
    editor: str,
    finetune_run: FinetuneRun | None,
    variants_per_task: int | None,
    seeds: list[int] | None,
    guidance_scales: list[list[float]] | None,
) -> int:
    """How many variants each task gets; BadRequest naming the first wrong field."""
    k = _variants_per_task(project, variants_per_task, seeds)
    if seeds is not None and len(seeds) != k:
        raise BadRequest("seeds", f"give one seed per variant ({k}), not {len(seeds)}")
    if guidance_scales is not None and (
        len(guidance_scales) != k or any(len(g) != 2 for g in guidance_scales)
    ):
        raise BadRequest("guidance_scales", f"give {k} [text, image] guidance pairs")
    if finetune_run is not None:
        _check_finetuned(project, finetune_run)
    elif editor not in ("procedural", "tiny"):
        check_base(editor, "editor")
    return k


def _variants_per_task(project: Project, asked: int | None, seeds: list[int] | None) -> int:
    k = asked or (len(seeds) if seeds else (2 if project.mode == Project.Mode.PAIRWISE else 4))
    if project.mode == Project.Mode.PAIRWISE and k != 2:
        raise BadRequest("variants_per_task", "a pairwise project takes exactly 2 variants")
    if not 2 <= k <= 16:
        raise BadRequest("variants_per_task", f"{k} is outside 2..16")
    return k


def _check_finetuned(project: Project, run: FinetuneRun) -> None:
    if run.project_id != project.pk:
        raise BadRequest("finetune_run", f"run {run.pk} belongs to another project")
    if run.status != FinetuneRun.Status.SUCCEEDED:
        raise BadRequest("finetune_run", f"run {run.pk} has not succeeded ({run.status})")


def enqueue_finetune(run_id: int) -> None:
    from training.tasks import finetune

    finetune.delay(run_id)


def enqueue_generation(run_id: int) -> None:
    from training.tasks import generate

    generate.delay(run_id)


def requeue_stalled_jobs() -> list[str]:
    """Runs whose worker died go back to pending and are queued again; a fine-tune resumes
    from its latest checkpoint, a generation from the first task it had not done."""
    return [
        f"{model.__name__}:{pk}"
        for model, enqueue in ((FinetuneRun, enqueue_finetune), (GenerationRun, enqueue_generation))
        for pk in model.requeue_stalled(enqueue)
    ]
