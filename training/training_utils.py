"""What every EditLoop trainer shares: seeding, RNG states, `checkpoint-<step>` directories,
one cancel protocol and one progress record. Plain Python and PyTorch, no Django (a test
imports it alone and checks), as diffusers' `training_utils.py` serves its example scripts.

Used by rewards/trainer.py (the BLIP reward model) and training/trainer.py (the editor).

Checkpoints: `<dir>/checkpoint-<step>/` is complete once it holds the trainer's state file
(`state.pt`, `training_state.pt`): it is filled under a temporary name and renamed at the
end, so a run killed mid-write leaves no half checkpoint to resume from.

Cancelling: a run stops between two optimizer steps, always with a checkpoint of the step
it reached, so calling the trainer again resumes there. Before every step the trainer asks
`should_stop()`; on True it saves and raises `TrainingCancelled(step, checkpoint)`. The
progress callback may raise too (a Django job's `report` raising `JobCancelled`, Ctrl-C):
the trainer saves first, then lets that exception go on unchanged.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_PREFIX = "checkpoint-"


# --- seeding and RNG states -------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_states() -> dict[str, Any]:
    """Every global generator a training step draws from (a checkpoint stores them)."""
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    # A checkpoint written on the CPU has no CUDA states; one written on a GPU resumes on
    # the CPU without them.
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# --- checkpoint-<step> directories -----------------------------------------------------------


def checkpoint_dir(directory: Path, step: int) -> Path:
    return Path(directory) / f"{CHECKPOINT_PREFIX}{step}"


def checkpoint_steps(directory: Path, state_file: str) -> dict[int, Path]:
    """Complete checkpoints by step, oldest first (a half-written one has no state file)."""
    found = {}
    for path in Path(directory).glob(f"{CHECKPOINT_PREFIX}*"):
        suffix = path.name.removeprefix(CHECKPOINT_PREFIX)
        if suffix.isdigit() and (path / state_file).is_file():
            found[int(suffix)] = path
    return dict(sorted(found.items()))


def latest_checkpoint(directory: Path, state_file: str) -> Path | None:
    steps = checkpoint_steps(directory, state_file)
    return steps[max(steps)] if steps else None


def prune_checkpoints(directory: Path, keep_last: int, state_file: str) -> list[Path]:
    """Delete all complete checkpoints but the newest `keep_last`; returns those deleted."""
    if keep_last < 1:
        raise ValueError(f"keep_last: must be at least 1, got {keep_last}")
    removed = list(checkpoint_steps(directory, state_file).values())[:-keep_last]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


@contextmanager
def replacing_directory(final: Path) -> Iterator[Path]:
    """A fresh temporary sibling of `final` to fill; when the block ends without an error
    it replaces `final` by a rename, so readers never see it half written."""
    final = Path(final)
    temporary = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    temporary.rename(final)


# --- progress ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepReport:
    """One progress event, the same from every trainer. After an optimizer step `loss` is
    that step's (or the mean since the last report); reports between steps (resuming,
    filling a cache) carry only a message, and `total_steps` 0 while it is not known."""

    step: int
    total_steps: int
    loss: float | None = None
    lr: float | None = None
    message: str = ""
    extras: dict[str, float] = field(default_factory=dict)  # per-trainer metrics

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0


ProgressFn = Callable[[StepReport], None]


def report_step(
    on_progress: ProgressFn | None,
    report: StepReport,
    save_checkpoint: Callable[[], object] | None,
) -> None:
    """Hand `report` to the callback. If the callback raises (the second way to cancel),
    `save_checkpoint` runs first, so the exception leaves a run that resumes at this step;
    pass None when this step is saved already."""
    if on_progress is None:
        return
    try:
        on_progress(report)
    except BaseException:
        if save_checkpoint is not None:
            save_checkpoint()
        raise


# --- cancelling -------------------------------------------------------------------------------

ShouldStop = Callable[[], bool]


class TrainingCancelled(Exception):
    """should_stop() said stop; a checkpoint was saved first, so the trainer can resume."""

    def __init__(self, step: int, checkpoint: Path) -> None:
        super().__init__(f"training cancelled at step {step}; checkpoint saved in {checkpoint}")
        self.step, self.checkpoint = step, checkpoint


def stop_if_asked(
    should_stop: ShouldStop | None, step: int, save_checkpoint: Callable[[], Path]
) -> None:
    """Asked before every optimizer step: on should_stop(), save and raise TrainingCancelled.
    Several processes (DDP) must all get the same answer, as the save waits for them all."""
    if should_stop is not None and should_stop():
        raise TrainingCancelled(step, save_checkpoint())
