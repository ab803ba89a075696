"""Training checkpoints: one ``last.pt`` per model, written atomically, resumed when it matches.

A checkpoint stores everything an uninterrupted run would still have in memory after an
epoch (module, optimizer, scheduler and gradient-scaler states, the epoch, every RNG state,
the best weights so far and the metrics history) plus a ``fingerprint`` of the training
inputs. A run resumes only from a checkpoint with the same fingerprint; any other is ignored
(and overwritten by the next save). Checkpoints hold only tensors and plain Python values so
that they load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlform.training.types import TrainingData

__all__ = [
    "FORMAT_VERSION",
    "fingerprint",
    "load_checkpoint",
    "remove_checkpoint",
    "restore_rng",
    "rng_state",
    "save_checkpoint",
]

FORMAT_VERSION = 1
FILENAME = "last.pt"


def fingerprint(spec: Mapping[str, Any], data: TrainingData, extra: Mapping[str, Any]) -> str:
    """Digest of what determines the training: spec, data (shapes and bytes), run settings."""
    digest = hashlib.sha256()
    document = {"format": FORMAT_VERSION, "spec": spec, "extra": extra, "torch": torch.__version__}
    digest.update(json.dumps(document, sort_keys=True, default=str).encode())
    digest.update(repr((data.task, data.feature_names, data.label, data.classes)).encode())
    for split in (data.train, data.validation):
        if split is None:
            continue
        for array in (split.x, split.y):
            digest.update(repr((array.shape, str(array.dtype))).encode())
            digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def save_checkpoint(directory: Path, state: Mapping[str, Any]) -> Path:
    """Write ``directory/last.pt`` atomically (temporary file, fsync, rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FILENAME
    temporary = directory / f".{FILENAME}.{os.getpid()}.tmp"
    with temporary.open("wb") as handle:
        torch.save(dict(state), handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def load_checkpoint(directory: Path, expected: str) -> dict[str, Any] | None:
    """The checkpoint in ``directory`` if it exists, loads and matches ``expected``."""
    path = directory / FILENAME
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated or foreign file: train from scratch
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != expected:
        return None
    return state


def remove_checkpoint(directory: Path) -> None:
    (directory / FILENAME).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty or not there
        directory.rmdir()


def rng_state(device: torch.device) -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain values."""
    version, internal, gauss = random.getstate()
    numpy_state: tuple[Any, ...] = tuple(np.random.get_state(legacy=True))
    kind, keys, position, has_gauss, cached = numpy_state
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Mapping[str, Any], device: torch.device) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
