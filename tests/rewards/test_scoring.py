"""Scoring one request's images, and many stored variants in batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewards.dataset import load_image
from rewards.feature_cache import FeatureCache
from rewards.reward_model import BlipRewardModel
from rewards.scoring import (
    ScoreItem,
    items_from_records,
    score_images,
    score_items,
    score_judgement_variants,
)
from tests.rewards import ASPECTS, make_records


@pytest.fixture(scope="module")
def model() -> BlipRewardModel:
    return BlipRewardModel.from_base("tiny", fusion="diff")


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list:
    return make_records(tmp_path_factory.mktemp("images"), n_tasks=3, annotators=2)


def test_it_scores_each_edit_in_order(model: BlipRewardModel, records: list) -> None:
    record = records[0]
    source = load_image(record.source)
    edited = [load_image(record.variants[v]) for v in sorted(record.variants)]
    scores = score_images(model, source, edited, record.instruction)
    assert len(scores) == 3
    assert all(
        set(s["aspects"]) == set(ASPECTS) and isinstance(s["overall"], float) for s in scores
    )
    single = score_images(model, source, edited[2:], record.instruction)
    assert single[0]["overall"] == pytest.approx(scores[2]["overall"], abs=1e-5)
    assert score_images(model, source, [], record.instruction) == []


def test_batches_score_like_single_requests(model: BlipRewardModel, records: list) -> None:
    items = items_from_records(records)
    assert len(items) == 9  # three tasks of three variants, each judged twice
    batched = score_items(model, items, batch_size=4)
    for item in items[:4]:
        alone = score_images(
            model, load_image(item.source), [load_image(item.edited)], item.instruction
        )[0]
        assert batched[item.key]["overall"] == pytest.approx(alone["overall"], abs=1e-5)


def test_the_cache_gives_the_same_scores(
    tmp_path: Path, model: BlipRewardModel, records: list
) -> None:
    cache = FeatureCache(tmp_path)
    with_cache = score_judgement_variants(model, records, cache=cache)
    without = score_judgement_variants(model, records)
    assert cache.misses == 12 and with_cache.keys() == without.keys()
    for variant, score in without.items():
        assert with_cache[variant]["overall"] == pytest.approx(score["overall"], abs=1e-5)


def test_coarse_models_score_without_aspects(records: list) -> None:
    coarse = BlipRewardModel.from_base("tiny", heads="coarse")
    item = ScoreItem("a", "x", records[0].source, records[0].variants[0])
    assert score_items(coarse, [item])["a"]["aspects"] == {}
