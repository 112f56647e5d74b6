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


# --- every variant of a project, incrementally (rewards/variant_scores.py) -----------------


def test_every_variant_without_a_judgement_gets_a_score(procedural_project, tiny_version) -> None:
    from annotation.models import Judgement, Variant
    from evaluation.simulated_judgements import fill_with_simulated_judgements
    from rewards.models import VariantScore
    from rewards.variant_scores import score_project_variants

    project = procedural_project(tasks=4, overlap=1)
    fill_with_simulated_judgements(project, 2, annotators=1, seed=1)
    version = tiny_version(project)
    judged_tasks = Judgement.objects.filter(assignment__task__project=project).values(
        "assignment__task"
    )
    unjudged = Variant.objects.filter(task__project=project).exclude(task__in=judged_tasks)
    assert unjudged.exists()

    scored = score_project_variants(version, device="cpu")

    assert scored == Variant.objects.filter(task__project=project).count()
    have_scores = set(
        VariantScore.objects.filter(version=version).values_list("variant_id", flat=True)
    )
    assert set(unjudged.values_list("id", flat=True)) <= have_scores


def test_a_rerun_scores_only_what_the_version_has_not_scored(
    procedural_project, tiny_version
) -> None:
    from rewards.models import VariantScore
    from rewards.variant_scores import score_project_variants, unscored_variants

    project = procedural_project(tasks=2, overlap=1)
    version = tiny_version(project)
    other = tiny_version(project, number=2, status="candidate")
    first = score_project_variants(version)
    kept = dict(VariantScore.objects.filter(version=version).values_list("pk", "created_at"))
    dropped = VariantScore.objects.filter(version=version).order_by("id").first()
    dropped.delete()

    again = score_project_variants(version)
    once_more = score_project_variants(version)

    assert first == 8 and again == 1 and once_more == 0
    assert not unscored_variants(version).exists()
    untouched = VariantScore.objects.filter(version=version).exclude(variant=dropped.variant)
    assert {pk: kept[pk] for pk in untouched.values_list("pk", flat=True)} == dict(
        untouched.values_list("pk", "created_at")
    )
    # Another version's scores are its own: it still has every variant to score.
    assert unscored_variants(other).count() == 8
