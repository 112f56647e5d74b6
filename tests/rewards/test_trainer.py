"""The training loop: checkpoints, resume, cancel, early stopping, the feature cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rewards.feature_cache import FeatureCache
from rewards.reward_model import BlipRewardModel
from rewards.trainer import StepReport, TrainConfig, TrainingCancelled, train
from tests.rewards import make_records


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list]:
    directory = tmp_path_factory.mktemp("images")
    return {
        "train": make_records(directory, n_tasks=6, annotators=2),
        "val": make_records(directory, n_tasks=2, annotators=1, first_task=10, seed=1, split="val"),
    }


def fresh_model() -> BlipRewardModel:
    return BlipRewardModel.from_base("tiny", seed=0, head_dropout=0.3)


def config(**changes: object) -> TrainConfig:
    base = {"max_steps": 6, "batch_size": 4, "log_every": 1, "eval_every": 3, "seed": 3}
    return TrainConfig(**{**base, **changes})


def losses(result) -> list[float]:
    return [row["train_loss"] for row in result.history]


def test_it_trains_and_leaves_checkpoints_and_a_loss_curve(tmp_path: Path, data: dict) -> None:
    progress: list[StepReport] = []
    result = train(
        fresh_model(), data["train"], data["val"], config(), tmp_path,
        on_progress=progress.append,
    )  # fmt: skip
    assert result.steps == 6 and [row["step"] for row in result.history] == [1, 2, 3, 4, 5, 6]
    assert "val_pairwise_accuracy" in result.history[2] and "val_loss" in result.history[5]
    assert result.n_train_judgements == 12 and result.n_train_pairs == 12 * 3
    assert result.n_val_pairs == 2 * 3 and result.best_step in (3, 6)
    checkpoints = sorted(p.name for p in tmp_path.glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-3", "checkpoint-6"]  # keep_checkpoints=2
    assert (tmp_path / "best.pt").is_file()
    assert progress[-1].fraction == pytest.approx(1.0)
    assert "val pairwise accuracy" in progress[-1].message
    assert [row["step"] for row in result.loss_curve] == [1, 2, 3, 4, 5, 6]


def test_the_model_ends_with_the_best_val_state(tmp_path: Path, data: dict) -> None:
    model = fresh_model()
    train(model, data["train"], data["val"], config(), tmp_path)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    state = model.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in best.items())
    assert not model.training


def test_a_cancelled_run_resumes_with_the_same_losses(tmp_path: Path, data: dict) -> None:
    uninterrupted = train(fresh_model(), data["train"], data["val"], config(), tmp_path / "a")

    polls = iter(range(100))
    stop_after_four = lambda: next(polls) >= 4  # noqa: E731
    with pytest.raises(TrainingCancelled) as cancelled:
        train(
            fresh_model(), data["train"], data["val"], config(), tmp_path / "b",
            should_stop=stop_after_four,
        )  # fmt: skip
    assert cancelled.value.step == 4 and (tmp_path / "b" / "checkpoint-4").is_dir()

    resumed = train(fresh_model(), data["train"], data["val"], config(), tmp_path / "b")
    assert resumed.resumed_from == 4 and resumed.steps == 6
    assert losses(resumed) == pytest.approx(losses(uninterrupted), abs=1e-6)
    assert resumed.best_step == uninterrupted.best_step


def test_running_a_finished_run_again_changes_nothing(tmp_path: Path, data: dict) -> None:
    first = train(fresh_model(), data["train"], data["val"], config(), tmp_path)
    again = train(fresh_model(), data["train"], data["val"], config(), tmp_path)
    assert again.resumed_from == 6 and again.history == first.history
    assert again.best_step == first.best_step


def test_it_stops_early_when_val_stops_improving(tmp_path: Path, data: dict) -> None:
    # A learning rate of ~0 keeps every weight; fusion="late" has no BatchNorm, whose
    # running statistics would still move (and move the val loss) without any learning.
    flat = config(lr=1e-12, max_steps=30, eval_every=1, patience=2)
    model = BlipRewardModel.from_base("tiny", seed=0, head_dropout=0.3, fusion="late")
    result = train(model, data["train"], data["val"], flat, tmp_path)
    assert result.stopped_early and result.steps == 3 and result.best_step == 1


def test_without_val_data_the_last_state_is_kept(tmp_path: Path, data: dict) -> None:
    result = train(fresh_model(), data["train"], [], config(max_steps=2), tmp_path)
    assert result.best_step == 2 and result.best_metric is None


def test_a_retrain_encodes_only_new_images(tmp_path: Path, data: dict) -> None:
    cache = FeatureCache(tmp_path / "cache")
    first = train(fresh_model(), data["train"], data["val"], config(), tmp_path / "v1", cache)
    assert (first.cache_hits, first.cache_misses) == (0, 8 * 4)  # 8 tasks: source + 3 edits
    more = make_records(tmp_path / "more", n_tasks=1, annotators=1, first_task=20, seed=7)
    second = train(
        fresh_model(), data["train"] + more, data["val"], config(), tmp_path / "v2", cache
    )
    assert (second.cache_hits, second.cache_misses) == (32, 4)


def test_training_from_cached_features_matches_training_from_pixels(
    tmp_path: Path, data: dict
) -> None:
    cached = train(
        fresh_model(), data["train"], data["val"], config(), tmp_path / "c",
        FeatureCache(tmp_path / "cache"),
    )  # fmt: skip
    pixels = train(fresh_model(), data["train"], data["val"], config(), tmp_path / "p")
    assert losses(cached) == pytest.approx(losses(pixels), abs=1e-5)


def test_dataloader_workers_give_the_same_losses(tmp_path: Path, data: dict) -> None:
    cache = FeatureCache(tmp_path / "cache")
    inline = train(fresh_model(), data["train"], [], config(max_steps=2), tmp_path / "a", cache)
    workers = config(max_steps=2, num_workers=1)
    forked = train(fresh_model(), data["train"], [], workers, tmp_path / "b", cache)
    assert losses(forked) == pytest.approx(losses(inline), abs=1e-6)


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"lr": -1.0}, "lr"), ({"tie_mode": "drop"}, "tie_mode"), ({"warmup": 1.5}, "warmup")],
)
def test_bad_options_are_refused_with_the_field_named(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes).validate()
