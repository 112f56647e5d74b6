"""training/training_utils.py: seeding, RNG states, checkpoint-<step> dirs, cancelling."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import ROOT
from training.training_utils import (
    StepReport,
    TrainingCancelled,
    checkpoint_dir,
    checkpoint_steps,
    latest_checkpoint,
    prune_checkpoints,
    replacing_directory,
    report_step,
    restore_rng_states,
    rng_states,
    seed_everything,
    stop_if_asked,
)

STATE = "state.pt"


def draws() -> tuple[float, float, list[float]]:
    """One draw from each global generator a training step uses."""
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def make_checkpoints(directory: Path, *steps: int) -> None:
    for step in steps:
        checkpoint_dir(directory, step).mkdir(parents=True)
        (checkpoint_dir(directory, step) / STATE).write_bytes(b"state")


def test_it_imports_without_django() -> None:
    code = "import sys, training.training_utils; print('django' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_both_trainers_report_the_same_step_record() -> None:
    from rewards import trainer as reward_trainer
    from training import trainer as editor_trainer

    assert reward_trainer.StepReport is editor_trainer.StepReport is StepReport
    assert reward_trainer.TrainingCancelled is TrainingCancelled


# --- seeding and RNG states -------------------------------------------------------------------


def test_the_same_seed_gives_the_same_draws() -> None:
    seed_everything(7)
    first = draws()
    seed_everything(7)
    assert draws() == first
    seed_everything(8)
    assert draws() != first


def test_restored_rng_states_replay_the_same_draws() -> None:
    # given the states captured mid-run
    seed_everything(3)
    draws()
    saved = rng_states()
    expected = draws()

    # when other work moves every generator on, then the states come back
    seed_everything(99)
    draws()
    restore_rng_states(saved)

    # then the next draws are those that followed the capture
    assert draws() == expected


def test_rng_states_survive_torch_save(tmp_path: Path) -> None:
    seed_everything(5)
    torch.save(rng_states(), tmp_path / "rng.pt")
    expected = draws()
    restore_rng_states(torch.load(tmp_path / "rng.pt", weights_only=False))
    assert draws() == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_states_are_captured_and_restored() -> None:
    seed_everything(1)
    saved = rng_states()
    expected = torch.rand(4, device="cuda").tolist()
    torch.rand(4, device="cuda")
    restore_rng_states(saved)
    assert "cuda" in saved and torch.rand(4, device="cuda").tolist() == expected


def test_states_without_cuda_restore_anywhere() -> None:
    # A checkpoint written on the CPU has no CUDA states; it must still load on a GPU.
    seed_everything(2)
    saved = {key: value for key, value in rng_states().items() if key != "cuda"}
    expected = draws()
    restore_rng_states(saved)
    assert draws() == expected


# --- checkpoint-<step> directories -----------------------------------------------------------


def test_it_lists_complete_checkpoints_by_step(tmp_path: Path) -> None:
    # given checkpoints 2, 3 and 10, a half-written 5 (no state file) and other names
    make_checkpoints(tmp_path, 10, 2, 3)
    checkpoint_dir(tmp_path, 5).mkdir()
    for other in ("checkpoint-x", ".checkpoint-7.tmp", "checkpoint-", "pipeline"):
        (tmp_path / other).mkdir()
        (tmp_path / other / STATE).write_bytes(b"state")

    # then only the complete ones count, in step order (10 after 3, not after 2)
    steps = checkpoint_steps(tmp_path, STATE)
    assert list(steps) == [2, 3, 10]
    assert steps[10] == tmp_path / "checkpoint-10"
    assert latest_checkpoint(tmp_path, STATE) == tmp_path / "checkpoint-10"


def test_a_checkpoint_counts_only_with_its_own_state_file(tmp_path: Path) -> None:
    make_checkpoints(tmp_path, 4)
    assert latest_checkpoint(tmp_path, "training_state.pt") is None
    assert latest_checkpoint(tmp_path, STATE) == tmp_path / "checkpoint-4"


def test_there_is_no_latest_checkpoint_in_an_empty_or_missing_dir(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path, STATE) is None
    assert latest_checkpoint(tmp_path / "missing", STATE) is None
    assert checkpoint_steps(tmp_path / "missing", STATE) == {}


def test_pruning_keeps_the_newest_complete_checkpoints(tmp_path: Path) -> None:
    make_checkpoints(tmp_path, 1, 2, 3, 10)
    checkpoint_dir(tmp_path, 20).mkdir()  # being written: not pruning's business

    removed = prune_checkpoints(tmp_path, 2, STATE)

    assert removed == [tmp_path / "checkpoint-1", tmp_path / "checkpoint-2"]
    assert list(checkpoint_steps(tmp_path, STATE)) == [3, 10]
    assert checkpoint_dir(tmp_path, 20).is_dir()
    assert prune_checkpoints(tmp_path, 2, STATE) == []


def test_pruning_refuses_to_keep_none(tmp_path: Path) -> None:
    make_checkpoints(tmp_path, 1)
    with pytest.raises(ValueError, match="keep_last"):
        prune_checkpoints(tmp_path, 0, STATE)
    assert checkpoint_dir(tmp_path, 1).is_dir()


def test_a_replaced_directory_appears_whole(tmp_path: Path) -> None:
    # given an older checkpoint-3 with a file the new one does not have
    make_checkpoints(tmp_path, 3)
    (checkpoint_dir(tmp_path, 3) / "stale.txt").write_text("old")

    with replacing_directory(checkpoint_dir(tmp_path, 3)) as temporary:
        assert not (temporary / STATE).exists()  # written aside, not in place
        (temporary / STATE).write_bytes(b"new")

    assert (checkpoint_dir(tmp_path, 3) / STATE).read_bytes() == b"new"
    assert not (checkpoint_dir(tmp_path, 3) / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3"]


def test_a_failed_write_leaves_the_old_directory_and_no_temporary(tmp_path: Path) -> None:
    make_checkpoints(tmp_path, 3)
    with pytest.raises(OSError), replacing_directory(checkpoint_dir(tmp_path, 3)) as temporary:
        (temporary / "half").write_bytes(b"x")
        raise OSError("disk full")
    assert (checkpoint_dir(tmp_path, 3) / STATE).read_bytes() == b"state"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3"]


# --- progress and cancelling ------------------------------------------------------------------


def test_a_step_report_knows_its_share_of_the_run() -> None:
    assert StepReport(3, 12, loss=0.5).fraction == pytest.approx(0.25)
    assert StepReport(0, 0, message="filling the cache").fraction == 0.0  # total not known


def test_should_stop_saves_then_raises_training_cancelled(tmp_path: Path) -> None:
    saved: list[int] = []

    def save() -> Path:
        saved.append(4)
        return checkpoint_dir(tmp_path, 4)

    stop_if_asked(None, 4, save)
    stop_if_asked(lambda: False, 4, save)
    assert saved == []

    with pytest.raises(TrainingCancelled) as cancelled:
        stop_if_asked(lambda: True, 4, save)
    assert saved == [4]
    assert cancelled.value.step == 4 and cancelled.value.checkpoint == tmp_path / "checkpoint-4"
    assert "step 4" in str(cancelled.value)


def test_a_callback_that_raises_leaves_a_checkpoint_and_its_own_error() -> None:
    saved: list[str] = []
    report = StepReport(3, 6, loss=0.1, message="step 3/6")

    def cancel(report: StepReport) -> None:
        raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        report_step(cancel, report, lambda: saved.append("saved"))
    assert saved == ["saved"]

    with pytest.raises(KeyboardInterrupt):
        report_step(cancel, report, None)  # the step is saved already
    assert saved == ["saved"]


def test_a_callback_that_returns_saves_nothing() -> None:
    seen: list[StepReport] = []
    report = StepReport(1, 2, loss=0.3, lr=1e-3, message="step 1/2", extras={"grad_norm": 1.0})
    report_step(seen.append, report, lambda: pytest.fail("saved without a reason"))
    report_step(None, report, lambda: pytest.fail("saved without a reason"))
    assert seen == [report]


# --- the protocol in both trainers ------------------------------------------------------------


def edit_examples(directory: Path) -> list:
    from PIL import Image

    from training.records import EditExample

    examples = []
    for index in range(2):
        pixels = np.random.default_rng(index).integers(0, 256, (32, 32, 3), np.uint8)
        source, edited = directory / f"source{index}.png", directory / f"edited{index}.png"
        Image.fromarray(pixels).save(source)
        Image.fromarray(255 - pixels).save(edited)
        examples.append(EditExample(source, edited, "invert the colours"))
    return examples


def test_the_editor_trainer_stops_when_asked_and_resumes_there(tmp_path: Path) -> None:
    from training.config import FinetuneConfig
    from training.trainer import STATE_FILE, train_editor

    # given a run asked to stop before its third step
    config = FinetuneConfig(max_steps=3, batch_size=2, learning_rate=1e-3, checkpoint_every=100)
    data, work_dir = edit_examples(tmp_path), tmp_path / "run"
    polls = iter(range(100))
    reports: list[StepReport] = []
    with pytest.raises(TrainingCancelled) as cancelled:
        train_editor(
            config, data, "tiny", work_dir,
            on_step=reports.append, should_stop=lambda: next(polls) >= 2,
        )  # fmt: skip

    # then it saved step 2 and reported each step done
    assert cancelled.value.step == 2 and cancelled.value.checkpoint == work_dir / "checkpoint-2"
    assert list(checkpoint_steps(work_dir, STATE_FILE)) == [2]
    assert [(r.step, r.total_steps) for r in reports] == [(1, 3), (2, 3)]
    assert reports[-1].message.startswith("step 2/3, loss ") and reports[-1].lr == 1e-3

    # when it is started again, it resumes from that checkpoint
    resumed = train_editor(config, data, "tiny", work_dir)
    assert resumed.resumed_from == 2 and resumed.steps == 3


def test_the_reward_trainer_saves_before_a_raising_callback_stops_it(tmp_path: Path) -> None:
    from rewards.reward_model import BlipRewardModel
    from rewards.trainer import STATE_FILE, TrainConfig, train
    from tests.rewards import make_records

    # given a run evaluated (and checkpointed) every 3 steps whose callback raises at step 2
    records = make_records(tmp_path / "images", n_tasks=4, annotators=1)
    config = TrainConfig(max_steps=4, batch_size=2, log_every=1, eval_every=3, seed=1)
    reports: list[StepReport] = []

    def cancel_at_step_2(report: StepReport) -> None:
        reports.append(report)
        if report.step == 2:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        train(BlipRewardModel.from_base("tiny", seed=0), records, [], config, tmp_path / "run",
              on_progress=cancel_at_step_2)  # fmt: skip

    # then step 2 was saved all the same, and a new call resumes from it
    assert list(checkpoint_steps(tmp_path / "run", STATE_FILE)) == [2]
    assert reports[-1].loss is not None and "train_bt_loss" in reports[-1].extras
    model = BlipRewardModel.from_base("tiny", seed=0)
    resumed = train(model, records, [], config, tmp_path / "run")
    assert resumed.resumed_from == 2 and resumed.steps == 4
