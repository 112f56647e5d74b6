"""Starting reward-model retrains: on request (admin, API, command) and on schedule; and
the one check of the base a retrain names (`check_base`) with the registry of named bases
(`register_base`, `recheck_base`) that the API, the admin and both commands share.

Light on purpose: the web server and beat import this, never torch. The work itself is
in rewards/runs.py, which only the Celery worker (and ``manage.py train_reward``) loads.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import IntegrityError, transaction
from django.db.models import Max

from annotation.models import Project
from editloop.errors import FieldErrors, RequestInvalid
from editloop.jobs import enqueue
from rewards.bases import BaseInfo, BaseInvalid, inspect_base
from rewards.config import TINY, split_options
from rewards.models import BaseCheckpoint, RewardTrainingRun
from rewards.selection import training_judgements

log = logging.getLogger(__name__)


class RetrainAlreadyRunning(Exception):
    def __init__(self, run: RewardTrainingRun) -> None:
        super().__init__(f"reward run {run.pk} of {run.project} is already {run.status}")
        self.run = run


class InvalidBase(RequestInvalid):
    """A base (or a base to register) that cannot be used: a RequestInvalid of one field
    (`field`, the API answers 400 {field: [message]}). Its str() is the bare message, as
    the commands and the admin show it next to the input it is about."""

    def __init__(self, message: str, field: str = "base") -> None:
        super().__init__({field: [message]})
        self.field, self.message = field, message

    def __str__(self) -> str:
        return self.message


# --- starting a run --------------------------------------------------------------------------


def request_retrain(
    project: Project,
    *,
    trigger: str,
    user: User | None = None,  # None: the schedule
    base: str | None = None,
    heads: str | None = None,
    options: dict | None = None,
    enqueue: bool = True,
) -> RewardTrainingRun:
    """Create a pending run and queue it once the transaction commits. Its base goes through
    `check_base`; its options are the project's `reward_options` overridden key by key by
    `options`. A bad base or option raises RequestInvalid naming `base` / `options` (both,
    when both are wrong). Single flight: a project with a pending or running retrain raises
    RetrainAlreadyRunning (the database holds the rule, so two simultaneous requests cannot
    both get through)."""
    problems = FieldErrors()
    with problems.gather():
        base = check_base(
            base or settings.REWARD_BASE, may_name_paths=_may_name_paths(trigger, user)
        )
    options = {**_trigger_defaults(trigger), **project.reward_options, **(options or {})}
    with problems.gather():
        check_options(options)
    problems.raise_if_any()
    run = RewardTrainingRun.create_single_flight(
        RetrainAlreadyRunning,
        project=project,
        trigger=trigger,
        requested_by=user,
        base=base,
        heads=heads or "fine",
        options=options,
        new_judgements=new_judgements_since_last_version(project),
    )
    if enqueue:
        transaction.on_commit(lambda: _enqueue(run.pk))
    return run


def check_options(options: dict) -> None:
    """A retrain's merged options, checked by rewards.config (torch- and Django-free, so it
    refuses with a ValueError of its own): that refusal is the request's `options` field."""
    try:
        split_options(options)
    except ValueError as error:
        raise RequestInvalid.of("options", str(error)) from None


def _trigger_defaults(trigger: str) -> dict:
    """Scheduled retrains warm-start from the active version (issue 11: cheap periodic
    retrains); the project's reward_options and the request's options still override it.
    Requests by people start cold unless they ask."""
    return {"warm_start": True} if trigger == RewardTrainingRun.Trigger.SCHEDULE else {}


def _may_name_paths(trigger: str, user: User | None) -> bool:
    """Paths are for staff, the shell (``train_reward``) and the schedule (the settings'
    REWARD_BASE): a path reads the workers' disk, so project managers pick names."""
    if trigger in (RewardTrainingRun.Trigger.COMMAND, RewardTrainingRun.Trigger.SCHEDULE):
        return True
    return user is not None and user.is_staff


def _enqueue(run_id: int) -> None:
    enqueue("rewards.retrain", run_id)  # by name: rewards/tasks.py imports this module


def new_judgements_since_last_version(project: Project) -> int:
    """Judgements newer than the newest judgement any version of the project was trained on."""
    judgements = training_judgements(project)
    seen = project.reward_models.aggregate(last=Max("last_judgement_id"))["last"]
    if seen is not None:
        judgements = judgements.filter(pk__gt=seen)
    return judgements.count()


def retrain_due_projects() -> list[RewardTrainingRun]:
    """The scheduled check: a retrain for every project with at least its threshold of new
    judgements and no retrain under way. A project whose last run was skipped for too little
    data waits for more judgements instead of being skipped again every few minutes."""
    started = []
    for project in Project.objects.all():
        new = new_judgements_since_last_version(project)
        if new < project.retrain_min_new_judgements or _skipped_with(project, new):
            continue
        try:
            started.append(request_retrain(project, trigger=RewardTrainingRun.Trigger.SCHEDULE))
        except RetrainAlreadyRunning:
            continue
        except RequestInvalid as error:  # one project's bad reward options stop only its own
            log.error("no scheduled retrain for %s: %s", project, error)
    return started


def _skipped_with(project: Project, new_judgements: int) -> bool:
    last = project.reward_runs.order_by("-created_at").first()
    return (
        last is not None
        and last.status == RewardTrainingRun.Status.SKIPPED
        and last.new_judgements == new_judgements
    )


def requeue_stalled_runs() -> list[int]:
    """Runs whose worker died (no heartbeat) go back to pending and are queued again; the
    trainer resumes from the run's last checkpoint."""
    return RewardTrainingRun.requeue_stalled(_enqueue)


# --- bases: the one check, and the registry of named ones -----------------------------------


def check_base(base: str, *, may_name_paths: bool) -> str:
    """The base as a run records it: `tiny`, a registered name (checked when registered), or,
    where paths are allowed, an absolute directory that `inspect_base` accepts. The
    deployment's default (REWARD_BASE) is allowed to everyone, and checked like any path."""
    base = base.strip()
    if base == TINY or BaseCheckpoint.objects.filter(name=base).exists():
        return base
    if not _looks_like_a_path(base):
        raise InvalidBase(f"no registered base named {base!r}; GET /api/v1/bases/ lists them")
    if not (may_name_paths or base == settings.REWARD_BASE):
        raise InvalidBase(
            f"only staff may name a checkpoint directory; use 'tiny' or a registered base name "
            f"(GET /api/v1/bases/), not {base!r}"
        )
    inspect_directory(base)
    return base


def _looks_like_a_path(base: str) -> bool:
    return "/" in base or "\\" in base or base.startswith(("~", "."))


def inspect_directory(path: str, field: str = "base") -> BaseInfo:
    """`inspect_base` on an absolute directory; InvalidBase with its message otherwise."""
    if not Path(path).is_absolute():
        raise InvalidBase(f"{path!r} is not an absolute path", field)
    try:
        return inspect_base(path)
    except BaseInvalid as error:
        raise InvalidBase(str(error), field) from None  # its message names the file


def register_base(
    name: str,
    path: str,
    *,
    user: User | None = None,
    replace: bool = False,
) -> BaseCheckpoint:
    """Check `path` and save it under `name`. A bad name or directory raises InvalidBase
    (field `name` or `path`) and saves nothing; an existing name needs `replace`, which
    re-checks and may point it at another directory."""
    name = checked_base_name(name)
    info = inspect_directory(path, field="path")
    try:
        with transaction.atomic():
            found = BaseCheckpoint.objects.select_for_update().filter(name=name).first()
            if found is not None and not replace:
                raise InvalidBase(
                    f"a base named {name!r} is registered already (replace it to re-check)",
                    "name",
                )
            base = found or BaseCheckpoint(name=name, registered_by=user)
            base.path = str(path)
            base.apply_check(info)
            base.save()
    except IntegrityError:  # registered by someone else between the check and the insert
        raise InvalidBase(f"a base named {name!r} is registered already", "name") from None
    return base


def recheck_base(base: BaseCheckpoint) -> BaseCheckpoint:
    """Inspect a registered base's directory again (after the files changed); the row keeps
    its last good figures when the check fails (InvalidBase)."""
    info = inspect_directory(base.path, field="path")
    base.apply_check(info)
    base.save(update_fields=["kind", "parameters", "image_size", "info", "checked_at"])
    return base


def checked_base_name(name: str) -> str:
    name = name.strip()
    try:
        validate_slug(name)
    except ValidationError:
        raise InvalidBase(
            f"{name!r}: a base name is letters, digits, - and _ (it is not a path)", "name"
        ) from None
    if name == TINY:
        raise InvalidBase("'tiny' is the built-in random-init base; choose another name", "name")
    return name
