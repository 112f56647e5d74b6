"""A reward-model training run from start to finish: the glue between the job row, the
judgements in Postgres and the plain ML code (rewards/trainer.py, evaluation/metrics.py).

Runs are created by rewards/scheduling.py (admin, API, beat, command); the Celery worker
(and ``manage.py train_reward``) calls :func:`execute`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from editloop.jobs import JobSkipped, Outcome, Progress, ProgressListener, run_job
from evaluation.metrics import calibrate_epsilon, human_ceiling, json_safe, reward_metrics
from rewards.config import split_options, warm_start_options
from rewards.dataset import ImageUnreadable, JudgementRecord
from rewards.feature_cache import shared_cache
from rewards.models import BaseCheckpoint, RewardModelVersion, RewardTrainingRun
from rewards.records import judgement_records
from rewards.registry import loaded_model
from rewards.reward_model import BlipRewardModel, RewardModelConfig
from rewards.scoring import score_judgement_variants
from rewards.selection import dataset_hash, training_judgements
from rewards.trainer import TrainConfig, TrainingCancelled, TrainResult, train
from training.training_utils import StepReport

log = logging.getLogger(__name__)


class NotEnoughData(JobSkipped):
    """Too few judgements to train or to select a model: the run is skipped."""


@dataclass(frozen=True)
class DataNeeds:
    train: int
    val: int


def data_needs() -> DataNeeds:
    return DataNeeds(
        train=settings.REWARD_MIN_TRAIN_JUDGEMENTS, val=settings.REWARD_MIN_VAL_JUDGEMENTS
    )


# --- executing a run -------------------------------------------------------------------------


def execute(run: RewardTrainingRun, on_progress: ProgressListener | None = None) -> None:
    """Train, evaluate, register a version, and promote it if it beats the active one.
    Safe to call twice: only the caller that moves the run to ``running`` does the work.
    ``on_progress(fraction, message)`` also sees every report (the command's progress bar)."""
    run_job(
        run,
        train_and_register,
        listeners=[on_progress] if on_progress else [],
        on_cancel=lambda run: "cancelled; checkpoints kept",
        cancels=(TrainingCancelled,),
        failures=(ImageUnreadable,),
    )


def train_and_register(run: RewardTrainingRun, progress: Progress) -> Outcome:
    version = _train_and_register(run, progress)
    return Outcome(_summary(version), {"version": version})


def _train_and_register(run: RewardTrainingRun, progress: Progress) -> RewardModelVersion:
    project = run.project
    judgements = training_judgements(project)
    judgement_ids = list(judgements.values_list("id", flat=True))
    records = judgement_records(judgements)
    by_split = split_records(records)
    check_enough(by_split)
    _report(
        progress,
        0.02,
        f"training on {len(by_split['train'])} judgements",
        judgements_used=len(records),
    )

    model_options, training_options = split_options(run.options)
    aspects = list(project.aspect_keys)
    # The run keeps the name it was asked for; the weights come from where that name points.
    base_path = BaseCheckpoint.path_for(run.base)
    model = BlipRewardModel.build(
        RewardModelConfig(base=base_path, heads=run.heads, aspects=aspects, **model_options)
    )
    # The worker's device (REWARD_DEVICE) unless the run's own options name one.
    config = TrainConfig(**{"device": settings.REWARD_DEVICE, **training_options})
    wanted = warm_start_options(run.options)
    start = start_weights(run, model, wanted.warm_start)
    if start.parent is not None:
        config = wanted.training(config)
    if start.requested:
        _report(progress, 0.02, start.message)
    result = train(
        model,
        by_split["train"],
        by_split["val"],
        config,
        run.work_dir,
        feature_cache=shared_cache(),
        on_progress=lambda report: _progress(run, progress, report),
        should_stop=run.cancel_was_requested,
    )
    _report(progress, 0.92, "evaluating on val and test", **curves(result.history))
    metrics = evaluate(model, by_split)
    version = register_version(run, model, result, judgement_ids, metrics, base_path, start)
    decide_promotion(version, model, by_split["val"], by_split["test"])
    return version


# --- warm start -------------------------------------------------------------------------------

# RewardModelConfig fields that do not change what the saved weights mean: the seed only
# draws the initial values a warm start replaces, and dropout acts in training only.
NOT_ARCHITECTURE = ("seed", "head_dropout")


@dataclass(frozen=True)
class StartWeights:
    """Where a run's weights came from: its parent version's (warm) or the base (cold)."""

    requested: bool
    parent: RewardModelVersion | None = None
    reason: str | None = None  # why a requested warm start fell back to a cold one

    @property
    def message(self) -> str:
        if self.parent is not None:
            return f"warm start from v{self.parent.number}'s weights"
        return f"cold start: {self.reason}"

    def as_config_entries(self) -> dict:
        """What the version's config records: the parent's number (or null) and why."""
        number = self.parent.number if self.parent is not None else None
        return {
            "warm_started_from": number,
            "warm_start": {"requested": self.requested, "reason": self.reason},
        }


def start_weights(run: RewardTrainingRun, model: BlipRewardModel, requested: bool) -> StartWeights:
    """With `warm_start`, load the active version's weights into the freshly built `model`
    when its architecture matches; otherwise the model keeps its base weights and the
    outcome says why."""
    if not requested:
        return StartWeights(requested=False)
    active = RewardModelVersion.active_for(run.project_id)
    if active is None:
        return StartWeights(True, reason="the project has no active version to start from")
    parent = loaded_model(active)
    mismatch = architecture_mismatch(active, run.base, model, parent)
    if mismatch:
        return StartWeights(True, reason=f"v{active.number} does not match this run: {mismatch}")
    # The whole state, frozen layers included: they equal the base's (never trained), so
    # the feature cache the parent filled still answers for this model.
    model.load_state_dict(parent.state_dict())
    return StartWeights(True, parent=active)


def architecture_mismatch(
    active: RewardModelVersion, base: str, model: BlipRewardModel, parent: BlipRewardModel
) -> str | None:
    """What keeps `parent`'s weights from starting `model` (None: nothing): another base
    name, configuration (NOT_ARCHITECTURE aside) or tensor shapes."""
    if active.base != base:
        return f"it was trained on base {active.base!r}, this run uses {base!r}"
    # A format-1 parent loads with change_features="frozen", fusion_at="every": the config
    # comparison below names that difference, no need to read its files again.
    differences = _config_differences(asdict(parent.config), asdict(model.config))
    if differences:
        return "; ".join(differences)
    theirs, mine = parent.state_dict(), model.state_dict()
    odd = sorted(
        key
        for key in set(theirs) | set(mine)
        if key not in theirs or key not in mine or theirs[key].shape != mine[key].shape
    )
    if odd:
        return f"weights differ in shape or name: {', '.join(odd[:5])}"
    return None


def _config_differences(theirs: dict, mine: dict) -> list[str]:
    # Through JSON, as the saved copy went: tuples and lists compare equal.
    theirs, mine = json.loads(json.dumps(theirs)), json.loads(json.dumps(mine))
    differences = []
    for key in sorted(set(theirs) | set(mine)):
        if key in NOT_ARCHITECTURE or theirs.get(key) == mine.get(key):
            continue
        if key == "blip_config":
            differences.append("blip_config: another BLIP architecture")
        else:
            differences.append(f"{key}: {theirs.get(key)!r} there, {mine.get(key)!r} here")
    return differences


def split_records(records: list[JudgementRecord]) -> dict[str, list[JudgementRecord]]:
    by_split: dict[str, list[JudgementRecord]] = {"train": [], "val": [], "test": []}
    for record in records:
        by_split[record.split].append(record)
    return by_split


def check_enough(by_split: dict[str, list[JudgementRecord]]) -> None:
    needs = data_needs()
    usable = {split: [r for r in found if not r.unsure] for split, found in by_split.items()}
    if len(usable["train"]) < needs.train or len(usable["val"]) < needs.val:
        raise NotEnoughData(
            f"needs at least {needs.train} judgements on train-split tasks and {needs.val} on "
            f"val-split tasks (not marked unsure); has {len(usable['train'])} and "
            f"{len(usable['val'])}. Collect more judgements, or lower "
            "REWARD_MIN_TRAIN_JUDGEMENTS / REWARD_MIN_VAL_JUDGEMENTS."
        )


def _report(progress: Progress, fraction: float, message: str, **fields: object) -> None:
    progress(fraction, message, **json_safe(fields))  # a NaN loss must not fail the run


def _progress(run: RewardTrainingRun, progress: Progress, report: StepReport) -> None:
    """The live loss curve, a point per step report (reports between steps have no loss);
    the trainer's history replaces it when training ends."""
    point = {"step": report.step, "loss": report.loss}
    curve = run.loss_curve + ([point] if report.loss is not None else [])
    _report(
        progress, 0.02 + 0.9 * report.fraction, report.message,
        current_loss=report.loss, loss_curve=curve[-2000:],
    )  # fmt: skip


def curves(history: list[dict]) -> dict[str, list[dict]]:
    """The trainer's history as the run's loss and validation curves (admin plots)."""
    return {
        "loss_curve": [
            {"step": row["step"], "loss": row["train_loss"]}
            for row in history
            if row.get("train_loss") is not None
        ],
        "val_curve": [
            {"step": row["step"], "accuracy": row["val_pairwise_accuracy"]}
            for row in history
            if row.get("val_pairwise_accuracy") is not None
        ],
    }


def evaluate(model: BlipRewardModel, by_split: dict[str, list[JudgementRecord]]) -> dict:
    """Metrics on val and test, each beside the human ceiling on the same items. The tie
    threshold ε is calibrated on val and reused on test (Deutsch et al. 2023, §4)."""
    cache = shared_cache()
    scores = {
        split: score_judgement_variants(model, by_split[split], cache=cache)
        for split in ("val", "test")
    }
    epsilon, _ = calibrate_epsilon(scores["val"], by_split["val"])
    metrics = {"epsilon": epsilon}
    for split in ("val", "test"):
        if by_split[split]:
            metrics[split] = reward_metrics(scores[split], by_split[split], epsilon)
            metrics[split]["human_ceiling"] = human_ceiling(by_split[split])
    return metrics


def register_version(
    run: RewardTrainingRun,
    model: BlipRewardModel,
    result: TrainResult,
    judgement_ids: list[int],
    metrics: dict,
    base_path: str | None = None,
    start: StartWeights | None = None,
) -> RewardModelVersion:
    """Save the model and its row. Metrics go through `json_safe`: an undefined figure is
    stored as null (its reason beside it), never as a NaN Postgres refuses."""
    with transaction.atomic():
        number = (
            RewardModelVersion.objects.select_for_update()
            .filter(project=run.project)
            .aggregate(last=Max("number"))["last"]
            or 0
        ) + 1
        directory = f"project-{run.project_id}/v{number}"
        model.save(settings.REWARD_MODEL_ROOT / directory)
        return RewardModelVersion.objects.create(
            project=run.project,
            number=number,
            base=run.base,
            heads=run.heads,
            is_random_init=model.is_random_init,
            directory=directory,
            config=json_safe(
                {
                    "base": {"name": run.base, "path": base_path or run.base},
                    "model": model.config_dict(),
                    "training": result.config,
                    "result": _result_summary(result),
                    **(start or StartWeights(requested=False)).as_config_entries(),
                }
            ),
            last_judgement_id=max(judgement_ids),
            judgement_ids=judgement_ids,
            dataset_hash=dataset_hash(judgement_ids),
            metrics=json_safe(metrics),
            parent=RewardModelVersion.active_for(run.project_id),
        )


def decide_promotion(
    version: RewardModelVersion,
    model: BlipRewardModel,
    val: list[JudgementRecord],
    test: list[JudgementRecord] | None = None,
) -> bool:
    """Active only if it beats the active version on the same val judgements, each model
    with its own ε. Test figures of both are stored for reporting only: choosing on test
    would make test a selection set and its figures optimistic. The first version of a
    project becomes active; with no val judgements an existing active version stays."""
    active = version.parent
    if active is None:
        version.promote()
        return True
    test = test or []
    cache = shared_cache()
    records = [*val, *test]
    mine = score_judgement_variants(model, records, cache=cache)
    theirs = score_judgement_variants(loaded_model(active), records, cache=cache)

    def accuracies(split: list[JudgementRecord]) -> dict:
        return {
            "items": len(split),
            "candidate": _accuracy(mine, split, version.metrics.get("epsilon")),
            "active": _accuracy(theirs, split, active.metrics.get("epsilon")),
        }

    on_val = accuracies(val)
    promoted, reason = _promotion_verdict(on_val["candidate"], on_val["active"], len(val))
    versus = {
        "split": "val",
        "against_version": active.number,
        **on_val,
        "promoted": promoted,
        "reason": reason,
        "test": {**accuracies(test), "note": "reported only; not used to choose"},
    }
    version.metrics = json_safe({**version.metrics, "versus_active": versus})
    version.save(update_fields=["metrics"])
    if promoted:
        version.promote()
    return promoted


def _accuracy(scores: dict, records: list[JudgementRecord], epsilon: float | None) -> float | None:
    if not records:
        return None
    return reward_metrics(scores, records, epsilon)["pairwise_accuracy"]


def _promotion_verdict(
    candidate: float | None, active: float | None, val_items: int
) -> tuple[bool, str]:
    """(promote?, why), in words the run's message and the admin show."""
    if val_items == 0:
        return False, "no val judgements to compare on: the active version stays"
    if not _beats(candidate, active):
        return False, "it does not beat the active version on val"
    return True, "it beats the active version on val"


def _beats(candidate: float | None, active: float | None) -> bool:
    """An undefined accuracy (no pairs to judge on) proves nothing: the active one stays."""
    return candidate is not None and (active is None or candidate > active)


def _result_summary(result: TrainResult) -> dict:
    keys = (
        "best_step", "steps", "epochs", "stopped_early", "resumed_from", "n_train_pairs",
        "n_val_pairs", "cache_hits", "cache_misses", "prefix_cache_hits", "prefix_cache_misses",
        "seconds",
    )  # fmt: skip
    return {key: getattr(result, key) for key in keys}


def _summary(version: RewardModelVersion) -> str:
    accuracy = version.headline()
    shown = f"{accuracy:.3f}" if accuracy is not None else "n/a"
    state = "now active" if version.is_active else "kept as a candidate"
    versus = version.metrics.get("versus_active")
    if versus:
        state += f" ({versus['reason']}, v{versus['against_version']})"
    label = " (tiny random-init model)" if version.is_random_init else ""
    return f"v{version.number}{label}: test pairwise accuracy {shown}; {state}{_start(version)}"


def _start(version: RewardModelVersion) -> str:
    start = version.config.get("warm_start") or {}
    if not start.get("requested"):
        return ""
    parent = version.config.get("warm_started_from")
    if parent is not None:
        return f"; warm-started from v{parent}"
    return f"; cold start: {start.get('reason')}"
