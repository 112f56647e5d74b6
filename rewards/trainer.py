"""Train a BlipRewardModel on judgement records: one readable loop, resumable checkpoints.

AdamW with linear warmup then cosine decay (ImageReward §4.1 trains BLIP this way),
gradient clipping, a fixed seed, early stopping on the val pairwise accuracy (or val loss),
and complete checkpoints in `output_dir/checkpoint-<step>/` (model's trainable weights,
optimizer, scheduler, step, RNG states, best metric, history). Calling `train` again with
the same output_dir resumes from the newest checkpoint; a finished run returns at once.

Batches are judgements, not pairs: the K variants of a judgement are scored together and
its Bradley-Terry pairs are weighted 1 / (its pairs), so each judgement counts once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from evaluation.metrics import reward_metrics
from rewards.config import TrainConfig
from rewards.dataset import (
    JudgementBatch,
    JudgementCollator,
    JudgementDataset,
    JudgementRecord,
    PixelSource,
    expand_pairs,
)
from rewards.device import resolve_device
from rewards.feature_cache import FeatureCache
from rewards.losses import LossParts, reward_loss
from rewards.reward_model import BlipRewardModel, RewardOutput
from training.training_utils import (
    ProgressFn,
    ShouldStop,
    StepReport,
    checkpoint_dir,
    latest_checkpoint,
    prune_checkpoints,
    replacing_directory,
    report_step,
    restore_rng_states,
    rng_states,
    seed_everything,
    stop_if_asked,
)
from training.training_utils import TrainingCancelled as TrainingCancelled  # train raises it

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
BEST_FILE = "best.pt"
# ImageReward §4.1 fine-tunes BLIP at 1e-5; a random-init tiny model needs a far larger step.
DEFAULT_LR_PRETRAINED = 1e-5
DEFAULT_LR_TINY = 1e-3


@dataclass
class TrainResult:
    best_step: int
    best_metric: float | None  # the select_metric at best_step (None without val data)
    best_val: dict[str, Any]  # val metrics at best_step
    history: list[dict[str, Any]]  # rows: step, epoch, train_loss, ..., val_* at evaluations
    steps: int
    epochs: float
    stopped_early: bool
    resumed_from: int | None
    n_train_judgements: int
    n_val_judgements: int
    n_train_pairs: int
    n_val_pairs: int
    cache_hits: int
    cache_misses: int
    seconds: float
    output_dir: str
    config: dict[str, Any] = field(default_factory=dict)
    prefix_cache_hits: int = 0  # text prefixes of a frozen_prefix model
    prefix_cache_misses: int = 0

    @property
    def loss_curve(self) -> list[dict[str, Any]]:
        """History rows reduced to what a loss plot needs."""
        keys = ("step", "epoch", "train_loss", "val_loss", "val_pairwise_accuracy")
        return [{k: row[k] for k in keys if k in row} for row in self.history]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _State:
    """Everything besides tensors that a checkpoint must restore."""

    step: int = 0
    best_step: int = 0
    best_metric: float | None = None
    best_loss: float | None = None
    best_val: dict[str, Any] = field(default_factory=dict)
    evaluations_since_best: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


# --- setup ----------------------------------------------------------------------------------


def cosine_with_warmup(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR multiplier: linear 0 -> 1 over the warmup, then cosine 1 -> 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


@dataclass
class _Run:
    """The pieces one training run is made of."""

    model: BlipRewardModel
    config: TrainConfig
    device: torch.device
    train_set: JudgementDataset
    val_set: JudgementDataset
    val_records: list[JudgementRecord]
    collate: JudgementCollator
    from_features: bool
    steps_per_epoch: int
    total_steps: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    output_dir: Path


@dataclass
class _Inputs:
    images: Callable
    from_features: bool
    prefixes: Callable | None = None


def _inputs(
    model: BlipRewardModel,
    records: Sequence[JudgementRecord],
    cache: FeatureCache | None,
    progress: ProgressFn,
) -> _Inputs:
    """Cached frozen features when a cache is given (encoding only images it lacks), else
    pixels; a frozen_prefix model's cached text prefixes too. With features, the frozen
    layers never run during training."""
    if cache is None or not model.has_frozen_vision:
        return _Inputs(PixelSource(model.image_processor), False)
    refs = [ref for r in records for ref in (r.source, *r.variants.values())]

    def report(what: str) -> Callable[[int, int], None]:
        def call(done: int, total: int) -> None:
            message = f"encoding {total} new {what} for the feature cache: {done}/{total}"
            progress(StepReport(0, 0, message=message))  # before step 0: no total yet

        return call

    cache.ensure(model, refs, on_progress=report("images"))
    if not model.config.frozen_prefix:
        return _Inputs(cache.source(model), True)
    cache.ensure_prefixes(model, records, on_progress=report("text prefixes"))
    return _Inputs(cache.source(model), True, cache.prefix_source(model))


def _setup(
    model: BlipRewardModel,
    train_records: Sequence[JudgementRecord],
    val_records: Sequence[JudgementRecord],
    config: TrainConfig,
    output_dir: Path,
    cache: FeatureCache | None,
    progress: ProgressFn,
) -> _Run:
    device = resolve_device(config.device)
    model.to(device)
    inputs = _inputs(model, [*train_records, *val_records], cache, progress)
    options = {
        "tie_mode": config.tie_mode,
        "include_unsure": config.include_unsure,
        "prefixes": inputs.prefixes,
    }
    train_set = JudgementDataset(train_records, model.aspects, inputs.images, **options)
    val_set = JudgementDataset(val_records, model.aspects, inputs.images, **options)
    if len(train_set) == 0:
        raise ValueError("no usable training judgements (every one unsure or without targets)")
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    lr = config.lr or (DEFAULT_LR_TINY if model.is_random_init else DEFAULT_LR_PRETRAINED)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=config.weight_decay)
    warmup_steps = round(config.warmup * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(total_steps, warmup_steps)
    )
    collate = JudgementCollator(model.tokenizer, model.config.max_text_length)
    return _Run(
        model, config, device, train_set, val_set, list(val_records), collate, inputs.from_features,
        steps_per_epoch, total_steps, optimizer, scheduler, output_dir,
    )  # fmt: skip


# --- checkpoints ------------------------------------------------------------------------------


def save_checkpoint(run: _Run, state: _State) -> Path:
    """Write checkpoint-<step>/state.pt atomically and keep the newest `keep_checkpoints`."""
    target = checkpoint_dir(run.output_dir, state.step)
    payload = {
        "model": run.model.trainable_state_dict(),
        "frozen_fingerprint": run.model.frozen_fingerprint,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng": rng_states(),
        "state": asdict(state),
        "config": run.config.as_dict(),
    }
    with replacing_directory(target) as temporary:
        torch.save(payload, temporary / STATE_FILE)
    prune_checkpoints(run.output_dir, run.config.keep_checkpoints, STATE_FILE)
    return target


def _restore(run: _Run) -> tuple[_State, int | None]:
    """Load the newest checkpoint, if any; returns the state and the step resumed from."""
    latest = latest_checkpoint(run.output_dir, STATE_FILE)
    if latest is None:
        return _State(), None
    payload = torch.load(latest / STATE_FILE, map_location="cpu", weights_only=False)
    if payload["frozen_fingerprint"] != run.model.frozen_fingerprint:
        raise ValueError(
            f"{latest} was trained on other frozen weights than this model's; "
            "use a fresh output_dir or the same base and freeze_fraction"
        )
    if payload["config"] != run.config.as_dict():
        log.warning("resuming %s with a changed TrainConfig", latest)
    run.model.load_state_dict(payload["model"], strict=False)
    run.optimizer.load_state_dict(payload["optimizer"])
    run.scheduler.load_state_dict(payload["scheduler"])
    restore_rng_states(payload["rng"])
    state = _State(**payload["state"])
    return state, state.step


def _save_best(run: _Run) -> None:
    torch.save(run.model.trainable_state_dict(), run.output_dir / BEST_FILE)


def _load_best(run: _Run) -> None:
    path = run.output_dir / BEST_FILE
    if path.is_file():
        best = torch.load(path, map_location="cpu", weights_only=True)
        run.model.load_state_dict(best, strict=False)


# --- steps ------------------------------------------------------------------------------------


def _autocast(run: _Run) -> AbstractContextManager[None]:
    if run.device.type == "cuda" and run.config.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _forward(run: _Run, batch: JudgementBatch) -> tuple[RewardOutput, LossParts]:
    batch = batch.to(run.device)
    with _autocast(run):
        output = run.model(
            batch.input_ids,
            batch.attention_mask,
            batch.edited,
            batch.source,
            batch.group,
            from_features=run.from_features,
            prefix=batch.prefix,
        )
    config = run.config
    losses = reward_loss(output, batch, config.bt_weight, config.aspect_weight, config.aspect_loss)
    return output, losses


def _train_step(run: _Run, batch: JudgementBatch) -> dict[str, float]:
    run.model.train()
    _, losses = _forward(run, batch)
    run.optimizer.zero_grad(set_to_none=True)
    losses.total.backward()
    trainable = [p for p in run.model.parameters() if p.requires_grad]
    torch.nn.utils.clip_grad_norm_(trainable, run.config.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    return {
        "loss": float(losses.total.detach()),
        "bt_loss": float(losses.bradley_terry.detach()),
        "aspect_loss": float(losses.aspect.detach()),
    }


def _loader(run: _Run, dataset: JudgementDataset, batches: list[list[int]]) -> DataLoader:
    # A private generator: building the loader must not draw from the global RNG, or a
    # resumed run's dropout masks would drift from an uninterrupted run's.
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=run.collate,
        num_workers=run.config.num_workers,
        generator=torch.Generator().manual_seed(run.config.seed),
    )


def _epoch_batches(run: _Run, epoch: int) -> list[list[int]]:
    """The epoch's shuffled batches, a pure function of (seed, epoch): resuming mid-epoch
    replays the same order and skips the batches already done."""
    generator = torch.Generator().manual_seed(run.config.seed * 1_000_003 + epoch)
    order = torch.randperm(len(run.train_set), generator=generator).tolist()
    size = run.config.batch_size
    return [order[i : i + size] for i in range(0, len(order), size)]


@torch.no_grad()
def evaluate(run: _Run) -> dict[str, Any]:
    """Val loss and metrics (pairwise accuracy etc. from evaluation/metrics.py)."""
    run.model.eval()
    batches = [
        list(range(i, min(i + 16, len(run.val_set)))) for i in range(0, len(run.val_set), 16)
    ]
    scores: dict[int, dict[str, Any]] = {}
    total, weight = 0.0, 0
    for batch in _loader(run, run.val_set, batches):
        output, losses = _forward(run, batch)
        total += float(losses.total) * len(batch.input_ids)
        weight += len(batch.input_ids)
        scores.update(_scores_of(run.model, output, batch.variant_ids))
    metrics = reward_metrics(scores, run.val_set.records)
    return {
        "val_loss": total / max(1, weight),
        "val_pairwise_accuracy": metrics["pairwise_accuracy_nontied"],
        "val_metrics": metrics,
    }


def _scores_of(model: BlipRewardModel, output: Any, variant_ids: list[int]) -> dict[int, dict]:
    overall = output.overall.float().cpu().tolist()
    aspects = output.aspects.float().cpu().tolist() if output.aspects is not None else None
    return {
        variant: {
            "overall": overall[i],
            "aspects": dict(zip(model.aspects, aspects[i], strict=True)) if aspects else {},
        }
        for i, variant in enumerate(variant_ids)
    }


def _improved(run: _Run, state: _State, evaluation: dict[str, Any]) -> bool:
    loss, accuracy = evaluation["val_loss"], evaluation["val_pairwise_accuracy"]
    if state.best_loss is None:
        return True
    if run.config.select_metric == "loss" or accuracy is None or math.isnan(accuracy):
        return loss < state.best_loss
    best = state.best_metric if state.best_metric is not None else -math.inf
    # Small val sets give coarse accuracies: on a tie, the lower val loss wins.
    return accuracy > best or (accuracy == best and loss < state.best_loss)


def _after_evaluation(run: _Run, state: _State, evaluation: dict[str, Any]) -> None:
    if _improved(run, state, evaluation):
        metric = evaluation[
            "val_loss" if run.config.select_metric == "loss" else "val_pairwise_accuracy"
        ]
        state.best_step, state.best_metric = state.step, metric
        state.best_loss = evaluation["val_loss"]
        state.best_val = evaluation["val_metrics"]
        state.evaluations_since_best = 0
        _save_best(run)
    else:
        state.evaluations_since_best += 1
    patience = run.config.patience
    state.stopped_early = patience is not None and state.evaluations_since_best >= patience


# --- the loop ---------------------------------------------------------------------------------


def _batches_from(run: _Run, step: int) -> Iterator[JudgementBatch]:
    """Batches from `step` on, to the end of training."""
    while step < run.total_steps:
        epoch, skip = divmod(step, run.steps_per_epoch)
        batches = _epoch_batches(run, epoch)[skip:]
        batches = batches[: run.total_steps - step]
        for batch in _loader(run, run.train_set, batches):
            yield batch
            step += 1


def _is_evaluation_step(run: _Run, step: int) -> bool:
    every = run.config.eval_every or run.steps_per_epoch
    return step % every == 0 or step == run.total_steps


def _cache_counts(cache: FeatureCache | None) -> dict[str, int]:
    """The cache's counters under TrainResult's names (zeros without a cache)."""
    counters = {
        "cache_hits": "hits",
        "cache_misses": "misses",
        "prefix_cache_hits": "prefix_hits",
        "prefix_cache_misses": "prefix_misses",
    }
    return {name: getattr(cache, counter) if cache else 0 for name, counter in counters.items()}


def train(
    model: BlipRewardModel,
    train_records: Sequence[JudgementRecord],
    val_records: Sequence[JudgementRecord],
    config: TrainConfig,
    output_dir: str | Path,
    feature_cache: FeatureCache | None = None,
    on_progress: ProgressFn | None = None,
    should_stop: ShouldStop | None = None,
) -> TrainResult:
    """Train (or resume training) `model` in place; on return it holds the best val state.
    `on_progress` gets a StepReport every `log_every` steps (and while the cache fills);
    `should_stop` is asked before every step (training/training_utils.py: cancelling)."""
    started = time.monotonic()
    config.validate()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    progress = on_progress or (lambda report: None)
    counts_before = _cache_counts(feature_cache)
    seed_everything(config.seed)
    run = _setup(model, train_records, val_records, config, output_dir, feature_cache, progress)
    state, resumed_from = _restore(run)
    if resumed_from is not None:
        message = f"resuming from step {resumed_from}"
        progress(StepReport(resumed_from, run.total_steps, message=message))
    if not state.stopped_early:
        _loop(run, state, progress, should_stop)
    _load_best(run)
    model.eval()
    return TrainResult(
        best_step=state.best_step,
        best_metric=state.best_metric,
        best_val=state.best_val,
        history=state.history,
        steps=state.step,
        epochs=state.step / run.steps_per_epoch,
        stopped_early=state.stopped_early,
        resumed_from=resumed_from,
        n_train_judgements=len(run.train_set),
        n_val_judgements=len(run.val_set),
        n_train_pairs=len(expand_pairs(train_records, config.tie_mode, config.include_unsure)),
        n_val_pairs=len(expand_pairs(val_records, config.tie_mode, config.include_unsure)),
        **{
            name: count - counts_before[name]
            for name, count in _cache_counts(feature_cache).items()
        },
        seconds=time.monotonic() - started,
        output_dir=str(output_dir),
        config=config.as_dict(),
    )


def _loop(run: _Run, state: _State, progress: ProgressFn, should_stop: ShouldStop | None) -> None:
    window: list[dict[str, float]] = []
    checkpoint = partial(save_checkpoint, run, state)  # of the step `state` is at then
    for batch in _batches_from(run, state.step):
        stop_if_asked(should_stop, state.step, checkpoint)
        window.append(_train_step(run, batch))
        state.step += 1
        evaluation_due = _is_evaluation_step(run, state.step)
        if state.step % run.config.log_every == 0 or evaluation_due:
            row = _history_row(run, state, window)
            window = []
            if evaluation_due and len(run.val_set):
                evaluation = evaluate(run)
                _after_evaluation(run, state, evaluation)
                row.update({k: v for k, v in evaluation.items() if k != "val_metrics"})
            state.history.append(row)
            report_step(progress, _step_report(run, state, row), checkpoint)
        if evaluation_due:
            save_checkpoint(run, state)
        if state.stopped_early:
            break
    changed = False
    if not len(run.val_set) and state.best_step != state.step:
        state.best_step = state.step  # nothing to select on: the last state is the best
        _save_best(run)
        changed = True
    if changed or not checkpoint_dir(run.output_dir, state.step).is_dir():
        save_checkpoint(run, state)  # the end of training, unless that step is saved already


def _history_row(run: _Run, state: _State, window: list[dict[str, float]]) -> dict[str, Any]:
    mean = {key: float(np.mean([w[key] for w in window])) for key in window[0]}
    return {
        "step": state.step,
        "epoch": round(state.step / run.steps_per_epoch, 4),
        "train_loss": mean["loss"],
        "train_bt_loss": mean["bt_loss"],
        "train_aspect_loss": mean["aspect_loss"],
        "lr": run.scheduler.get_last_lr()[0],
    }


def _step_report(run: _Run, state: _State, row: dict[str, Any]) -> StepReport:
    """The history row as a progress event: mean train loss since the last one, the LR,
    and the row's other figures (epoch, loss parts, val ones at evaluations) as extras."""
    extras = {
        key: value
        for key, value in row.items()
        if key not in ("step", "train_loss", "lr") and value is not None
    }
    message = _message(run, state, row)
    return StepReport(state.step, run.total_steps, row["train_loss"], row["lr"], message, extras)


def _message(run: _Run, state: _State, row: dict[str, Any]) -> str:
    text = f"step {state.step}/{run.total_steps}, loss {row['train_loss']:.4f}"
    if row.get("val_pairwise_accuracy") is not None:  # None: undefined on this val set
        text += f", val pairwise accuracy {row['val_pairwise_accuracy']:.3f}"
    return text


def training_steps(
    model: BlipRewardModel,
    records: Sequence[JudgementRecord],
    config: TrainConfig,
    feature_cache: FeatureCache | None = None,
) -> Iterator[dict[str, float]]:
    """Bare optimisation steps (no evaluation, no checkpoints), for benchmarks and notebooks:
    yields each step's losses and how many pairs it saw, forever (epoch after epoch)."""
    config.validate()
    seed_everything(config.seed)
    progress: ProgressFn = lambda report: None  # noqa: E731
    run = _setup(model, records, [], config, Path("."), feature_cache, progress)
    epoch = 0
    while True:
        for batch in _loader(run, run.train_set, _epoch_batches(run, epoch)):
            yield {**_train_step(run, batch), "pairs": float(len(batch.pair_winner))}
        epoch += 1
