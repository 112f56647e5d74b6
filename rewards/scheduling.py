"""Starting reward-model retrains: on request (admin, API, command) and on schedule.

Light on purpose: the web server and beat import this, never torch. The work itself is
in rewards/runs.py, which only the Celery worker (and ``manage.py train_reward``) loads.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from annotation.models import Project
from rewards.config import split_options
from rewards.models import RewardTrainingRun
from rewards.selection import training_judgements

log = logging.getLogger(__name__)


class RetrainAlreadyRunning(Exception):
    def __init__(self, run: RewardTrainingRun) -> None:
        super().__init__(f"reward run {run.pk} of {run.project} is already {run.status}")
        self.run = run


# --- starting a run --------------------------------------------------------------------------


def request_retrain(
    project: Project,
    *,
    trigger: str,
    user=None,  # noqa: ANN001  (a User or None for the schedule)
    base: str | None = None,
    heads: str | None = None,
    options: dict | None = None,
    enqueue: bool = True,
) -> RewardTrainingRun:
    """Create a pending run and queue it once the transaction commits. Its options are the
    project's `reward_options` overridden key by key by `options` (ValueError names a bad
    one). Single flight: a project with a pending or running retrain raises
    RetrainAlreadyRunning (the database holds the rule, so two simultaneous requests cannot
    both get through)."""
    options = {**project.reward_options, **(options or {})}
    split_options(options)
    run = RewardTrainingRun.create_single_flight(
        RetrainAlreadyRunning,
        project=project,
        trigger=trigger,
        requested_by=user,
        base=base or settings.REWARD_BASE,
        heads=heads or "fine",
        options=options,
        new_judgements=new_judgements_since_last_version(project),
    )
    if enqueue:
        transaction.on_commit(lambda: _enqueue(run.pk))
    return run


def _enqueue(run_id: int) -> None:
    from rewards.tasks import retrain

    retrain.delay(run_id)


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
        except ValueError as error:  # one project's bad reward options stop only its retrains
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
