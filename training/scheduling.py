"""Starting fine-tuning and generation runs (admin, API), and requeueing the ones whose
worker died. Light on purpose: the web server and beat import this, never torch."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max

from annotation.models import Project
from editloop.errors import FieldErrors, RequestInvalid
from editloop.jobs import enqueue
from rewards.models import RewardModelVersion
from training.config import config_from_options
from training.feedback import Filters
from training.models import FinetuneRun, GenerationRun


class FinetuneAlreadyRunning(Exception):
    def __init__(self, run: FinetuneRun) -> None:
        super().__init__(f"fine-tune run {run.pk} of {run.project} is already {run.status}")
        self.run = run


def check_base(base: str, field: str = "base") -> str:
    if base == "tiny" or (Path(base) / "model_index.json").is_file():
        return base
    raise RequestInvalid.of(
        field,
        f"{base!r} is neither 'tiny' nor a diffusers pipeline directory (no model_index.json)",
    )


def _may_name_paths(user: User | None) -> bool:
    """A pipeline directory reads the workers' disk: staff only. No user is the admin (where
    only staff reach) or the shell."""
    return user is None or user.is_staff


def check_reward_version(
    project: Project, version: RewardModelVersion | None
) -> RewardModelVersion | None:
    if version is not None and version.project_id != project.pk:
        raise RequestInvalid.of("reward_version", f"{version} belongs to another project")
    return version


def check_filters(filters: dict) -> dict:
    try:
        Filters.from_dict(filters)
    except ValueError as error:  # Filters' own refusal, naming the filter
        raise RequestInvalid.of("filters", str(error)) from None
    return filters


def check_options(method: str, options: dict) -> dict:
    try:
        config_from_options(method, options)
    except ValueError as error:  # the config's own refusal, naming the option
        raise RequestInvalid.of("options", str(error)) from None
    except TypeError as error:  # a value of the wrong type, e.g. "5" for max_steps
        raise RequestInvalid.of("options", f"an option has the wrong type: {error}") from None
    return options


def _not_a_choice(value: object, choices: list[str]) -> str:
    return f'"{value}" is not a valid choice; one of {", ".join(choices)}'


def check_finetune_request(
    project: Project,
    *,
    method: str,
    base: str,
    reward_source: str,
    reward_version: RewardModelVersion | None,
    filters: dict,
    options: dict,
    user: User | None = None,  # who asks: see _may_name_paths
) -> None:
    """The one check of a launch request (the API's serializer only parses types; the
    admin and request_finetune call this): RequestInvalid naming every wrong field."""
    problems = FieldErrors()
    if method not in FinetuneRun.Method.values:
        problems.add("method", _not_a_choice(method, FinetuneRun.Method.values))
    else:  # the options are the chosen method's
        with problems.gather():
            check_options(method, options)
    if reward_source not in FinetuneRun.RewardSource.values:
        problems.add("reward_source", _not_a_choice(reward_source, FinetuneRun.RewardSource.values))
    if base not in ("tiny", settings.FINETUNE_BASE) and not _may_name_paths(user):
        problems.add(
            "base",
            f"only staff may name a pipeline directory; use 'tiny' or '{settings.FINETUNE_BASE}'",
        )
    else:
        with problems.gather():
            check_base(base)
    with problems.gather():
        check_reward_version(project, reward_version)
    with problems.gather():
        check_filters(filters)
    problems.raise_if_any()


def request_finetune(
    project: Project,
    *,
    method: str,
    user: User | None = None,  # who asks: see _may_name_paths
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
        reward_version=reward_version, filters=filters, options=options, user=user,
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
    user: User | None = None,  # who asks: see _may_name_paths
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
        user=user,
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
    user: User | None = None,  # who asks: see _may_name_paths
) -> int:
    """How many variants each task gets. The one check of a generation request (the API's
    serializer only parses types): RequestInvalid naming every wrong field."""
    problems = FieldErrors()
    k = _variants_per_task(project, variants_per_task, seeds)
    if project.mode == Project.Mode.PAIRWISE and k != 2:
        problems.add("variants_per_task", "a pairwise project takes exactly 2 variants")
    elif not 2 <= k <= 16:
        problems.add(
            "variants_per_task", f"must be greater than or equal to 2 and at most 16, not {k}"
        )
    else:  # one seed and one guidance pair per variant: only against a number that holds
        if seeds is not None and len(seeds) != k:
            problems.add("seeds", f"give one seed per variant ({k}), not {len(seeds)}")
        if guidance_scales is not None and (
            len(guidance_scales) != k or not all(_is_guidance_pair(g) for g in guidance_scales)
        ):
            problems.add("guidance_scales", f"give {k} [text, image] guidance pairs, each >= 0")
    if editor not in ("procedural", "tiny") and not _may_name_paths(user):
        problems.add(
            "editor",
            "only staff may name a pipeline directory; use 'procedural', 'tiny' or a finetune_run",
        )
    elif finetune_run is not None:
        with problems.gather():
            _check_finetuned(project, finetune_run)
    elif editor not in ("procedural", "tiny"):
        with problems.gather():
            check_base(editor, "editor")
    problems.raise_if_any()
    return k


def _variants_per_task(project: Project, asked: int | None, seeds: list[int] | None) -> int:
    if asked is not None:
        return asked
    if seeds:
        return len(seeds)
    return 2 if project.mode == Project.Mode.PAIRWISE else 4


def _is_guidance_pair(pair: object) -> bool:
    return (
        isinstance(pair, list)
        and len(pair) == 2
        and all(isinstance(g, int | float) and not isinstance(g, bool) and g >= 0 for g in pair)
    )


def _check_finetuned(project: Project, run: FinetuneRun) -> None:
    if run.project_id != project.pk:
        raise RequestInvalid.of("finetune_run", f"run {run.pk} belongs to another project")
    if run.status != FinetuneRun.Status.SUCCEEDED:
        raise RequestInvalid.of("finetune_run", f"run {run.pk} has not succeeded ({run.status})")


# By name: training/tasks.py imports this module.
def enqueue_finetune(run_id: int) -> None:
    enqueue("training.finetune", run_id)


def enqueue_generation(run_id: int) -> None:
    enqueue("training.generate", run_id)


def requeue_stalled_jobs() -> list[str]:
    """Runs whose worker died go back to pending and are queued again; a fine-tune resumes
    from its latest checkpoint, a generation from the first task it had not done."""
    return [
        f"{model.__name__}:{pk}"
        for model, enqueue in ((FinetuneRun, enqueue_finetune), (GenerationRun, enqueue_generation))
        for pk in model.requeue_stalled(enqueue)
    ]
