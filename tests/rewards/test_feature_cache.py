"""The frozen-feature cache: keys, hits and misses, and scores equal to a pixel forward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rewards.dataset import ImageRef, ImageUnreadable
from rewards.feature_cache import FeatureCache
from rewards.reward_model import BlipRewardModel
from tests.rewards import make_records


@pytest.fixture(scope="module")
def model() -> BlipRewardModel:
    return BlipRewardModel.from_base("tiny").eval()


def refs_of(records: list) -> list[ImageRef]:
    return [ref for r in records for ref in (r.source, *r.variants.values())]


def test_a_second_pass_only_hits(tmp_path: Path, model: BlipRewardModel) -> None:
    records = make_records(tmp_path / "img", n_tasks=2, variants=2, annotators=1)
    cache = FeatureCache(tmp_path / "cache")
    assert cache.ensure(model, refs_of(records)) == 6
    assert (cache.hits, cache.misses) == (0, 6)
    assert cache.ensure(model, refs_of(records)) == 0
    assert (cache.hits, cache.misses) == (6, 6)


def test_only_new_images_are_encoded(tmp_path: Path, model: BlipRewardModel) -> None:
    old = make_records(tmp_path / "img", n_tasks=2, variants=2, annotators=1)
    new = make_records(tmp_path / "img", n_tasks=1, variants=2, annotators=1, first_task=5, seed=1)
    cache = FeatureCache(tmp_path / "cache")
    cache.ensure(model, refs_of(old))
    cache.reset_counts()
    assert cache.ensure(model, refs_of(old + new)) == 3
    assert (cache.hits, cache.misses) == (6, 3)


def test_cached_features_equal_the_frozen_forward(tmp_path: Path, model: BlipRewardModel) -> None:
    records = make_records(tmp_path / "img", n_tasks=1, variants=2, annotators=1)
    refs = refs_of(records)
    cached = FeatureCache(tmp_path / "cache").features(model, refs)
    from rewards.dataset import load_image

    direct = model.encode_frozen(model.preprocess([load_image(ref) for ref in refs]))
    assert torch.allclose(cached, direct, atol=1e-6)


def test_the_key_changes_with_weights_fraction_and_size(
    tmp_path: Path, model: BlipRewardModel
) -> None:
    cache = FeatureCache(tmp_path)
    same = BlipRewardModel.from_base("tiny", heads="cbm")  # heads do not matter
    assert cache.directory_for(same) == cache.directory_for(model)
    others = [
        BlipRewardModel.from_base("tiny", seed=1),  # other frozen weights
        BlipRewardModel.from_base("tiny", freeze_fraction=0.5),
    ]
    directories = {cache.directory_for(m) for m in [model, *others]}
    assert len(directories) == 3
    assert cache.directory_for(model).name.endswith(f"-f0.7-px{model.image_size}")


def test_a_retrained_version_shares_its_bases_entries(
    tmp_path: Path, model: BlipRewardModel
) -> None:
    model.save(tmp_path / "v1")
    loaded = BlipRewardModel.load(tmp_path / "v1")
    assert FeatureCache(tmp_path).directory_for(loaded) == FeatureCache(tmp_path).directory_for(
        model
    )


def test_float16_storage_halves_the_files(tmp_path: Path, model: BlipRewardModel) -> None:
    records = make_records(tmp_path / "img", n_tasks=1, variants=1, annotators=1)
    refs = refs_of(records)
    full, half = FeatureCache(tmp_path / "f32"), FeatureCache(tmp_path / "f16", torch.float16)
    a, b = full.features(model, refs), half.features(model, refs)
    assert b.dtype == torch.float16 and torch.allclose(a, b.float(), atol=1e-2)
    size = lambda cache: sum(p.stat().st_size for p in cache.root.rglob("*.npy"))  # noqa: E731
    assert size(half) < 0.6 * size(full)


def test_an_unreadable_image_fails_naming_it(tmp_path: Path, model: BlipRewardModel) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ImageUnreadable, match="broken.png"):
        FeatureCache(tmp_path / "cache").ensure(model, [ImageRef(str(broken), "e" * 64)])


def test_nothing_frozen_means_nothing_to_cache(tmp_path: Path) -> None:
    unfrozen = BlipRewardModel.from_base("tiny", freeze_fraction=0.0)
    with pytest.raises(ValueError, match="nothing is frozen"):
        FeatureCache(tmp_path).directory_for(unfrozen)
