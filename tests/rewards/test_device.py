"""Where the reward model trains and scores: REWARD_DEVICE, autocast, scoring batch sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from django.core.exceptions import ImproperlyConfigured

from editloop.settings import env_device, env_positive_int_or_auto
from rewards.device import (
    CPU_SCORING_BATCH,
    CUDA_SCORING_BATCH,
    autocast_for,
    resolve_device,
    scoring_batch_size,
)
from rewards.feature_cache import FeatureCache
from rewards.reward_model import BlipRewardModel
from rewards.scoring import items_from_records, score_items
from tests.conftest import ROOT
from tests.rewards import make_records

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# --- the setting (a string check: the web process never imports torch) ---------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("auto", "auto"),
        ("cpu", "cpu"),
        ("cuda", "cuda"),
        ("cuda:1", "cuda:1"),
        (" CUDA:0 ", "cuda:0"),
    ],  # fmt: skip
)
def test_it_accepts_the_device_names(monkeypatch, raw: str, expected: str) -> None:
    monkeypatch.setenv("REWARD_DEVICE", raw)
    assert env_device("REWARD_DEVICE", "auto") == expected


def test_an_unset_device_is_auto(monkeypatch) -> None:
    monkeypatch.delenv("REWARD_DEVICE", raising=False)
    assert env_device("REWARD_DEVICE", "auto") == "auto"


@pytest.mark.parametrize("raw", ["gpu", "cuda:", "cuda:x", "cuda:-1", "mps0", ""])
def test_it_refuses_a_bad_device_naming_the_setting(monkeypatch, raw: str) -> None:
    monkeypatch.setenv("REWARD_DEVICE", raw)
    with pytest.raises(ImproperlyConfigured, match=r"REWARD_DEVICE=.*auto, cpu, cuda or cuda:N"):
        env_device("REWARD_DEVICE", "auto")


def test_the_scoring_batch_is_auto_unless_a_positive_number(monkeypatch) -> None:
    monkeypatch.delenv("REWARD_SCORING_BATCH", raising=False)
    assert env_positive_int_or_auto("REWARD_SCORING_BATCH") is None
    monkeypatch.setenv("REWARD_SCORING_BATCH", "auto")
    assert env_positive_int_or_auto("REWARD_SCORING_BATCH") is None
    monkeypatch.setenv("REWARD_SCORING_BATCH", "64")
    assert env_positive_int_or_auto("REWARD_SCORING_BATCH") == 64
    for bad in ("0", "-3", "many"):
        monkeypatch.setenv("REWARD_SCORING_BATCH", bad)
        with pytest.raises(ImproperlyConfigured, match="REWARD_SCORING_BATCH"):
            env_positive_int_or_auto("REWARD_SCORING_BATCH")


def test_a_bad_device_stops_the_process_at_startup() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = "
         "'editloop.settings'; django.setup()"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "REWARD_DEVICE": "gpu0"},
    )  # fmt: skip
    assert result.returncode != 0
    assert "REWARD_DEVICE='gpu0' is not a device" in result.stderr


# --- the worker-side decisions --------------------------------------------------------------


def test_auto_is_cuda_exactly_when_the_worker_has_it() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@no_cuda
def test_asking_for_cuda_without_one_fails_naming_the_device() -> None:
    with pytest.raises(RuntimeError, match="'cuda:1' asked for .* no usable CUDA device"):
        resolve_device("cuda:1")


def test_scoring_batches_are_sized_for_the_device() -> None:
    assert scoring_batch_size("cpu") == CPU_SCORING_BATCH == 16
    assert scoring_batch_size("cpu", configured=48) == 48
    with pytest.raises(ValueError, match="must be >= 1"):
        scoring_batch_size("cpu", configured=0)


def test_the_cpu_runs_in_full_precision() -> None:
    with autocast_for("cpu"):
        product = torch.ones(4, 4) @ torch.ones(4, 4)
    assert product.dtype == torch.float32


@needs_cuda
def test_cuda_scores_in_bf16_with_big_batches() -> None:
    assert scoring_batch_size("cuda") == CUDA_SCORING_BATCH
    with autocast_for("cuda"):
        product = torch.ones(4, 4, device="cuda") @ torch.ones(4, 4, device="cuda")
    assert product.dtype == torch.bfloat16
    with autocast_for("cuda", enabled=False):
        product = torch.ones(4, 4, device="cuda") @ torch.ones(4, 4, device="cuda")
    assert product.dtype == torch.float32


# --- scoring and the cache on a device ------------------------------------------------------


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list:
    return make_records(tmp_path_factory.mktemp("device-images"), n_tasks=2, annotators=1)


def test_scoring_on_cpu_given_explicitly_equals_the_default(records: list) -> None:
    model = BlipRewardModel.from_base("tiny")
    items = items_from_records(records)
    default = score_items(model, items)
    explicit = score_items(model, items, device="cpu", batch_size=CPU_SCORING_BATCH)
    assert default == explicit
    assert all(type(s["overall"]) is float for s in explicit.values())


def test_the_cache_stores_float32_on_the_cpu_even_inside_bf16_autocast(
    tmp_path: Path, records: list
) -> None:
    """A caller's autocast must not change what other devices read from a shared cache."""
    model = BlipRewardModel.from_base("tiny")
    refs = [records[0].source]
    plain = FeatureCache(tmp_path / "plain").features(model, refs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = FeatureCache(tmp_path / "autocast").features(model, refs)
    assert inside.dtype == plain.dtype == torch.float32
    assert inside.device.type == "cpu"
    assert torch.equal(inside, plain)


@needs_cuda
def test_a_cache_written_on_the_gpu_scores_the_same_on_the_cpu(
    tmp_path: Path, records: list
) -> None:
    items = items_from_records(records)
    gpu_model = BlipRewardModel.from_base("tiny")
    on_gpu = score_items(gpu_model, items, cache=FeatureCache(tmp_path), device="cuda")
    cpu_model = BlipRewardModel.from_base("tiny")
    reread = FeatureCache(tmp_path)
    on_cpu = score_items(cpu_model, items, cache=reread, device="cpu")
    assert reread.misses == 0  # every entry the GPU wrote was read back on the CPU
    for key, score in on_cpu.items():
        assert on_gpu[key]["overall"] == pytest.approx(score["overall"], abs=5e-2)  # bf16
