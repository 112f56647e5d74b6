"""Scoring at scale: N variants (default 100,000) scored by one reward model, feature cache cold
(every image new: decode, frozen layers, write) and warm (read back); variants/s and the
projected time for 100,000 variants.

Data: synthetic edit tasks written as PNGs (a smooth random photo per task, --per-task edits
of it: tint, brightness, noise), all images distinct, so a cold pass really encodes every
one. The scorer is `rewards.scoring.score_items`, which the worker's scoring task
(rewards/variant_scores.py) calls chunk by chunk; Postgres reads and writes are not included.

    .venv/bin/python benchmarks/reward_scoring.py --variants 100000          # tiny, CPU
    .venv/bin/python benchmarks/reward_scoring.py --variants 4000            # a few minutes
    .venv/bin/python benchmarks/reward_scoring.py --size base --device cuda --variants 20000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.reward_training import blip_size_model, machine  # noqa: E402
from rewards.dataset import ImageRef  # noqa: E402
from rewards.device import resolve_device, scoring_batch_size, synchronize  # noqa: E402
from rewards.feature_cache import FeatureCache  # noqa: E402
from rewards.reward_model import BlipRewardModel  # noqa: E402
from rewards.scoring import ScoreItem, score_items  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
AT_SCALE = 100_000  # variants the issue asks about
INSTRUCTIONS = (
    "make it warmer", "turn the sky purple", "add more contrast", "make it look like winter",
    "remove the colour cast", "make it brighter",
)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", type=int, default=AT_SCALE, help="edits to score")
    parser.add_argument("--per-task", type=int, default=4, help="edits of one source photo")
    parser.add_argument("--image-px", type=int, default=128, help="side of the synthetic PNGs")
    parser.add_argument("--size", default="tiny", choices=["tiny", "base", "large"])
    parser.add_argument("--model-image-size", type=int, default=224, help="base/large only")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto")
    parser.add_argument("--batch", type=int, default=None, help="default: sized for the device")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


# --- data -------------------------------------------------------------------------------------


def _photo(rng: np.random.Generator, px: int) -> np.ndarray:
    """A smooth random picture (a blurred colour field) rather than noise, so PNGs stay small."""
    coarse = rng.integers(0, 256, size=(8, 8, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((px, px), Image.BICUBIC), dtype=np.int16)


def _write(path: Path, pixels: np.ndarray) -> ImageRef:
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, compress_level=1)
    return ImageRef(str(path), hashlib.sha256(path.read_bytes()).hexdigest())


def synthetic_items(directory: Path, variants: int, per_task: int, px: int) -> list[ScoreItem]:
    """`variants` edits of variants/per_task source photos, every image a distinct file."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items: list[ScoreItem] = []
    for task in range(-(-variants // per_task)):
        photo = _photo(rng, px)
        source = _write(directory / f"t{task}.png", photo)
        instruction = INSTRUCTIONS[task % len(INSTRUCTIONS)]
        for v in range(min(per_task, variants - len(items))):
            tint = rng.integers(-40, 41, size=3)
            noise = rng.integers(-6, 7, size=photo.shape)
            edited = _write(directory / f"t{task}_v{v}.png", photo + tint + noise)
            items.append(ScoreItem(len(items), instruction, source, edited))
    return items


def build_model(size: str, image_size: int) -> BlipRewardModel:
    if size == "tiny":
        return BlipRewardModel.from_base("tiny")
    return blip_size_model(size, image_size)


# --- measurement ------------------------------------------------------------------------------


def time_score_items(
    model: BlipRewardModel,
    items: list[ScoreItem],
    cache: FeatureCache | None,
    device: str,
    batch_size: int,
) -> dict[str, Any]:
    """Seconds and variants/s to score `items`, GPU work included (synchronized)."""
    synchronize(device)
    started = time.perf_counter()
    scores = score_items(model, items, batch_size=batch_size, cache=cache, device=device)
    synchronize(device)
    seconds = time.perf_counter() - started
    if len(scores) != len(items):
        raise RuntimeError(f"scored {len(scores)} of {len(items)} variants")
    rate = len(items) / seconds
    return {
        "variants": len(items),
        "seconds": seconds,
        "variants_per_s": rate,
        "projected_seconds_for_100k": AT_SCALE / rate,
    }


def cold_and_warm(
    model: BlipRewardModel,
    items: list[ScoreItem],
    work: Path,
    device: str,
    batch_size: int,
    warmup: list[ScoreItem],
) -> dict[str, Any]:
    """The same variants twice through one cache directory: first empty (every image decoded,
    encoded by the frozen layers and written), then full (features read back from disk)."""
    score_items(model, warmup, batch_size=batch_size, device=device)  # kernels, allocator
    cache_dir = work / "cache"
    cold_cache = FeatureCache(cache_dir)
    cold = time_score_items(model, items, cold_cache, device, batch_size)
    cold["images_encoded"] = cold_cache.misses
    warm_cache = FeatureCache(cache_dir)  # a new process's view: nothing held in memory yet
    warm = time_score_items(model, items, warm_cache, device, batch_size)
    warm["images_encoded"] = warm_cache.misses
    return {"cold_cache": cold, "warm_cache": warm}


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    device = str(resolve_device(args.device))
    batch = scoring_batch_size(device, args.batch)
    started = time.perf_counter()
    items = synthetic_items(work / "images", args.variants, args.per_task, args.image_px)
    warmup = synthetic_items(work / "warmup", min(batch, 32), args.per_task, args.image_px)
    data_seconds = time.perf_counter() - started
    model = build_model(args.size, args.model_image_size).to(device).eval()
    results = cold_and_warm(model, items, work, device, batch, warmup)
    return {
        "size": args.size,
        "model": model.describe(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": batch,
        "data": {"variants": len(items), "image_px": args.image_px, "seconds": data_seconds},
        **results,
    }


def table(results: dict[str, Any]) -> str:
    lines = [f"{'cache':<8} {'variants':>9} {'seconds':>9} {'variants/s':>11} {'100k (min)':>11}"]
    for label in ("cold_cache", "warm_cache"):
        row = results[label]
        lines.append(
            f"{label.split('_')[0]:<8} {row['variants']:>9} {row['seconds']:>9.1f} "
            f"{row['variants_per_s']:>11.1f} {row['projected_seconds_for_100k'] / 60:>11.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = ["benchmarks/reward_scoring.py", *(argv or sys.argv[1:])]
    header: dict[str, Any] = {
        "command": "python " + shlex.join(command),
        "device": args.device,
        "machine": machine(),
        "load_average_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="reward-scoring-") as scratch:
        results = {**header, **measure(args, Path(scratch))}
    results["load_average_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "reward_scoring.json"
    path.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"{results['size']} on {args.device}, batch {results['batch']}; wrote {path}")
    return results


if __name__ == "__main__":
    main()
