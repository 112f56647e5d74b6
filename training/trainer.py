"""Fine-tune an InstructPix2Pix editor on feedback: one readable loop, resumable checkpoints.

`train_editor(config, data, base, work_dir)` trains the UNet with one of five objectives
(training/objectives.py) and leaves in `work_dir`:

* `checkpoint-<step>/`: `unet/` (a loadable UNet2DConditionModel, the multi-reward MLP
  included) and `training_state.pt` (optimizer, LR scheduler, EMA weights, RNG states,
  step, loss history). The last `keep_last` are kept; calling `train_editor` again with
  the same work_dir resumes from the newest one, and the step after a resume draws the
  same batch, noise and timesteps it would have drawn without the interruption.
* `pipeline/`: a stock `StableDiffusionInstructPix2PixPipeline` directory (EMA weights
  when EMA is on) plus `editloop_finetune.json` (method, config, steps, random init or not,
  the suffix or reward condition to sample with).

Only the UNet trains; the VAE and text encoder stay frozen (InstructPix2Pix §3.2).
AdamW, constant LR after a linear warmup, gradient clipping (as the InstructPix2Pix script).

Several GPUs: set `distributed=True` and start the script that calls `train_editor` with
`accelerate launch --num_processes N script.py`. `accelerate` is imported only then; each
process takes its own `batch_size` share of a global batch, DDP averages the gradients,
and process 0 writes checkpoints and the pipeline (every process writes its RNG state).
That path is not exercised by the tests (they run on one CPU).
"""

from __future__ import annotations

import copy
import errno
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import UNet2DConditionModel
from PIL import Image, ImageOps
from safetensors.torch import load_file

from training.config import FinetuneConfig
from training.cycle import augment_with_cycles
from training.multireward import (
    BEST_SCORES,
    MultiRewardCondition,
    aspect_scores,
    bake_reward_condition,
    enable_multireward,
)
from training.objectives import (
    BEST_QUALITY,
    EditBatch,
    PreferenceBatch,
    conditional_reward_loss,
    dpo_loss,
    multireward_loss,
    quality_suffix,
    reward_levels,
    supervised_loss,
    weighted_reward_loss,
)
from training.pix2pix import EditorParts, load_editor_parts, save_pipeline
from training.records import EditExample, PreferencePair
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

STATE_FILE = "training_state.pt"
PIPELINE_DIR = "pipeline"
MULTIREWARD_UNET_DIR = "multireward_unet"
METADATA_FILE = "editloop_finetune.json"


@dataclass
class FinetuneResult:
    steps: int
    resumed_from: int
    loss_history: list[dict[str, float]]
    final_loss: float
    pipeline_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    is_random_init: bool = False


Records = Sequence[EditExample] | Sequence[PreferencePair]


# --- the loop ------------------------------------------------------------------------------


def train_editor(
    config: FinetuneConfig,
    data: Records,
    base: str,
    work_dir: Path,
    *,
    on_step: ProgressFn | None = None,
    should_stop: ShouldStop | None = None,
) -> FinetuneResult:
    """Train, checkpoint, export `work_dir/pipeline/`. `on_step` gets a StepReport after
    every optimizer step; `should_stop` is asked before every step. Either way of stopping
    (should_stop() true, on_step raising) writes a checkpoint first, so the same call
    resumes there (training/training_utils.py: cancelling)."""
    config.validate()  # fields may have been changed since construction
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runtime = start_runtime(config)
    examples, data_metrics = prepare_examples(config, data)
    seed_everything(config.seed + runtime.rank)

    parts, condition, reference = load_trainable_editor(config, base, runtime)
    unet = parts.unet
    optimizer, lr_scheduler = make_optimizer(config, unet)
    ema = ExponentialMovingAverage(unet, config.ema_decay) if config.ema_decay else None
    checkpoint = partial(save_checkpoint, work_dir, config, unet, optimizer, lr_scheduler, ema)
    state = TrainingState()
    latest = latest_checkpoint(work_dir, STATE_FILE)
    if latest is not None:
        state = load_checkpoint(latest, config, unet, optimizer, lr_scheduler, ema, runtime)
    resumed_from = state.step
    trained_unet, optimizer = runtime.prepare(unet, optimizer)
    batches = BatchMaker(examples, config, runtime)

    while state.step < config.max_steps:
        stop_if_asked(should_stop, state.step, partial(checkpoint, state, runtime))
        batch = batches.batch_for(state.step)
        with runtime.autocast():
            loss, extras = compute_loss(config, parts, trained_unet, batch, condition, reference)
        optimizer.zero_grad(set_to_none=True)
        runtime.backward(loss)
        if config.max_grad_norm is not None:
            extras["grad_norm"] = float(
                torch.nn.utils.clip_grad_norm_(unet.parameters(), config.max_grad_norm)
            )
        optimizer.step()
        lr_scheduler.step()
        if ema is not None:
            ema.update(unet)
        state.step += 1
        state.loss_history.append({"step": state.step, "loss": loss.item(), **extras})

        saved = state.step % config.checkpoint_every == 0 or state.step == config.max_steps
        if saved:
            checkpoint(state, runtime)
        report = step_report(state.step, config.max_steps, loss.item(), lr_scheduler, extras)
        report_step(on_step, report, None if saved else partial(checkpoint, state, runtime))

    _load_uint8.cache_clear()  # a worker process outlives the run
    metrics = {**data_metrics, **history_metrics(state.loss_history)}
    metrics["seconds"] = time.perf_counter() - started
    pipeline_dir = work_dir / PIPELINE_DIR
    if runtime.is_main:
        export_pipeline(pipeline_dir, config, parts, unet, ema, state, base, metrics)
    runtime.wait_for_everyone()
    return FinetuneResult(
        steps=state.step,
        resumed_from=resumed_from,
        loss_history=state.loss_history,
        final_loss=state.loss_history[-1]["loss"] if state.loss_history else math.nan,
        pipeline_dir=pipeline_dir,
        metrics=metrics,
        is_random_init=parts.is_random_init,
    )


def load_trainable_editor(
    config: FinetuneConfig, base: str, runtime: Runtime
) -> tuple[EditorParts, MultiRewardCondition, UNet2DConditionModel | None]:
    """The editor on its device with a trainable UNet, the multi-reward encoding and, for
    DPO, the frozen reference UNet."""
    parts = load_editor_parts(base, seed=config.seed)
    condition = MultiRewardCondition(config.multireward_features)
    if config.method == "multireward":
        enable_multireward(parts.unet, condition)
    # Diffusion-DPO: the reference is the starting UNet, frozen (also after a resume).
    reference = frozen_copy(parts.unet) if config.method == "dpo" else None
    parts.to(runtime.device, frozen_dtype=runtime.frozen_dtype)
    if reference is not None:
        reference.to(runtime.device)
    # Only the UNet trains (InstructPix2Pix §3.2); the VAE and text encoder stay frozen.
    parts.vae.requires_grad_(False)
    parts.text_encoder.requires_grad_(False)
    parts.unet.train()
    if config.gradient_checkpointing:
        parts.unet.enable_gradient_checkpointing()
    return parts, condition, reference


def make_optimizer(
    config: FinetuneConfig, unet: UNet2DConditionModel
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.AdamW(
        unet.parameters(),
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_factor(config))


def compute_loss(
    config: FinetuneConfig,
    parts: EditorParts,
    unet: UNet2DConditionModel,
    batch: EditBatch | PreferenceBatch,
    condition: MultiRewardCondition,
    reference: UNet2DConditionModel | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    dropout = config.dropout
    if config.method == "dpo":
        assert isinstance(batch, PreferenceBatch) and reference is not None
        return dpo_loss(parts, unet, reference, batch, dropout, beta=config.dpo_beta)
    assert isinstance(batch, EditBatch)
    if config.method == "weighted":
        return weighted_reward_loss(
            parts, unet, batch, dropout, eta=config.eta, weight_clip=config.weight_clip
        )
    if config.method == "conditional":
        return conditional_reward_loss(parts, unet, batch, dropout)
    if config.method == "multireward":
        return multireward_loss(parts, unet, batch, condition, dropout)
    return supervised_loss(parts, unet, batch, dropout)


def step_report(
    step: int,
    total_steps: int,
    loss: float,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler,
    extras: dict[str, float],
) -> StepReport:
    message = f"step {step}/{total_steps}, loss {loss:.4f}"
    lr = lr_scheduler.get_last_lr()[0]
    return StepReport(step, total_steps, loss, lr, message, dict(extras))


def warmup_factor(config: FinetuneConfig) -> Callable[[int], float]:
    warmup = config.lr_warmup_steps

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) if warmup else 1.0

    return factor


def frozen_copy(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    reference = copy.deepcopy(unet).eval()
    reference.requires_grad_(False)
    return reference


def history_metrics(history: list[dict[str, float]]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if history:
        tail = history[-10:]
        metrics["final_loss_mean_last_10"] = float(np.mean([row["loss"] for row in tail]))
    accuracies = [row["implicit_accuracy"] for row in history if "implicit_accuracy" in row]
    if accuracies:
        metrics["dpo_implicit_accuracy_mean"] = float(np.mean(accuracies))
        metrics["dpo_implicit_accuracy_last_10"] = float(np.mean(accuracies[-10:]))
    return metrics


# --- data -----------------------------------------------------------------------------------


def prepare_examples(config: FinetuneConfig, data: Records) -> tuple[list[Any], dict[str, float]]:
    """Check the records suit the method; add cycle reverses; attach quality levels."""
    if not data:
        raise ValueError("data: no training examples")
    wanted = PreferencePair if config.method == "dpo" else EditExample
    for index, record in enumerate(data):
        if not isinstance(record, wanted):
            raise ValueError(
                f"data[{index}]: method {config.method!r} trains on {wanted.__name__} records, "
                f"got {type(record).__name__}"
            )
        check_record(config.method, index, record)
    examples = list(data)
    metrics: dict[str, float] = {"train_records": float(len(examples))}
    if config.cycle_augment:
        # HIVE cycle consistency: the reverse of each invertible edit is a training pair too.
        examples, metrics["invertible_share"] = augment_with_cycles(examples)
    metrics["train_examples"] = float(len(examples))
    return examples, metrics


def check_record(method: str, index: int, record: EditExample | PreferencePair) -> None:
    image_fields = ("source", "chosen", "rejected") if method == "dpo" else ("source", "edited")
    for name in image_fields:
        path = Path(getattr(record, name))
        if not path.is_file():
            raise FileNotFoundError(errno.ENOENT, f"data[{index}].{name}: no such file", str(path))
    if method in ("weighted", "conditional") and record.reward is None:
        raise ValueError(f"data[{index}].reward: method {method!r} needs a reward")
    if method == "multireward":
        if record.aspects is None:
            raise ValueError(f"data[{index}].aspects: method 'multireward' needs aspect scores")
        try:
            aspect_scores(record.aspects)
        except ValueError as error:
            raise ValueError(f"data[{index}].{error}") from None
    if method == "dpo" and not record.weight > 0:
        raise ValueError(f"data[{index}].weight: must be positive")


def load_pixels(path: Path, resolution: int) -> torch.Tensor:
    """An image file → (3, resolution, resolution) in [-1, 1]: shorter side resized to
    `resolution`, then centre-cropped (no flips: they would break "left"/"right" edits)."""
    stat = Path(path).stat()  # in the key, so an image rewritten in place is read again
    pixels = _load_uint8(str(path), stat.st_mtime_ns, stat.st_size, resolution)
    return pixels.float() / 127.5 - 1.0


@lru_cache(maxsize=256)  # uint8: at most ~200 MB at 512 px; cleared after each run
def _load_uint8(path: str, mtime_ns: int, size: int, resolution: int) -> torch.Tensor:
    with Image.open(path) as image:
        square = ImageOps.fit(
            image.convert("RGB"), (resolution, resolution), Image.Resampling.BICUBIC
        )
    return torch.from_numpy(np.asarray(square, dtype=np.uint8).copy()).permute(2, 0, 1)


class BatchMaker:
    """The batch for a step is a function of (seed, step): a resumed run draws the same."""

    def __init__(self, examples: list[Any], config: FinetuneConfig, runtime: Runtime) -> None:
        self.examples = examples
        self.config = config
        self.runtime = runtime
        self.levels: list[int] | None = None
        self._orders: dict[int, np.ndarray] = {}  # the current epoch's shuffle
        if config.method == "conditional":
            # HIVE conditional reward: quantile bins over this run's training rewards
            # (cycle reverses included, with their forward pair's reward).
            self.levels = reward_levels([float(example.reward) for example in examples])

    def indices_for(self, step: int) -> list[int]:
        """This process's share of the step's global batch; each epoch is a fresh shuffle."""
        size, world = self.config.batch_size, self.runtime.world_size
        start = (step * world + self.runtime.rank) * size
        count = len(self.examples)
        positions = [divmod(position, count) for position in range(start, start + size)]
        return [int(self.epoch_order(epoch)[offset]) for epoch, offset in positions]

    def epoch_order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {
                epoch: np.random.default_rng([self.config.seed, epoch]).permutation(
                    len(self.examples)
                )
            }
        return self._orders[epoch]

    def pixels(self, paths: list[Path]) -> torch.Tensor:
        stacked = torch.stack([load_pixels(path, self.config.resolution) for path in paths])
        return stacked.to(self.runtime.device)

    def batch_for(self, step: int) -> EditBatch | PreferenceBatch:
        indices = self.indices_for(step)
        rows = [self.examples[index] for index in indices]
        instructions = [row.instruction for row in rows]
        if self.config.method == "dpo":
            return PreferenceBatch(
                source=self.pixels([row.source for row in rows]),
                chosen=self.pixels([row.chosen for row in rows]),
                rejected=self.pixels([row.rejected for row in rows]),
                instructions=instructions,
                weights=torch.tensor([row.weight for row in rows], device=self.runtime.device),
            )
        batch = EditBatch(
            source=self.pixels([row.source for row in rows]),
            edited=self.pixels([row.edited for row in rows]),
            instructions=instructions,
        )
        if self.config.method in ("weighted", "conditional"):
            batch.rewards = torch.tensor([float(row.reward) for row in rows])
        if self.levels is not None:
            batch.quality_levels = [self.levels[index] for index in indices]
        if self.config.method == "multireward":
            batch.aspects = torch.tensor([aspect_scores(row.aspects) for row in rows])
        return batch


# --- runtime: device, precision, optional accelerate ------------------------------------------


class Runtime:
    """Where the run happens. Without `distributed` it is one process on CUDA or the CPU."""

    def __init__(self, config: FinetuneConfig) -> None:
        self.accelerator: Any = None
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if config.mixed_precision == "bf16" and self.device.type != "cuda":
            raise ValueError("mixed_precision: 'bf16' needs a CUDA device; use 'no' on the CPU")
        if config.distributed:
            self.accelerator = _make_accelerator(config)
            self.device = self.accelerator.device
        self.bf16 = config.mixed_precision == "bf16"

    @property
    def rank(self) -> int:
        return self.accelerator.process_index if self.accelerator else 0

    @property
    def world_size(self) -> int:
        return self.accelerator.num_processes if self.accelerator else 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def frozen_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.bf16 else None

    def autocast(self) -> Any:
        if self.bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return nullcontext()

    def prepare(
        self, unet: UNet2DConditionModel, optimizer: torch.optim.Optimizer
    ) -> tuple[Any, Any]:
        if self.accelerator is None:
            return unet, optimizer
        # The LR scheduler stays unwrapped: accelerate's wrapper would step it once per
        # process, changing the warmup length with the GPU count.
        return self.accelerator.prepare(unet, optimizer)

    def backward(self, loss: torch.Tensor) -> None:
        if self.accelerator is None:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def wait_for_everyone(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()


def _make_accelerator(config: FinetuneConfig) -> Any:
    try:
        from accelerate import Accelerator
    except ImportError as error:
        raise ValueError(
            "distributed: needs the `accelerate` package (pip install accelerate), "
            "then start the run with `accelerate launch`"
        ) from error
    return Accelerator(mixed_precision=config.mixed_precision)


def start_runtime(config: FinetuneConfig) -> Runtime:
    return Runtime(config)


# --- EMA --------------------------------------------------------------------------------------


class ExponentialMovingAverage:
    """Shadow copy of the UNet's weights, decay warmed up as diffusers' EMAModel does:
    min(decay, (1 + n) / (10 + n)) after n updates, so early weights do not linger."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = [p.detach().clone().float() for p in module.parameters()]

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for shadow, parameter in zip(self.shadow, module.parameters(), strict=True):
            shadow.lerp_(parameter.detach().float(), 1 - decay)

    @torch.no_grad()
    def copy_to(self, module: torch.nn.Module) -> None:
        for shadow, parameter in zip(self.shadow, module.parameters(), strict=True):
            parameter.copy_(shadow.to(parameter.dtype))

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay, self.updates = state["decay"], state["updates"]
        for shadow, saved in zip(self.shadow, state["shadow"], strict=True):
            shadow.copy_(saved)


# --- checkpoints ------------------------------------------------------------------------------


@dataclass
class TrainingState:
    step: int = 0
    loss_history: list[dict[str, float]] = field(default_factory=list)


def save_checkpoint(
    work_dir: Path,
    config: FinetuneConfig,
    unet: UNet2DConditionModel,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler,
    ema: ExponentialMovingAverage | None,
    state: TrainingState,
    runtime: Runtime,
) -> Path:
    """Write `checkpoint-<step>/` atomically (a temp dir renamed at the end), then prune."""
    final = checkpoint_dir(work_dir, state.step)
    runtime.wait_for_everyone()
    if runtime.world_size > 1:
        # Every process keeps its own noise stream; process 0 writes everything else.
        final.mkdir(exist_ok=True)
        torch.save(rng_states(), final / f"rng_state_{runtime.rank}.pt")
    if runtime.is_main:
        training_state = {
            "step": state.step,
            "loss_history": state.loss_history,
            "method": config.method,
            "optimizer": optimizer.state_dict(),
            "lr_scheduler": lr_scheduler.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "rng": rng_states(),
        }
        with replacing_directory(final) as temporary:
            unet.save_pretrained(temporary / "unet")
            torch.save(training_state, temporary / STATE_FILE)
            for rank_file in final.glob("rng_state_*.pt") if final.exists() else []:
                shutil.move(rank_file, temporary / rank_file.name)
        prune_checkpoints(work_dir, config.keep_last, STATE_FILE)
    runtime.wait_for_everyone()
    return final


def load_checkpoint(
    path: Path,
    config: FinetuneConfig,
    unet: UNet2DConditionModel,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler,
    ema: ExponentialMovingAverage | None,
    runtime: Runtime,
) -> TrainingState:
    saved = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    if saved["method"] != config.method:
        raise ValueError(
            f"method: {path.parent} holds a {saved['method']!r} run; "
            f"use another work_dir for {config.method!r}"
        )
    weights = load_file(path / "unet" / "diffusion_pytorch_model.safetensors")
    unet.load_state_dict(weights)
    optimizer.load_state_dict(saved["optimizer"])
    lr_scheduler.load_state_dict(saved["lr_scheduler"])
    if ema is not None and saved["ema"] is not None:
        ema.load_state_dict(saved["ema"])
    rank_file = path / f"rng_state_{runtime.rank}.pt"
    rng = torch.load(rank_file, weights_only=False) if rank_file.is_file() else saved["rng"]
    restore_rng_states(rng)
    return TrainingState(step=saved["step"], loss_history=saved["loss_history"])


# --- export -----------------------------------------------------------------------------------


def export_pipeline(
    pipeline_dir: Path,
    config: FinetuneConfig,
    parts: EditorParts,
    unet: UNet2DConditionModel,
    ema: ExponentialMovingAverage | None,
    state: TrainingState,
    base: str,
    metrics: dict[str, float],
) -> Path:
    """Write the stock pipeline (EMA weights if any) and its `editloop_finetune.json`."""
    final_unet = copy.deepcopy(unet).eval()
    if ema is not None:
        ema.copy_to(final_unet)
    temporary = pipeline_dir.with_name(f".{pipeline_dir.name}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    metadata: dict[str, Any] = {
        "method": config.method,
        "config": asdict(config),
        "steps": state.step,
        "base": base,
        "is_random_init": parts.is_random_init,
        "ema": ema is not None,
        "metrics": metrics,
    }
    if config.method == "multireward":
        # Stock pipelines pass no class labels: bake (5, 5, 5) in, keep the conditional UNet.
        save_pipeline(parts, temporary, unet=bake_reward_condition(final_unet, BEST_SCORES))
        final_unet.save_pretrained(temporary / MULTIREWARD_UNET_DIR)
        metadata["reward_condition"] = list(BEST_SCORES)
        metadata["multireward_unet"] = MULTIREWARD_UNET_DIR
    else:
        save_pipeline(parts, temporary, unet=final_unet)
    if config.method == "conditional":
        metadata["instruction_suffix"] = quality_suffix(BEST_QUALITY)
    (temporary / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str))
    shutil.rmtree(pipeline_dir, ignore_errors=True)
    temporary.rename(pipeline_dir)
    return pipeline_dir
