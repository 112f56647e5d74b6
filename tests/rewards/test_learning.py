"""The learning check: the tiny model, trained on simulated judgements of the procedural
demo, agrees with held-out annotators nearly as well as they agree with each other.

Procedural edits (training/procedural.py) know their true quality; simulated annotators
(evaluation/simulation.py) judge them with per-judgement noise and lasting personal bias
and taste. Tasks are split train/val/test; the tiny random-init model trains on CPU with
cached frozen features; its tie-aware pairwise accuracy on the test tasks (ε calibrated
on val, Deutsch et al. 2023) must reach 0.9 x the annotators' own agreement on the same
judgements. Nothing in the model sees the truth: only images, instructions and judgements.
The check runs for the default model and for a frozen_prefix one (whole vision tower and
70% of the text layers frozen, the text prefix cached), the cheap-to-retrain configuration.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.metrics import calibrate_epsilon, human_ceiling, reward_metrics
from evaluation.simulation import SimulatedAnnotator, manifest_records
from rewards.feature_cache import FeatureCache
from rewards.reward_model import BlipRewardModel
from rewards.scoring import score_judgement_variants
from rewards.trainer import TrainConfig, train
from training.procedural import build_demo_manifest

TASKS = 136  # every photo/recipe pair the procedural editor has
NOISE, DISAGREEMENT = 1.0, 0.5  # one score point of noise per judgement; personal bias/taste
ANNOTATORS, PER_TASK = 6, 3
CEILING_SHARE = 0.9
MODELS = {
    "default": {},
    "frozen prefix": {"freeze_fraction": 1.0, "text_freeze_fraction": 0.7, "frozen_prefix": True},
}


@pytest.fixture(scope="module")
def judgements(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list]:
    manifest = build_demo_manifest(tmp_path_factory.mktemp("demo"), n_tasks=TASKS, seed=0)
    people = [
        SimulatedAnnotator(noise=NOISE, disagreement=DISAGREEMENT, seed=seed)
        for seed in range(ANNOTATORS)
    ]
    records = manifest_records(manifest, people, per_task=PER_TASK, seed=0)
    return {split: [r for r in records if r.split == split] for split in ("train", "val", "test")}


@pytest.mark.parametrize("options", MODELS.values(), ids=MODELS.keys())
def test_the_tiny_model_learns_to_near_the_human_ceiling(
    tmp_path: Path, judgements: dict[str, list], options: dict
) -> None:
    # given a tiny random-init model and a feature cache
    model = BlipRewardModel.from_base("tiny", **options)
    cache = FeatureCache(tmp_path / "cache")
    untrained = reward_metrics(
        score_judgement_variants(model, judgements["test"], cache=cache), judgements["test"]
    )

    # when it trains on the train tasks, selecting on val
    config = TrainConfig(epochs=10, batch_size=8, patience=None, seed=0)
    result = train(model, judgements["train"], judgements["val"], config, tmp_path / "run", cache)

    # then on the test tasks it nearly matches annotators agreeing with each other
    epsilon, _ = calibrate_epsilon(
        score_judgement_variants(model, judgements["val"], cache=cache), judgements["val"]
    )
    scores = score_judgement_variants(model, judgements["test"], cache=cache)
    metrics = reward_metrics(scores, judgements["test"], epsilon)["ceiling_items"]
    ceiling = human_ceiling(judgements["test"])
    report = (
        f"model {metrics['pairwise_accuracy']:.3f} "
        f"(non-tied {metrics['pairwise_accuracy_nontied']:.3f}), "
        f"annotators {ceiling['pairwise_accuracy']:.3f} "
        f"(non-tied {ceiling['pairwise_accuracy_nontied']:.3f}), "
        f"untrained {untrained['pairwise_accuracy']:.3f}, "
        f"best step {result.best_step}/{result.steps}"
    )
    print(report)
    assert metrics["judgements"] == ceiling["judgements"]  # the same items
    assert metrics["pairwise_accuracy"] >= CEILING_SHARE * ceiling["pairwise_accuracy"], report
    assert metrics["pairwise_accuracy"] > untrained["pairwise_accuracy"] + 0.1, report
    seen = {ref.sha256 for r in judgements["train"] + judgements["val"] for ref in images(r)}
    assert result.cache_hits + result.cache_misses == len(seen)  # each image encoded once


def images(record) -> list:  # noqa: ANN001
    return [record.source, *record.variants.values()]
