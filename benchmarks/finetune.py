"""Editor fine-tuning speed and memory per objective, plus sampling speed of the result.

Each objective (supervised, weighted, conditional, multireward, dpo) trains in a fresh
subprocess, so memory peaks of one never show up in another. Measured per objective:

- steps/s and examples/s of `train_editor` (the first steps are warm-up and not timed;
  the last step is not timed either, it also writes the final checkpoint);
- memory: on CUDA `torch.cuda.max_memory_allocated`; on the CPU the process's peak RSS
  (`resource.getrusage`, which torch's allocations do show up in, unlike tracemalloc),
  in total and as the growth over the process before training (data and imports);
- sampling: images/s of the exported pipeline through `training.generate.DiffusersEditor`.

Sizes:

- tiny (default): the random tiny editor of the tests (training/tiny.py) at 32 px, fp32;
- sd15: a Stable-Diffusion-1.5-shaped random-init editor (8-channel 860M UNet, SD VAE,
  CLIP ViT-L text encoder) at 256 px in bf16; needs CUDA and refuses without it.

Data are synthetic: smooth random photos edited by the procedural operations, nothing is
downloaded.

    .venv/bin/python benchmarks/finetune.py --threads 1          # tiny, CPU, ~1 minute
    .venv/bin/python benchmarks/finetune.py --size sd15 --steps 20 --batch-size 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("supervised", "weighted", "conditional", "multireward", "dpo")
TIMING_WARMUP_STEPS = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny", choices=["tiny", "sd15"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--steps", type=int, default=None, help="default: 30 tiny, 20 sd15")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=None, help="default: 32 / 256")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--sample-steps", type=int, default=20, help="denoising steps")
    parser.add_argument("--sample-images", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.steps = args.steps or (30 if args.size == "tiny" else 20)
    args.resolution = args.resolution or (32 if args.size == "tiny" else 256)
    return args


# --- the child: one objective, one process ----------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def synthetic_records(folder: Path, method: str, count: int = 8) -> list[Any]:
    """Smooth random photos, each edited by a procedural operation; DPO pairs prefer the
    edit over a darkened copy of it."""
    import numpy as np
    from PIL import Image

    from training.procedural import OPERATIONS
    from training.records import EditExample, PreferencePair

    edits = [
        ("make it brighter", "brighten"),
        ("make the colours warmer", "warm"),
        ("add a vignette", "vignette"),
        ("increase the contrast", "contrast"),
    ]
    records: list[Any] = []
    for index in range(count):
        instruction, operation = edits[index % len(edits)]
        coarse = np.random.default_rng(index).integers(0, 256, (4, 4, 3), np.uint8)
        photo = Image.fromarray(coarse).resize((96, 96), Image.Resampling.BICUBIC)
        source, edited = folder / f"source{index}.png", folder / f"edited{index}.png"
        photo.save(source)
        OPERATIONS[operation](photo, 1.0).save(edited)
        if method == "dpo":
            rejected = folder / f"rejected{index}.png"
            OPERATIONS["darken"](Image.open(edited), 1.5).save(rejected)
            records.append(PreferencePair(source, edited, rejected, instruction))
        else:
            aspects = {"following": index % 6, "preserving": 4.0, "quality": 5.0 - index % 3}
            records.append(EditExample(source, edited, instruction, float(index % 5), aspects))
    return records


def run_child(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from training.generate import DiffusersEditor
    from training.trainer import FinetuneConfig, StepReport, train_editor

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    method = args.child
    config = FinetuneConfig(
        method=method,
        resolution=args.resolution,
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=1e-5 if method == "dpo" else 1e-4,
        mixed_precision="bf16" if args.size == "sd15" else "no",
        gradient_checkpointing=args.gradient_checkpointing,
        checkpoint_every=10**9,  # only the final checkpoint: timing is of training steps
    )
    stamps: dict[int, float] = {}

    def on_step(report: StepReport) -> None:
        if cuda:
            torch.cuda.synchronize()
        stamps[report.step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as folder:
        records = synthetic_records(Path(folder), method)
        rss_before = peak_rss_mb()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        result = train_editor(config, records, args.base, Path(folder) / "run", on_step=on_step)
        total = time.perf_counter() - started
        training_peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
        rss_after = peak_rss_mb()
        sampling = time_sampling(
            DiffusersEditor(result.pipeline_dir, steps=args.sample_steps),
            Path(folder),
            args.sample_images,
        )

    first, last = TIMING_WARMUP_STEPS, args.steps - 1
    steps_per_s = (last - first) / (stamps[last] - stamps[first])
    return {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "steps_per_s": steps_per_s,
        "examples_per_s": steps_per_s * args.batch_size,
        "total_seconds": total,
        "final_loss": result.final_loss,
        "peak_rss_mb": rss_after,
        "training_rss_growth_mb": rss_after - rss_before,
        "cuda_peak_allocated_mb": training_peak,
        **sampling,
    }


def time_sampling(editor: Any, folder: Path, images: int) -> dict[str, Any]:
    from PIL import Image

    photo = Image.open(folder / "source0.png").convert("RGB")
    editor.edit(photo, "make it brighter", seed=0)  # load + warm-up, not timed
    started = time.perf_counter()
    for seed in range(1, images + 1):
        editor.edit(photo, "make it brighter", seed=seed)
    seconds = time.perf_counter() - started
    return {
        "sampling_steps": editor.steps,
        "sampling_resolution": editor.resolution,
        "sampling_images_per_s": images / seconds,
    }


# --- the parent: a subprocess per objective ---------------------------------------------------


def write_sd15_base(folder: Path) -> Path:
    """A random-init editor with Stable Diffusion 1.5's shapes, saved as a pipeline dir."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from training.pix2pix import EditorParts, save_pipeline
    from training.tiny import build_tiny_tokenizer, sd_noise_scheduler

    tokenizer = build_tiny_tokenizer()
    tokenizer.model_max_length = 77
    torch.manual_seed(0)
    parts = EditorParts(
        # diffusers' defaults are SD 1.x's UNet except the text width (768 for CLIP ViT-L).
        unet=UNet2DConditionModel(in_channels=8, cross_attention_dim=768),
        vae=AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=4,
        ),
        text_encoder=CLIPTextModel(
            CLIPTextConfig(
                vocab_size=max(len(tokenizer), 49408),
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                max_position_embeddings=77,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        ),
        tokenizer=tokenizer,
        noise_scheduler=sd_noise_scheduler(),
    )
    return save_pipeline(parts, folder / "sd15-random")


def machine() -> dict[str, Any]:
    import diffusers
    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def measure(args: argparse.Namespace, method: str, base: str) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--base",
        base,
        "--size",
        args.size,
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--resolution",
        str(args.resolution),
        "--sample-steps",
        str(args.sample_steps),
        "--sample-images",
        str(args.sample_images),
        "--threads",
        str(args.threads),
    ]
    if args.gradient_checkpointing:
        command.append("--gradient-checkpointing")
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def table(results: dict[str, Any]) -> str:
    lines = [f"{'method':<12} {'steps/s':>8} {'ex/s':>7} {'peak MB':>8} {'img/s':>7}"]
    for method, row in results["methods"].items():
        peak = row["cuda_peak_allocated_mb"] or row["peak_rss_mb"]
        lines.append(
            f"{method:<12} {row['steps_per_s']:8.2f} {row['examples_per_s']:7.1f} "
            f"{peak:8.0f} {row['sampling_images_per_s']:7.2f}"
        )
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results["methods"])
    rows = [results["methods"][m] for m in methods]
    figure, (speed, memory) = plt.subplots(1, 2, figsize=(10, 3.5))
    speed.bar(methods, [row["steps_per_s"] for row in rows])
    speed.set_title(f"training steps/s (batch {results['config']['batch_size']})")
    cuda = rows[0]["cuda_peak_allocated_mb"] is not None
    key = "cuda_peak_allocated_mb" if cuda else "peak_rss_mb"
    memory.bar(methods, [row[key] for row in rows])
    memory.set_title("peak CUDA memory (MB)" if cuda else "peak process RSS (MB)")
    for axes in (speed, memory):
        axes.tick_params(axis="x", rotation=20)
    figure.suptitle(
        f"editor fine-tuning, {results['size']} at {results['config']['resolution']} px"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(run_child(args)))
        return
    import torch
    from tqdm import tqdm

    if args.size == "sd15" and not torch.cuda.is_available():
        sys.exit("--size sd15 needs a CUDA GPU (bf16, ~20 GB for DPO); use --size tiny here")
    results: dict[str, Any] = {
        "command": "python benchmarks/finetune.py " + shlex.join(sys.argv[1:]),
        "size": args.size,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": args.threads or torch.get_num_threads(),
        "machine": machine(),
        "config": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "resolution": args.resolution,
            "gradient_checkpointing": args.gradient_checkpointing,
            "precision": "bf16" if args.size == "sd15" else "fp32",
            "timed_steps": args.steps - 1 - TIMING_WARMUP_STEPS,
        },
        "methods": {},
    }
    with tempfile.TemporaryDirectory() as folder:
        base = "tiny" if args.size == "tiny" else str(write_sd15_base(Path(folder)))
        for method in tqdm(args.methods, desc=f"objectives ({args.size})"):
            results["methods"][method] = measure(args, method, base)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "finetune" if args.size == "tiny" else f"finetune_{args.size}"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / f"{name}.png")
    print(table(results))
    print(f"wrote {args.out / f'{name}.json'}")


if __name__ == "__main__":
    main()
