"""How close the tiny reward model gets to the annotators' own agreement, per seed.

The figures in docs/reward_model.md ("Does it learn?") come from this script: the
learning check of tests/rewards/test_learning.py for any model or training options, split
by photo (as the application splits tasks) or by task, plus an oracle that scores by the
procedural edits' true quality (what a model that learned the truth would reach).

    .venv/bin/python benchmarks/learning_check.py --seeds 0,1,2 --noise 1.0
    .venv/bin/python benchmarks/learning_check.py --model '{"frozen_prefix": true,
        "freeze_fraction": 1.0, "text_freeze_fraction": 0.7}' --train '{"lr": 3e-4}'
    .venv/bin/python benchmarks/learning_check.py --oracle
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.metrics import calibrate_epsilon, human_ceiling, reward_metrics
from evaluation.simulated_annotators import (
    SimulatedAnnotator,
    manifest_records,
    split_by_photo,
)
from rewards.feature_cache import FeatureCache
from rewards.reward_model import BlipRewardModel
from rewards.scoring import score_judgement_variants
from rewards.trainer import TrainConfig, train
from training.procedural import build_demo_manifest, task_pair_count


def judgements(
    manifest: Path, noise: float, seed: int, by: str, photos: tuple[int, int] = (2, 2)
) -> dict[str, list]:
    people = [
        SimulatedAnnotator(noise=noise, disagreement=0.5, seed=100 * seed + i) for i in range(6)
    ]
    records = manifest_records(manifest, people, per_task=3, seed=seed)
    if by == "photo":
        return split_by_photo(manifest, records, seed, *photos)
    return {split: [r for r in records if r.split == split] for split in ("train", "val", "test")}


def truth_scores(manifest: Path, records: list) -> dict[int, dict]:
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    truth = {
        100 * task + j: variant["params"]["truth"]
        for task, line in enumerate(lines)
        for j, variant in enumerate(line["variants"])
    }
    return {
        v: {"overall": sum(truth[v].values()) / 3, "aspects": truth[v]}
        for r in records
        for v in r.variants
    }


def photo_of(manifest: Path, records: list) -> str:
    sources = [json.loads(line)["source"] for line in manifest.read_text().splitlines()]
    return ", ".join(sorted({Path(sources[r.task_id]).stem for r in records}))


def share(scores_val: dict, scores_test: dict, data: dict) -> tuple[float, float, float]:
    epsilon, _ = calibrate_epsilon(scores_val, data["val"])
    model = reward_metrics(scores_test, data["test"], epsilon)["ceiling_items"]["pairwise_accuracy"]
    people = human_ceiling(data["test"])["pairwise_accuracy"]
    return model, people, model / people


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--tasks", type=int, default=task_pair_count(), help="photo/recipe pairs")
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--photos", default="2,2", help="test and val photos, by photo")
    parser.add_argument("--split", choices=("photo", "task"), default="photo")
    parser.add_argument("--model", default="{}", help="RewardModelConfig options, JSON")
    parser.add_argument("--train", default="{}", help="TrainConfig options, JSON")
    parser.add_argument("--oracle", action="store_true", help="score by the true quality")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="learning-check-"))
    manifest = build_demo_manifest(work / "demo", n_tasks=args.tasks, seed=0)
    cache = FeatureCache(work / "cache")
    shares = []
    for seed in (int(s) for s in args.seeds.split(",")):
        started = time.monotonic()
        photos = tuple(int(n) for n in args.photos.split(","))
        data = judgements(manifest, args.noise, seed, args.split, photos)
        if args.oracle:
            scores = [truth_scores(manifest, data[s]) for s in ("val", "test")]
        else:
            model = BlipRewardModel.from_base("tiny", seed=seed, **json.loads(args.model))
            options = {"epochs": 10, "batch_size": 8, "patience": None, **json.loads(args.train)}
            train(model, data["train"], data["val"], TrainConfig(**options, seed=seed),
                  work / f"run-{seed}", cache)  # fmt: skip
            scores = [
                score_judgement_variants(model, data[s], cache=cache) for s in ("val", "test")
            ]
        model_accuracy, people, ratio = share(*scores, data)
        shares.append(ratio)
        print(
            f"seed {seed} (test photo {photo_of(manifest, data['test'])}): model "
            f"{model_accuracy:.3f}, annotators {people:.3f}, "
            f"share {ratio:.3f} ({time.monotonic() - started:.0f} s)",
            flush=True,
        )
    print(f"mean share {sum(shares) / len(shares):.3f}, lowest {min(shares):.3f}")


if __name__ == "__main__":
    main()
