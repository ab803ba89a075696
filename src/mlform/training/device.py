"""Where and how a torch model trains: device, precision, determinism and seeding.

``device: auto`` trains on CUDA only when the model's resource profile asks for a GPU *and*
one is visible; ``device: cuda`` without a visible GPU is an error. ``bf16``/``fp16`` use
``torch.autocast`` on CUDA (fp16 with a gradient scaler); on the CPU mlform trains in fp32
and says so in ``hardware``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "DeviceError",
    "Precision",
    "deterministic_mode",
    "hardware_info",
    "seeded",
    "select_device",
    "select_precision",
]


class DeviceError(ValueError):
    """``trainer.device`` asks for hardware this machine does not have."""


@dataclass(frozen=True, slots=True)
class Precision:
    requested: str
    used: str  # fp32 | bf16 | fp16
    autocast: torch.dtype | None
    note: str | None = None

    @property
    def scaled(self) -> bool:
        """fp16 needs a gradient scaler against underflow."""
        return self.used == "fp16"


def select_device(requested: str, *, gpu_requested: bool) -> torch.device:
    if requested == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if requested == "cuda":
        if not available:
            raise DeviceError(
                "trainer.device is cuda but no CUDA GPU is visible to PyTorch "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); "
                "use device: auto to fall back to the CPU, or run on a machine with a GPU"
            )
        return torch.device("cuda")
    if requested != "auto":
        raise DeviceError(f"unknown trainer.device {requested!r}; use auto, cpu or cuda")
    return torch.device("cuda" if gpu_requested and available else "cpu")


def select_precision(requested: str, device: torch.device) -> Precision:
    if requested == "fp32":
        return Precision(requested, "fp32", None)
    if requested not in ("bf16", "fp16"):
        raise DeviceError(f"unknown trainer.precision {requested!r}; use fp32, bf16 or fp16")
    if device.type != "cuda":
        return Precision(requested, "fp32", None, f"{requested} requested; the CPU trains in fp32")
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        return Precision(requested, "fp32", None, "bf16 requested; this GPU lacks bf16")
    dtype = torch.bfloat16 if requested == "bf16" else torch.float16
    return Precision(requested, requested, dtype)


def hardware_info(
    device: torch.device, precision: Precision, *, world_size: int = 1, backend: str | None = None
) -> dict[str, Any]:
    """What trained the model; ``world_size``/``backend`` of a data-parallel (torchrun) run."""
    info: dict[str, Any] = {
        "device": device.type,
        "cuda_device": None,
        "precision_requested": precision.requested,
        "precision_used": precision.used,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "world_size": world_size,
        "distributed_backend": backend,
    }
    if device.type == "cuda":
        info["cuda_device"] = torch.cuda.get_device_name(device)
    if precision.note:
        info["precision_note"] = precision.note
    return info


@contextmanager
def deterministic_mode(enabled: bool, device: torch.device) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` for the block; the previous setting after."""
    if not enabled:
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    env_key, env_before = "CUBLAS_WORKSPACE_CONFIG", os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if device.type == "cuda" and env_before is None:
        os.environ[env_key] = ":4096:8"  # deterministic cuBLAS (CUDA >= 10.2)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)
        if device.type == "cuda" and env_before is None:
            os.environ.pop(env_key, None)


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed Python, NumPy and torch for the block; restore their previous states after."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices: list[int] = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
