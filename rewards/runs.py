"""A reward-model training run from start to finish: the glue between the job row, the
judgements in Postgres and the plain ML code (rewards/trainer.py, evaluation/metrics.py).

Runs are created by rewards/scheduling.py (admin, API, beat, command); the Celery worker
(and ``manage.py train_reward``) calls :func:`execute`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from editloop.jobs import JobCancelled
from evaluation.metrics import calibrate_epsilon, human_ceiling, reward_metrics
from rewards.config import split_options
from rewards.dataset import ImageUnreadable, JudgementRecord
from rewards.models import RewardModelVersion, RewardTrainingRun
from rewards.records import judgement_records
from rewards.registry import loaded_model
from rewards.reward_model import BlipRewardModel, RewardModelConfig
from rewards.scoring import score_judgement_variants
from rewards.selection import dataset_hash, training_judgements
from rewards.trainer import TrainConfig, TrainingCancelled, TrainResult, train

log = logging.getLogger(__name__)


class NotEnoughData(Exception):
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


ProgressHook = Callable[[float, str], None]


def execute(run: RewardTrainingRun, on_progress: ProgressHook | None = None) -> None:
    """Train, evaluate, register a version, and promote it if it beats the active one.
    Safe to call twice: only the caller that moves the run to ``running`` does the work.
    ``on_progress(fraction, message)`` also sees every report (the command's progress bar)."""
    if not run.claim():
        return
    run.echo = on_progress
    try:
        version = _train_and_register(run)
    except NotEnoughData as reason:
        run.finish(RewardTrainingRun.Status.SKIPPED, str(reason))
    except (JobCancelled, TrainingCancelled):
        run.finish(RewardTrainingRun.Status.CANCELLED, "cancelled; checkpoints kept")
    except ImageUnreadable as error:
        run.finish(RewardTrainingRun.Status.FAILED, f"{error}. Re-import or remove that image.")
    except Exception as error:
        log.exception("reward run %s failed", run.pk)
        run.finish(RewardTrainingRun.Status.FAILED, f"{type(error).__name__}: {error}")
        raise
    else:
        run.finish(RewardTrainingRun.Status.SUCCEEDED, _summary(version), version=version)
        if version.is_active:
            from rewards.tasks import score_variants

            transaction.on_commit(lambda: score_variants.delay(version.pk))


def _train_and_register(run: RewardTrainingRun) -> RewardModelVersion:
    project = run.project
    judgements = training_judgements(project)
    judgement_ids = list(judgements.values_list("id", flat=True))
    records = judgement_records(judgements)
    by_split = split_records(records)
    check_enough(by_split)
    _report(
        run, 0.02, f"training on {len(by_split['train'])} judgements", judgements_used=len(records)
    )

    model_options, training_options = split_options(run.options)
    aspects = list(project.aspect_keys)
    model = BlipRewardModel.build(
        RewardModelConfig(base=run.base, heads=run.heads, aspects=aspects, **model_options)
    )
    config = TrainConfig(**training_options)
    result = train(
        model,
        by_split["train"],
        by_split["val"],
        config,
        run.work_dir,
        feature_cache=feature_cache(),
        on_progress=lambda fraction, loss, message: _progress(run, fraction, loss, message),
        should_stop=run.cancel_was_requested,
    )
    _report(run, 0.92, "evaluating on val and test", **curves(result.history))
    metrics = evaluate(model, by_split)
    version = register_version(run, model, result, judgement_ids, metrics)
    decide_promotion(version, model, by_split["test"])
    return version


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


def feature_cache():  # noqa: ANN201
    from rewards.feature_cache import FeatureCache

    return FeatureCache(settings.REWARD_MODEL_ROOT / "feature-cache")


def _report(run: RewardTrainingRun, fraction: float, message: str, **fields: object) -> None:
    run.report(fraction, message, **fields)
    if getattr(run, "echo", None):
        run.echo(fraction, message)


_STEP = re.compile(r"step (\d+)/")


def _progress(run: RewardTrainingRun, fraction: float, loss: float | None, message: str) -> None:
    """The live loss curve; the trainer's history replaces it when training ends."""
    step = _STEP.search(message)
    point = {"step": int(step.group(1)) if step else len(run.loss_curve), "loss": loss}
    curve = run.loss_curve + ([point] if loss is not None else [])
    _report(run, 0.02 + 0.9 * fraction, message, current_loss=loss, loss_curve=curve[-2000:])


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
    cache = feature_cache()
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
) -> RewardModelVersion:
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
            config={
                "model": model.config_dict(),
                "training": result.config,
                "result": _result_summary(result),
            },
            last_judgement_id=max(judgement_ids),
            judgement_ids=judgement_ids,
            dataset_hash=dataset_hash(judgement_ids),
            metrics=metrics,
            parent=RewardModelVersion.active_for(run.project_id),
        )


def decide_promotion(
    version: RewardModelVersion, model: BlipRewardModel, heldout: list[JudgementRecord]
) -> bool:
    """Active only if it beats the active version on the same held-out (test) judgements;
    the first version of a project becomes active."""
    active = version.parent
    if active is None:
        version.promote()
        return True
    cache = feature_cache()
    mine = reward_metrics(
        score_judgement_variants(model, heldout, cache=cache),
        heldout,
        version.metrics.get("epsilon"),
    )
    theirs = reward_metrics(
        score_judgement_variants(loaded_model(active), heldout, cache=cache),
        heldout,
        active.metrics.get("epsilon"),
    )
    versus = {
        "items": len(heldout),
        "against_version": active.number,
        "candidate": mine["pairwise_accuracy"],
        "active": theirs["pairwise_accuracy"],
    }
    version.metrics = {**version.metrics, "versus_active": versus}
    version.save(update_fields=["metrics"])
    if mine["pairwise_accuracy"] > theirs["pairwise_accuracy"]:
        version.promote()
        return True
    return False


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
    label = " (tiny random-init model)" if version.is_random_init else ""
    return f"v{version.number}{label}: test pairwise accuracy {shown}; {state}"
