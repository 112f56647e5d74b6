"""The reward model on one GPU: what the CPU tables of docs/benchmarks.md show, measured on CUDA
in bf16, in one prepared run of under 8 minutes on an H100/H200-class GPU.

Per size (BLIP-base and BLIP-large architectures, random init, nothing downloaded):

- training pairs/s from cached frozen features and from pixels (reward_training.py's
  `time_training`: a fixed number of steps after untimed warm-up steps);
- scoring variants/s of distinct synthetic variants, feature cache cold and warm, and from
  pixels (reward_scoring.py's `time_score_items`), in device-sized batches;
- peak GPU memory;

then the retrain ratio at base size (reward_training.py's `time_retrain`: retrain after 10%
new judgements with the previous version's cache vs without one), and the projection of an
ImageReward-scale training (137k pairs x 10 epochs at large size) from the measured pairs/s.
Targets: scoring >= 1,000 variants/s at base size; that projection <= 15 minutes.

Every measurement is a fixed amount of work (steps, variants), not epochs, so the run's length
is known in advance; on CUDA each timing is bracketed by torch.cuda.synchronize and excludes
the warm-up. A section that would start after --budget-s is recorded as skipped.

    .venv/bin/python benchmarks/gpu.py                          # CUDA: the measured run
    .venv/bin/python benchmarks/gpu.py --device cpu --smoke     # tiny sizes, proves it runs

Results: <out>/gpu.json (with the command, the GPU's name and every figure) and a printed table.
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

import torch  # noqa: E402

from benchmarks.reward_scoring import (  # noqa: E402
    build_model,
    cold_and_warm,
    synthetic_items,
    time_score_items,
)
from benchmarks.reward_training import (  # noqa: E402
    demo_records,
    machine,
    time_retrain,
    time_training,
)
from rewards.dataset import JudgementRecord  # noqa: E402
from rewards.device import resolve_device, scoring_batch_size  # noqa: E402
from rewards.feature_cache import FeatureCache  # noqa: E402
from rewards.reward_model import BlipRewardModel  # noqa: E402
from rewards.scoring import score_items  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
# ImageReward (Xu et al. 2023, §4.1): 137k expert comparison pairs, BLIP (ViT-L) backbone.
IMAGEREWARD_PAIRS = 137_000
IMAGEREWARD_EPOCHS = 10
TRAINING_TARGET_S = 15 * 60
SCORING_TARGET = 1_000  # variants/s at base size


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1, cpu (with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="tiny model, tiny data: seconds")
    parser.add_argument("--sizes", default="base,large", help="comma-separated: base, large")
    parser.add_argument("--image-size", type=int, default=224, choices=[224, 384])
    parser.add_argument("--tasks", type=int, default=40, help="procedural tasks (training)")
    parser.add_argument("--train-batch", type=int, default=32, help="judgements per step")
    parser.add_argument("--train-steps", type=int, default=20, help="timed, from the cache")
    parser.add_argument("--pixel-steps", type=int, default=3, help="timed, from pixels")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--score-variants", type=int, default=4096)
    parser.add_argument("--pixel-variants", type=int, default=1024)
    parser.add_argument("--score-image-px", type=int, default=256)
    parser.add_argument("--retrain-sizes", default="base", help="comma-separated, or none")
    parser.add_argument("--retrain-epochs", type=int, default=3)
    parser.add_argument("--retrain-batch", type=int, default=8)
    # Sections are 1-2 minutes on an H200: none starting after 6 minutes keeps the run under 8.
    parser.add_argument("--budget-s", type=float, default=360.0, help="start no section after")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    return smoke_sized(args) if args.smoke else args


def smoke_sized(args: argparse.Namespace) -> argparse.Namespace:
    """Everything at the smallest size that still goes through every code path."""
    overrides = {
        "sizes": "tiny", "retrain_sizes": "tiny", "tasks": 6, "train_batch": 4,
        "train_steps": 2, "pixel_steps": 1, "warmup_steps": 1, "score_variants": 24,
        "pixel_variants": 8, "score_image_px": 64, "retrain_epochs": 1, "retrain_batch": 4,
    }  # fmt: skip
    return argparse.Namespace(**{**vars(args), **overrides})


def check_device(args: argparse.Namespace) -> torch.device:
    device = resolve_device(args.device)  # a missing GPU fails here, naming it
    if device.type != "cuda" and not args.smoke:
        raise SystemExit(f"{args.device}: this benchmark measures a GPU; on a CPU use --smoke")
    return device


def make_builder(size: str, image_size: int) -> Callable[[], BlipRewardModel]:
    return lambda: build_model(size, image_size)


# --- sections -------------------------------------------------------------------------------


class Budget:
    """Skips whole sections once --budget-s is spent, so the run ends in known time."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.perf_counter()
        self.log: list[dict[str, Any]] = []

    def run(self, name: str, section: Callable[[], Any]) -> Any:
        elapsed = time.perf_counter() - self.started
        if elapsed > self.seconds:
            self.log.append({"section": name, "skipped": f"budget spent ({elapsed:.0f} s)"})
            return {"skipped": f"budget of {self.seconds:.0f} s spent before it started"}
        began = time.perf_counter()
        result = section()
        self.log.append({"section": name, "seconds": time.perf_counter() - began})
        print(f"  {name}: {time.perf_counter() - began:.1f} s", flush=True)
        return result


def training_section(
    model: BlipRewardModel, records: list[JudgementRecord], work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    train_records = [r for r in records if r.split == "train"]
    cache = FeatureCache(work / "train-cache")
    batch, warmup = args.train_batch, args.warmup_steps
    return {
        "cached_features": time_training(
            model, train_records, cache, args.train_steps, batch, args, "cache", warmup
        ),
        "pixels": time_training(
            model, train_records, None, args.pixel_steps, batch, args, "pixels", warmup
        ),
    }


def scoring_section(model: BlipRewardModel, work: Path, args: argparse.Namespace) -> dict:
    device = args.device
    batch = scoring_batch_size(device)
    px = args.score_image_px
    items = synthetic_items(work / "score-images", args.score_variants, 4, px)
    warmup = synthetic_items(work / "score-warmup", min(batch, 64), 4, px)
    # Warm the from-features kernels too (cold_and_warm itself warms the pixel path).
    score_items(model, warmup, batch, FeatureCache(work / "warmup-cache"), device=device)
    result = cold_and_warm(model, items, work / "score", device, batch, warmup)
    pixels = items[: args.pixel_variants]
    result["pixels"] = time_score_items(model, pixels, None, device, batch)
    return {"batch": batch, **result}


def measure_size(
    size: str, records: list[JudgementRecord], work: Path, args: argparse.Namespace,
    budget: Budget,
) -> dict[str, Any]:  # fmt: skip
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    model = build_model(size, args.image_size).to(args.device)
    section: dict[str, Any] = {
        "description": model.describe(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "image_size": model.image_size,
        "batch_judgements": args.train_batch,
    }
    section["training"] = budget.run(
        f"{size} training", lambda: training_section(model, records, work / size, args)
    )
    section["scoring"] = budget.run(
        f"{size} scoring", lambda: scoring_section(model, work / size, args)
    )
    if torch.device(args.device).type == "cuda":
        section["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return section


def retrain_section(
    size: str, records: list[JudgementRecord], work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    return time_retrain(
        make_builder(size, args.image_size), records, work / f"{size}-retrain",
        args.retrain_epochs, args.retrain_batch, args,
    )  # fmt: skip


# --- the verdicts -----------------------------------------------------------------------------


def pairs_per_s(results: dict[str, Any], size: str, source: str) -> float | None:
    training = results["models"].get(size, {}).get("training", {})
    return training.get(source, {}).get("pairs_per_s")


def imagereward_projection(results: dict[str, Any], size: str) -> dict[str, Any]:
    """137k pairs x 10 epochs / measured pairs/s: the training time only (the one-time
    frozen-feature encode of the cached run, and evaluations, are not in it)."""
    total = IMAGEREWARD_PAIRS * IMAGEREWARD_EPOCHS
    projection: dict[str, Any] = {"pairs": IMAGEREWARD_PAIRS, "epochs": IMAGEREWARD_EPOCHS,
                                  "size": size, "target_seconds": TRAINING_TARGET_S}  # fmt: skip
    for source in ("cached_features", "pixels"):
        rate = pairs_per_s(results, size, source)
        projection[source] = None if rate is None else {
            "pairs_per_s": rate, "projected_seconds": total / rate,
            "met": total / rate <= TRAINING_TARGET_S,
        }  # fmt: skip
    return projection


def scoring_verdict(results: dict[str, Any], size: str) -> dict[str, Any] | None:
    scoring = results["models"].get(size, {}).get("scoring", {})
    if "warm_cache" not in scoring:
        return None
    rate = scoring["warm_cache"]["variants_per_s"]
    return {"size": size, "target_variants_per_s": SCORING_TARGET,
            "warm_cache_variants_per_s": rate, "met": rate >= SCORING_TARGET}  # fmt: skip


def verdicts(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    # The smoke run has only the tiny model: its "verdicts" prove the arithmetic, not a GPU.
    large = "tiny" if args.smoke else "large"
    base = "tiny" if args.smoke else "base"
    return {
        "imagereward_training": imagereward_projection(results, large),
        "scoring": scoring_verdict(results, base),
    }


# --- report -----------------------------------------------------------------------------------


def _rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for size, section in results["models"].items():
        for source, value in section.get("training", {}).items():
            if isinstance(value, dict) and "pairs_per_s" in value:
                rows.append((f"train {size}, {source} (pairs/s)", f"{value['pairs_per_s']:.1f}"))
        for source, value in section.get("scoring", {}).items():
            if isinstance(value, dict) and "variants_per_s" in value:
                label = f"score {size}, {source} (variants/s)"
                rows.append((label, f"{value['variants_per_s']:.1f}"))
        if "peak_gpu_memory_gib" in section:
            rows.append((f"peak GPU memory {size} (GiB)", f"{section['peak_gpu_memory_gib']:.1f}"))
    for size, retrain in results["retrain"].items():
        if "cached_over_uncached" in retrain:
            ratio = retrain["cached_over_uncached"]
            rows.append((f"retrain {size}, cached / uncached", f"{ratio:.2f}"))
    projection = results["verdicts"]["imagereward_training"]
    for source in ("cached_features", "pixels"):
        if projection.get(source):
            minutes = projection[source]["projected_seconds"] / 60
            met = "met" if projection[source]["met"] else "not met"
            rows.append((f"ImageReward-scale {projection['size']}, {source} (min)",
                         f"{minutes:.1f} ({met})"))  # fmt: skip
    scoring = results["verdicts"]["scoring"]
    if scoring:
        met = "met" if scoring["met"] else "not met"
        rows.append((f"scoring target >= {SCORING_TARGET}/s ({scoring['size']})", met))
    return rows


def table(results: dict[str, Any]) -> str:
    rows = _rows(results)
    width = max([len(label) for label, _ in rows] + [10])
    lines = [f"{'measure':<{width}}  value"]
    lines += [f"{label:<{width}}  {value}" for label, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = check_device(args)
    args.device = str(device)
    args.dtype = "bf16" if device.type == "cuda" else "fp32"  # what reward_training.py reads
    budget = Budget(args.budget_s)
    results: dict[str, Any] = {
        "command": "python " + shlex.join(["benchmarks/gpu.py", *(argv or sys.argv[1:])]),
        "device": args.device, "dtype": args.dtype, "smoke": args.smoke, "machine": machine(),
        "models": {}, "retrain": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as scratch:
        work = Path(scratch)
        records = demo_records(work / "demo", args.tasks, 3)
        results["data"] = {"tasks": args.tasks, "judgements": len(records)}
        for size in filter(None, args.sizes.split(",")):
            results["models"][size] = measure_size(size, records, work, args, budget)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # the next size starts from an empty allocator
        for size in filter(None, args.retrain_sizes.replace("none", "").split(",")):
            results["retrain"][size] = budget.run(
                f"{size} retrain", lambda size=size: retrain_section(size, records, work, args)
            )
    results["verdicts"] = verdicts(results, args)
    results["sections"] = budget.log
    results["total_seconds"] = time.perf_counter() - budget.started
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "gpu.json"
    path.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"total {results['total_seconds']:.0f} s on {results['machine']['gpu'] or 'CPU'}; "
          f"wrote {path}")  # fmt: skip
    return results


if __name__ == "__main__":
    main()
