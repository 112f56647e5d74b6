"""benchmarks/gpu.py: the prepared GPU run. CI has no GPU, so the CPU smoke mode proves the
script runs end to end; the arithmetic and the model sizes are checked directly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu
from benchmarks.reward_training import blip_size_config, blip_size_model
from tests.conftest import ROOT


def test_the_smoke_run_measures_every_section_and_writes_json(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu.py", "--device", "cpu", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-3000:]
    assert "train tiny, cached_features (pairs/s)" in result.stdout
    assert "ImageReward-scale tiny" in result.stdout
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["smoke"] is True and report["device"] == "cpu" and report["dtype"] == "fp32"
    tiny = report["models"]["tiny"]
    for source in ("cached_features", "pixels"):
        assert tiny["training"][source]["pairs_per_s"] > 0
    scoring = tiny["scoring"]
    assert scoring["batch"] == 16  # the CPU's scoring batch
    assert scoring["cold_cache"]["images_encoded"] == 24 + 6  # 24 edits of 6 photos, all new
    assert scoring["warm_cache"]["images_encoded"] == 0
    assert scoring["pixels"]["variants"] == 8
    assert report["retrain"]["tiny"]["cached_over_uncached"] > 0
    projection = report["verdicts"]["imagereward_training"]["cached_features"]
    rate = tiny["training"]["cached_features"]["pairs_per_s"]
    assert projection["projected_seconds"] == pytest.approx(137_000 * 10 / rate)
    assert all("seconds" in row for row in report["sections"])  # nothing skipped


def test_it_refuses_to_measure_a_cpu_without_smoke() -> None:
    with pytest.raises(SystemExit, match="measures a GPU; on a CPU use --smoke"):
        gpu.main(["--device", "cpu"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_a_gpu_the_default_run_fails_naming_the_device() -> None:
    with pytest.raises(RuntimeError, match="'cuda' asked for"):
        gpu.main([])


def test_the_projection_is_imagereward_pairs_times_epochs_over_pairs_per_s() -> None:
    training = {"cached_features": {"pairs_per_s": 2000.0}, "pixels": {"pairs_per_s": 1000.0}}
    results = {"models": {"large": {"training": training}}}

    projection = gpu.imagereward_projection(results, "large")

    assert projection["cached_features"]["projected_seconds"] == pytest.approx(685.0)
    assert projection["cached_features"]["met"] is True  # under 15 minutes
    assert projection["pixels"]["projected_seconds"] == pytest.approx(1370.0)
    assert projection["pixels"]["met"] is False


def test_a_section_after_the_budget_is_skipped_not_run() -> None:
    budget = gpu.Budget(seconds=-1.0)
    ran: list[str] = []

    answer = budget.run("late", lambda: ran.append("late"))

    assert ran == [] and "budget" in answer["skipped"]
    assert budget.log[0]["section"] == "late" and "skipped" in budget.log[0]


@pytest.mark.parametrize(
    ("size", "vision_layers", "width", "parameters"),
    [("base", 12, 768, 225.8e6), ("large", 24, 1024, 449.9e6)],
)
def test_the_blip_sizes_are_blips_architectures(
    size: str, vision_layers: int, width: int, parameters: float
) -> None:
    config = blip_size_config(size, 224)
    assert config.vision_config.num_hidden_layers == vision_layers
    assert config.vision_config.hidden_size == width
    assert config.text_config.encoder_hidden_size == width  # cross-attention reads the ViT
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = blip_size_model(size, 224)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(parameters, rel=0.01)
