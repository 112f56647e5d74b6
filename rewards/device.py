"""Where the reward model runs on a worker, and how: the device, bf16 autocast, batch sizes.

Plain torch, no Django: the trainer, the scorer and the benchmarks call these with the
device name they were given (the worker passes settings.REWARD_DEVICE; editloop/settings.py
only checks the string, so the web process never imports torch).
"""

from __future__ import annotations

import contextlib

import torch

# Edits per scoring forward pass when nothing else is configured. On the CPU a bigger batch
# gains nothing and holds more memory; on a GPU 256 base-size edits keep the device busy
# (~10 ms of bf16 compute per batch) and fit in a few GiB.
CPU_SCORING_BATCH = 16
CUDA_SCORING_BATCH = 256

Device = str | torch.device


def resolve_device(name: Device) -> torch.device:
    """`auto` → CUDA when this process sees a GPU, else the CPU; cpu, cuda, cuda:N as
    given. A GPU asked for but absent fails here, naming it, rather than deep in a forward."""
    if isinstance(name, torch.device):
        device = name
    elif name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(name)
    if device.type == "cuda":
        _check_cuda(device)
    return device


def _check_cuda(device: torch.device) -> None:
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"reward device {str(device)!r} asked for (REWARD_DEVICE or the run's `device` "
            "option) but this worker has no usable CUDA device; use auto or cpu"
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise RuntimeError(
            f"reward device {str(device)!r} asked for but this worker has {count} CUDA "
            f"device(s): cuda:0 to cuda:{count - 1}"
        )


def uses_bf16(device: Device) -> bool:
    """bf16 autocast on CUDA only: CPU bf16 matmuls are slower than fp32 on most CPUs."""
    return resolve_device(device).type == "cuda"


def autocast_for(device: Device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (weights stay fp32, matmuls run in bf16); nothing on the CPU."""
    if enabled and uses_bf16(device):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def scoring_batch_size(device: Device, configured: int | None = None) -> int:
    """`configured` (REWARD_SCORING_BATCH) when set, else sized for the device."""
    if configured is not None:
        if configured < 1:
            raise ValueError(f"scoring batch size must be >= 1, not {configured}")
        return configured
    return CUDA_SCORING_BATCH if resolve_device(device).type == "cuda" else CPU_SCORING_BATCH


def synchronize(device: Device) -> None:
    """Wait for queued GPU work, so a timer read afterwards counts it (no-op on the CPU)."""
    if resolve_device(device).type == "cuda":
        torch.cuda.synchronize(resolve_device(device))
