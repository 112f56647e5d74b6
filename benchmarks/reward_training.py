"""Reward-model speed: training pairs/s, scoring variants/s, retrain with/without the cache.

Data: the procedural demo (training/procedural.py) judged by simulated annotators
(evaluation/simulated_annotators.py), so nothing is downloaded. Models:

- tiny: the random-init test model (rewards/tiny.py);
- base: a BLIP-base-sized random init (ViT-B/16 at --base-image-size, BERT-base text with
  cross-attention, ~224M parameters), the cost of a real blip-itm-base checkpoint.

Measures
- training throughput (pairs/s), from cached frozen features and from pixels;
- scoring throughput (variants/s), with and without the feature cache;
- retraining after 10% new judgements: with the feature cache warm from the previous
  version vs. without a cache (the target is cached <= 25% of uncached).

--models picks what to measure: tiny, base, and their frozen_prefix variants tiny-prefix
and base-prefix (whole vision tower and --prefix-text-freeze of the text layers frozen, the
text prefix cached too; see rewards/reward_model.py).

    .venv/bin/python benchmarks/reward_training.py                 # CPU, ~5 minutes
    .venv/bin/python benchmarks/reward_training.py --device cuda --dtype bf16 \\
        --base-steps 20 --base-image-size 384 --retrain-base
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402
from transformers import BlipConfig, BlipForImageTextRetrieval  # noqa: E402

from evaluation.simulated_annotators import SimulatedAnnotator, manifest_records  # noqa: E402
from rewards.dataset import JudgementRecord  # noqa: E402
from rewards.feature_cache import FeatureCache  # noqa: E402
from rewards.reward_model import BlipRewardModel, RewardModelConfig  # noqa: E402
from rewards.scoring import items_from_records, score_items  # noqa: E402
from rewards.tiny import build_image_processor, build_tiny_tokenizer  # noqa: E402
from rewards.trainer import TrainConfig, train, training_steps  # noqa: E402
from training.procedural import build_demo_manifest  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("tiny", "base", "tiny-prefix", "base-prefix")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--tasks", type=int, default=40, help="procedural tasks to build")
    parser.add_argument("--annotators", type=int, default=3, help="judgements per task")
    parser.add_argument("--tiny-steps", type=int, default=30)
    parser.add_argument("--base-steps", type=int, default=3)
    parser.add_argument("--base-batch", type=int, default=2, help="judgements per base step")
    parser.add_argument("--base-image-size", type=int, default=224, choices=[224, 384])
    parser.add_argument("--base-score-items", type=int, default=16)
    parser.add_argument("--retrain-epochs", type=int, default=3)
    parser.add_argument("--retrain-base", action="store_true", help="also retrain base size")
    parser.add_argument(
        "--models", default="tiny,base", help=f"comma-separated, of {', '.join(MODELS)}"
    )
    parser.add_argument("--prefix-text-freeze", type=float, default=0.7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


# --- setup ------------------------------------------------------------------------------------


def demo_records(directory: Path, tasks: int, annotators: int) -> list[JudgementRecord]:
    manifest = build_demo_manifest(directory, n_tasks=tasks, seed=0)
    people = [SimulatedAnnotator(noise=0.6, disagreement=0.4, seed=s) for s in range(6)]
    return manifest_records(manifest, people, per_task=annotators, seed=0, fractions=(0.8, 0.1))


# BLIP's two published sizes, random init: ViT-B/16 or ViT-L/16, each with the BERT-base
# text encoder cross-attending to its visual tokens (ImageReward fine-tunes the large one).
BLIP_SIZES: dict[str, dict[str, int]] = {
    "base": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
             "num_attention_heads": 12},
    "large": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
              "num_attention_heads": 16},
}  # fmt: skip


def blip_size_config(size: str, image_size: int) -> BlipConfig:
    """The BlipConfig of a BLIP-`size` architecture (sizes: BLIP_SIZES)."""
    if size not in BLIP_SIZES:
        raise ValueError(f"BLIP size {size!r} is not one of {', '.join(BLIP_SIZES)}")
    vision = {**BLIP_SIZES[size], "image_size": image_size, "patch_size": 16,
              "initializer_range": 0.02}  # fmt: skip
    text = {
        "vocab_size": 30524, "hidden_size": 768, "intermediate_size": 3072,
        "num_hidden_layers": 12, "num_attention_heads": 12,
        "encoder_hidden_size": BLIP_SIZES[size]["hidden_size"],
    }  # fmt: skip
    return BlipConfig(vision_config=vision, text_config=text)


def blip_size_model(size: str, image_size: int, **options: Any) -> BlipRewardModel:
    """A BLIP-base or BLIP-large architecture, random init (the compute of a real checkpoint)."""
    tokenizer = build_tiny_tokenizer()  # ids stay below the 30524-word embedding table
    blip_config = blip_size_config(size, image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # every call the same weights, so versions share cache entries
        blip = BlipForImageTextRetrieval(blip_config)
    config = RewardModelConfig(
        base=f"random:blip-{size}", blip_config=blip_config.to_dict(), **options
    )
    return BlipRewardModel(
        config, blip.vision_model, blip.text_encoder, tokenizer, build_image_processor(image_size)
    )


def base_size_model(image_size: int, **options: Any) -> BlipRewardModel:
    """BLIP-base architecture (ViT-B/16 + BERT-base with cross-attention), random init."""
    return blip_size_model("base", image_size, **options)


def autocast(device: str, dtype: str) -> contextlib.AbstractContextManager:
    if dtype != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# --- measurements -----------------------------------------------------------------------------


def time_training(
    model: BlipRewardModel,
    records: list[JudgementRecord],
    cache: FeatureCache | None,
    steps: int,
    batch_size: int,
    args: argparse.Namespace,
    label: str,
    warmup: int = 1,
) -> dict[str, Any]:
    """pairs/s over `steps` steps after `warmup` untimed steps (the cache is filled
    beforehand)."""
    config = TrainConfig(batch_size=batch_size, device=args.device, amp=args.dtype == "bf16")
    if cache is not None:
        cache.ensure(model, [ref for r in records for ref in (r.source, *r.variants.values())])
    with autocast(args.device, args.dtype):
        stream: Iterator[dict[str, float]] = training_steps(model, records, config, cache)
        for _ in range(warmup):
            next(stream)
        synchronize(args.device)
        started, pairs = time.perf_counter(), 0.0
        for _ in tqdm(range(steps), desc=f"train {label}", leave=False):
            pairs += next(stream)["pairs"]
        synchronize(args.device)
    seconds = time.perf_counter() - started
    return {"steps": steps, "pairs": pairs, "seconds": seconds, "pairs_per_s": pairs / seconds}


def time_scoring(
    model: BlipRewardModel,
    records: list[JudgementRecord],
    cache: FeatureCache | None,
    limit: int | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    items = items_from_records(records)[:limit]
    if cache is not None:
        cache.ensure(model, [ref for i in items for ref in (i.source, i.edited)])
    with autocast(args.device, args.dtype):
        score_items(model, items[:2], batch_size=32, cache=cache)  # warm-up
        synchronize(args.device)
        started = time.perf_counter()
        score_items(model, items, batch_size=32, cache=cache)
        synchronize(args.device)
    seconds = time.perf_counter() - started
    return {"variants": len(items), "seconds": seconds, "variants_per_s": len(items) / seconds}


def time_retrain(
    make_model: Callable[[], BlipRewardModel],
    records: list[JudgementRecord],
    work: Path,
    epochs: int,
    batch_size: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Version 1 on the first 90% of train judgements (warming the cache), then a retrain on
    all of them, once with that cache and once without any."""
    train_records = [r for r in records if r.split == "train"]
    val_records = [r for r in records if r.split == "val"]
    old = train_records[: int(0.9 * len(train_records))]
    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, device=args.device, amp=args.dtype == "bf16",
        patience=None,
    )  # fmt: skip
    cache = FeatureCache(work / "cache")
    train(make_model(), old, val_records, config, work / "v1", feature_cache=cache)
    timings: dict[str, Any] = {
        "judgements_before": len(old),
        "judgements_after": len(train_records),
    }
    for label, used in (("with_cache", cache), ("without_cache", None)):
        model = make_model()
        cache.reset_counts()
        with autocast(args.device, args.dtype):
            started = time.perf_counter()
            result = train(model, train_records, val_records, config, work / label, used)
            synchronize(args.device)
        timings[label] = {
            "seconds": time.perf_counter() - started,
            "steps": result.steps,
            "images_encoded": result.cache_misses,
            "images_reused": result.cache_hits,
            "prefixes_computed": result.prefix_cache_misses,
            "prefixes_reused": result.prefix_cache_hits,
        }
    cached, uncached = timings["with_cache"]["seconds"], timings["without_cache"]["seconds"]
    timings["cached_over_uncached"] = cached / uncached
    return timings


# --- report -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "cpu": cpu,
        "cores": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    return info


def table(results: dict[str, Any]) -> str:
    lines = [f"{'measure':<44} {'value':>12}"]
    for size, section in results["models"].items():
        for key, value in section.get("training", {}).items():
            lines.append(f"{f'train {size}, {key} (pairs/s)':<44} {value['pairs_per_s']:>12.1f}")
        for key, value in section.get("scoring", {}).items():
            label = f"score {size}, {key} (variants/s)"
            lines.append(f"{label:<44} {value['variants_per_s']:>12.1f}")
        retrain = section.get("retrain")
        if retrain:
            for key in ("with_cache", "without_cache"):
                lines.append(f"{f'retrain {size}, {key} (s)':<44} {retrain[key]['seconds']:>12.1f}")
            ratio = retrain["cached_over_uncached"]
            lines.append(f"{f'retrain {size}, cached / uncached':<44} {ratio:>12.2f}")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(14, 4))
    bars: list[list[tuple[str, float]]] = [[], [], []]
    for size, section in results["models"].items():
        bars[0] += [(f"{size}\n{k}", v["pairs_per_s"]) for k, v in section["training"].items()]
        bars[1] += [(f"{size}\n{k}", v["variants_per_s"]) for k, v in section["scoring"].items()]
        if section.get("retrain"):
            bars[2] += [
                (f"{size}\n{k}", section["retrain"][k]["seconds"])
                for k in ("with_cache", "without_cache")
            ]
    titles = ("training (pairs/s, log)", "scoring (variants/s, log)", "retrain +10% (s)")
    for axis, values, title in zip(axes, bars, titles, strict=True):
        if values:
            axis.bar([label for label, _ in values], [value for _, value in values])
        axis.set_title(title)
        if "log" in title:
            axis.set_yscale("log")
        axis.tick_params(axis="x", labelsize=8)
    figure.suptitle(f"reward model on {results['machine']['cpu']} ({results['device']})")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def measure_model(
    label: str,
    make_model: Callable[[], BlipRewardModel],
    records: list[JudgementRecord],
    work: Path,
    args: argparse.Namespace,
    steps: int,
    batch_size: int,
    score_limit: int | None,
    retrain: bool,
) -> dict[str, Any]:
    train_records = [r for r in records if r.split == "train"]
    model = make_model().to(args.device)
    cache = FeatureCache(work / f"{label}-cache")
    section: dict[str, Any] = {"description": model.describe(), "batch_judgements": batch_size}
    section["parameters"] = sum(p.numel() for p in model.parameters())
    section["training"] = {
        "cached_features": time_training(
            model, train_records, cache, steps, batch_size, args, label
        ),
        "pixels": time_training(model, train_records, None, steps, batch_size, args, label),
    }
    section["scoring"] = {
        "cached_features": time_scoring(model, records, cache, score_limit, args),
        "pixels": time_scoring(model, records, None, score_limit, args),
    }
    if retrain:
        section["retrain"] = time_retrain(
            make_model, records, work / f"{label}-retrain", args.retrain_epochs, batch_size, args
        )
    return section


def measure_named_model(
    name: str, records: list[JudgementRecord], work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    if name not in MODELS:
        raise SystemExit(f"--models: {name!r} is not one of {', '.join(MODELS)}")
    size, _, prefix = name.partition("-")
    options: dict[str, Any] = {}
    if prefix:
        options = {
            "freeze_fraction": 1.0,
            "text_freeze_fraction": args.prefix_text_freeze,
            "frozen_prefix": True,
        }
    if size == "tiny":
        return measure_model(
            name, lambda: BlipRewardModel.from_base("tiny", **options), records, work, args,
            args.tiny_steps, 8, None, retrain=True,
        )  # fmt: skip
    section = measure_model(
        name, lambda: base_size_model(args.base_image_size, **options), records, work, args,
        args.base_steps, args.base_batch, args.base_score_items, args.retrain_base,
    )  # fmt: skip
    return {**section, "image_size": args.base_image_size}


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "command": "python " + shlex.join(sys.argv),
        "device": args.device,
        "dtype": args.dtype,
        "machine": machine(),
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="reward-bench-") as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        records = demo_records(work / "demo", args.tasks, args.annotators)
        results["data"] = {
            "tasks": args.tasks,
            "judgements": len(records),
            "build_seconds": time.perf_counter() - started,
        }
        for name in args.models.split(","):
            results["models"][name] = measure_named_model(name, records, work, args)
    results["total_seconds"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reward_training.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "reward_training.png")
    print(table(results))
    print(f"total {results['total_seconds']:.0f} s; wrote {args.out / 'reward_training.json'}")


if __name__ == "__main__":
    main()
