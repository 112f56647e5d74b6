"""frozen_prefix models: the frozen text layers' output is cached per (instruction, source,
edit), and training from that cache is training from pixels, minus the frozen compute."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rewards.dataset import JudgementCollator, JudgementDataset, PixelSource
from rewards.feature_cache import FeatureCache
from rewards.reward_model import BlipRewardModel
from rewards.trainer import TrainConfig, train
from tests.rewards import make_records

INSTRUCTIONS = ("make it brighter", "brighten the whole photo a little, please")


def prefix_model(**options: object) -> BlipRewardModel:
    settings = {
        "seed": 0,
        "freeze_fraction": 1.0,
        "text_freeze_fraction": 0.5,
        "frozen_prefix": True,
    }
    return BlipRewardModel.from_base("tiny", **{**settings, **options})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list]:
    """Judgements whose instructions differ in length, so batches pad their prefixes."""
    directory = tmp_path_factory.mktemp("images")
    train_records = make_records(directory, n_tasks=6, annotators=2)
    return {
        "train": [replace(r, instruction=INSTRUCTIONS[r.task_id % 2]) for r in train_records],
        "val": make_records(directory, n_tasks=2, annotators=1, first_task=10, seed=1, split="val"),
    }


def test_it_needs_the_whole_vision_tower_frozen() -> None:
    with pytest.raises(ValueError, match="freeze_fraction=1"):
        prefix_model(freeze_fraction=0.7)


@pytest.mark.parametrize("text_freeze_fraction", [0.0, 1.0])
def test_it_needs_frozen_and_trainable_text_layers(text_freeze_fraction: float) -> None:
    with pytest.raises(ValueError, match="text_freeze_fraction"):
        prefix_model(text_freeze_fraction=text_freeze_fraction)


def test_only_the_layers_above_the_prefix_and_the_fusion_train(data: dict) -> None:
    model = prefix_model().train()
    batch = collate(model, data["train"][:2], PixelSource(model.image_processor))
    output = model(batch.input_ids, batch.attention_mask, batch.edited, batch.source, batch.group)
    output.overall.sum().backward()
    trained = {name for name, p in model.named_parameters() if p.grad is not None}
    assert "segment_embedding" in trained and "change_proj.weight" in trained
    assert any(name.startswith("text.encoder.layer.3.") for name in trained)
    assert not any(name.startswith(("vision.", "text.embeddings.")) for name in trained)
    assert not any(
        name.startswith(("text.encoder.layer.0.", "text.encoder.layer.1.")) for name in trained
    )


def test_scores_from_cached_prefixes_equal_scores_from_pixels(tmp_path: Path, data: dict) -> None:
    model = prefix_model().eval()
    cache = FeatureCache(tmp_path / "cache")
    records = data["train"][:4]  # two instruction lengths: the shorter prefixes are padded
    cache.ensure_prefixes(model, records)
    cached = collate(model, records, cache.source(model), cache.prefix_source(model))
    pixels = collate(model, records, PixelSource(model.image_processor))
    assert (
        cached.prefix is not None
        and cached.prefix.shape[:2] == cached.input_ids[cached.group].shape
    )
    with torch.no_grad():
        from_cache = model(
            cached.input_ids, cached.attention_mask, cached.edited, cached.source, cached.group,
            from_features=True, prefix=cached.prefix,
        )  # fmt: skip
        from_pixels = model(
            pixels.input_ids, pixels.attention_mask, pixels.edited, pixels.source, pixels.group
        )
    assert torch.allclose(from_cache.overall, from_pixels.overall, atol=1e-5)
    assert torch.allclose(from_cache.aspects, from_pixels.aspects, atol=1e-5)


def test_each_prefix_is_computed_once_and_only_new_ones_later(tmp_path: Path, data: dict) -> None:
    model = prefix_model()
    cache = FeatureCache(tmp_path / "cache")
    old, new = data["train"][:4], data["train"][4:6]  # 2 tasks x 2 annotators, then 1 task
    assert cache.ensure_prefixes(model, old) == 2 * 3  # one per (instruction, source, edit)
    assert (cache.prefix_hits, cache.prefix_misses) == (0, 6)
    assert cache.ensure_prefixes(model, old + new) == 3
    assert (cache.prefix_hits, cache.prefix_misses) == (6, 9)


def test_the_prefix_key_changes_with_the_frozen_text_layers() -> None:
    cache = FeatureCache("unused")
    same = prefix_model(heads="cbm")  # heads are above the prefix
    assert cache.prefix_directory_for(same) == cache.prefix_directory_for(prefix_model())
    others = [prefix_model(text_freeze_fraction=0.75), prefix_model(seed=1)]
    for other in others:
        assert cache.prefix_directory_for(other) != cache.prefix_directory_for(prefix_model())


def test_training_from_cached_prefixes_matches_training_from_pixels(
    tmp_path: Path, data: dict
) -> None:
    config = TrainConfig(max_steps=4, batch_size=4, log_every=1, eval_every=2, seed=3)
    cache = FeatureCache(tmp_path / "cache")
    cached = train(prefix_model(), data["train"], data["val"], config, tmp_path / "c", cache)
    pixels = train(prefix_model(), data["train"], data["val"], config, tmp_path / "p")
    assert cached.prefix_cache_misses == 8 * 3  # 8 tasks x 3 edits, each computed once
    assert losses(cached) == pytest.approx(losses(pixels), abs=1e-5)


def collate(model: BlipRewardModel, records: list, images, prefixes=None):
    dataset = JudgementDataset(records, model.aspects, images, prefixes=prefixes)
    collator = JudgementCollator(model.tokenizer, model.config.max_text_length)
    return collator([dataset[i] for i in range(len(dataset))])


def losses(result) -> list[float]:
    return [row["train_loss"] for row in result.history]
