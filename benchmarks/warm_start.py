"""Warm-started, cached retrain against a cold, uncached one (issue 11, part 3).

The situation of a scheduled retrain: version 1 was trained on the first 90% of the train
judgements (which also filled the feature cache); 10% new judgements arrived. Two ways to
train version 2 on all of them:

- **cold, uncached**: a fresh model from the base, `--epochs` epochs, every step from pixels
  (decode, preprocess, frozen layers);
- **warm, cached**: version 1's weights, a third of the epochs (rewards.config.WarmStart, as
  `warm_start` runs do), frozen features and text prefixes from the cache (only the new
  images are encoded).

It reports the time of each (`rewards.trainer.train`, evaluations and checkpoints
included; building the model and loading version 1's weights are timed apart), their
ratio (target <= 0.15), and the test pairwise accuracy of both (ε calibrated on val, as
rewards/runs.py does) with a 95% percentile-bootstrap interval over test judgements, plus
the bootstrap interval of the paired difference warm - cold (same resamples).

The model is a BLIP-base-sized random init (benchmarks/reward_training.py: ViT-B/16 +
BERT-base with cross-attention); `--models` picks `base` (ImageReward's split, 8 of 12
layers frozen per tower) and/or `base-prefix` (whole ViT and 70% of the text layers frozen,
the text prefix cached too). Data: the procedural demo judged by simulated annotators.

    .venv/bin/python benchmarks/warm_start.py                      # 2-core CPU: 6-13 minutes
    .venv/bin/python benchmarks/warm_start.py --models base,base-prefix   # about 20 minutes
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.reward_training import RESULTS, base_size_model, machine  # noqa: E402
from evaluation.metrics import calibrate_epsilon, reward_metrics  # noqa: E402
from evaluation.simulated_annotators import SimulatedAnnotator, manifest_records  # noqa: E402
from rewards.config import TrainConfig, WarmStart  # noqa: E402
from rewards.dataset import JudgementRecord  # noqa: E402
from rewards.feature_cache import FeatureCache  # noqa: E402
from rewards.reward_model import BlipRewardModel  # noqa: E402
from rewards.scoring import score_judgement_variants  # noqa: E402
from rewards.trainer import train  # noqa: E402
from training.procedural import build_demo_manifest  # noqa: E402

MODELS = {
    "base": {},
    "base-prefix": {"freeze_fraction": 1.0, "text_freeze_fraction": 0.7, "frozen_prefix": True},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="base-prefix", help=f"of {', '.join(MODELS)}")
    parser.add_argument("--judgements", type=int, default=36, help="about; 3 per task")
    parser.add_argument("--annotators", type=int, default=3, help="judgements per task")
    parser.add_argument("--split", default="0.6,0.1", help="train,val fractions of the tasks")
    parser.add_argument("--epochs", type=int, default=3, help="of the cold retrain")
    parser.add_argument("--batch", type=int, default=2, help="judgements per step")
    parser.add_argument("--image-size", type=int, default=224, choices=[224, 384])
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


# --- data ---------------------------------------------------------------------------------------


def judged_demo(directory: Path, args: argparse.Namespace) -> list[JudgementRecord]:
    """The procedural demo, simulated annotators as in benchmarks/reward_training.py; a
    larger test share than there, so the accuracy intervals mean something."""
    train_fraction, val_fraction = (float(x) for x in args.split.split(","))
    tasks = max(3, round(args.judgements / args.annotators))
    manifest = build_demo_manifest(directory, n_tasks=tasks, seed=0)
    people = [SimulatedAnnotator(noise=0.6, disagreement=0.4, seed=s) for s in range(6)]
    return manifest_records(
        manifest, people, per_task=args.annotators, seed=0,
        fractions=(train_fraction, val_fraction),
    )  # fmt: skip


def by_split(records: list[JudgementRecord]) -> dict[str, list[JudgementRecord]]:
    return {split: [r for r in records if r.split == split] for split in ("train", "val", "test")}


# --- accuracy with an interval ------------------------------------------------------------------


def test_accuracy(
    model: BlipRewardModel, splits: dict[str, list[JudgementRecord]], cache: FeatureCache
) -> tuple[dict[int, Any], float]:
    """The model's scores of every val and test variant, and ε calibrated on val."""
    scores = score_judgement_variants(model, [*splits["val"], *splits["test"]], cache=cache)
    epsilon, _ = calibrate_epsilon(scores, splits["val"])
    return scores, epsilon


def accuracy(scores: dict[int, Any], records: list[JudgementRecord], epsilon: float) -> float:
    return reward_metrics(scores, records, epsilon)["pairwise_accuracy"]


def bootstrap(
    runs: dict[str, tuple[dict[int, Any], float]],
    records: list[JudgementRecord],
    resamples: int,
) -> dict[str, Any]:
    """Point estimates and 95% percentile intervals over judgements drawn with replacement;
    the same draws for both models, so their difference has an interval of its own."""
    rng = np.random.default_rng(0)
    draws: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(resamples):
        sample = [records[i] for i in rng.integers(0, len(records), len(records))]
        values = {name: accuracy(s, sample, e) for name, (s, e) in runs.items()}
        if any(v is None for v in values.values()):  # a draw with no pair: no accuracy
            continue
        for name, value in values.items():
            draws[name].append(value)
    report: dict[str, Any] = {"test_judgements": len(records), "resamples_used": 0}
    for name, (scores, epsilon) in runs.items():
        report[name] = {
            "pairwise_accuracy": accuracy(scores, records, epsilon),
            "ci95": _interval(draws[name]),
            "epsilon": epsilon,
        }
    names = list(runs)
    difference = np.array(draws[names[0]]) - np.array(draws[names[1]])
    report[f"{names[0]}_minus_{names[1]}"] = {
        "point": report[names[0]]["pairwise_accuracy"] - report[names[1]]["pairwise_accuracy"],
        "ci95": _interval(list(difference)),
    }
    report["resamples_used"] = len(draws[names[0]])
    return report


def _interval(values: list[float]) -> list[float] | None:
    if not values:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]


# --- the two retrains ---------------------------------------------------------------------------


def timed_train(
    label: str,
    model: BlipRewardModel,
    train_records: list[JudgementRecord],
    val_records: list[JudgementRecord],
    config: TrainConfig,
    work: Path,
    cache: FeatureCache | None,
) -> dict[str, Any]:
    if cache is not None:
        cache.reset_counts()
    started = time.perf_counter()
    result = train(model, train_records, val_records, config, work / label, cache)
    seconds = time.perf_counter() - started
    print(f"  {label}: {seconds:.1f} s, {result.steps} steps", flush=True)
    return {
        "seconds": seconds,
        "epochs": config.epochs,
        "steps": result.steps,
        "seconds_per_step": seconds / max(1, result.steps),
        "images_encoded": result.cache_misses,
        "images_reused": result.cache_hits,
        "prefixes_computed": result.prefix_cache_misses,
        "prefixes_reused": result.prefix_cache_hits,
    }


def measure(
    make_model: Callable[[], BlipRewardModel],
    splits: dict[str, list[JudgementRecord]],
    work: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    train_all, val = splits["train"], splits["val"]
    old = train_all[: int(0.9 * len(train_all))]  # version 1 saw these; the rest are new
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch, patience=None, device="cpu")
    cache = FeatureCache(work / "cache")
    section: dict[str, Any] = {"judgements_before": len(old), "judgements_after": len(train_all)}

    print("version 1 (fills the cache)", flush=True)
    parent = make_model()
    section["version_1"] = timed_train("v1", parent, old, val, config, work, cache)

    started = time.perf_counter()
    cold = make_model()
    section["build_seconds"] = time.perf_counter() - started
    section["cold_uncached"] = timed_train("cold", cold, train_all, val, config, work, None)

    started = time.perf_counter()
    warm = make_model()
    warm.load_state_dict(parent.state_dict())  # what rewards.runs.start_weights does
    section["build_and_load_seconds"] = time.perf_counter() - started
    warm_config = WarmStart(True).training(config)
    section["warm_cached"] = timed_train("warm", warm, train_all, val, warm_config, work, cache)

    ratio = section["warm_cached"]["seconds"] / section["cold_uncached"]["seconds"]
    section["warm_cached_over_cold_uncached"] = ratio
    print(f"  ratio {ratio:.3f}; scoring val and test", flush=True)
    runs = {"warm": test_accuracy(warm, splits, cache), "cold": test_accuracy(cold, splits, cache)}
    section["test"] = bootstrap(runs, splits["test"], args.resamples)
    return section


# --- report -------------------------------------------------------------------------------------


def summary(results: dict[str, Any]) -> str:
    lines = []
    for name, section in results["models"].items():
        cold, warm = section["cold_uncached"], section["warm_cached"]
        test = section["test"]
        lines += [
            f"{name}: {section['judgements_before']} -> {section['judgements_after']} train "
            f"judgements, {test['test_judgements']} test",
            f"  cold uncached: {cold['seconds']:.1f} s ({cold['steps']} steps)",
            f"  warm cached:   {warm['seconds']:.1f} s ({warm['steps']} steps)",
            f"  ratio {section['warm_cached_over_cold_uncached']:.3f} (target <= 0.15)",
        ]
        for run in ("cold", "warm"):
            figure = test[run]
            lines.append(
                f"  test accuracy {run}: {figure['pairwise_accuracy']:.3f} "
                f"95% CI {_shown(figure['ci95'])}"
            )
        difference = test["warm_minus_cold"]
        shown = _shown(difference["ci95"])
        lines.append(f"  warm - cold: {difference['point']:+.3f} 95% CI {shown}")
    return "\n".join(lines)


def _shown(interval: list[float] | None) -> str:
    return "n/a" if interval is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def main() -> None:
    args = parse_args()
    names = args.models.split(",")
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        raise SystemExit(f"--models: {', '.join(unknown)} not among {', '.join(MODELS)}")
    results: dict[str, Any] = {
        "command": "python " + shlex.join(sys.argv),
        "machine": machine(),
        "models": {},
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="warm-start-bench-") as scratch:
        work = Path(scratch)
        splits = by_split(judged_demo(work / "demo", args))
        results["data"] = {split: len(found) for split, found in splits.items()}
        for name in names:
            options = MODELS[name]
            print(f"{name}: {results['data']}", flush=True)
            results["models"][name] = measure(
                lambda options=options: base_size_model(args.image_size, **options),
                splits, work / name, args,
            )  # fmt: skip
    results["total_seconds"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "warm_start.json").write_text(json.dumps(results, indent=2))
    print(summary(results))
    print(f"total {results['total_seconds']:.0f} s; wrote {args.out / 'warm_start.json'}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
