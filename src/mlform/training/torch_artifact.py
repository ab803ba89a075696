"""A trained torch model as a predictor, and its artifact files.

The artifact is ``model.pt`` (the module's ``state_dict``) and ``module.json`` (the
``_target_`` block, ``in_features``/``out_features``, the loss, the classes and the input
standardization: the trainer standardizes inputs with the training split's per-column mean
and standard deviation, and the predictor applies the same to every input it is given).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlform.config.instantiate import instantiate
from mlform.training.losses import Objective, select_objective
from mlform.training.types import Array, as_float32

__all__ = ["FORMAT_VERSION", "TorchPredictor", "load_torch", "save_torch"]

FORMAT_VERSION = 1
_CHUNK = 8192


class TorchPredictor:
    """Predictions from a trained module on the CPU, inputs standardized as in training."""

    def __init__(self, module: nn.Module, objective: Objective, meta: Mapping[str, Any]) -> None:
        self.module = module.eval()
        self.objective = objective
        self.meta = dict(meta)
        self._mean = torch.tensor(meta["input_mean"], dtype=torch.float32)
        self._std = torch.tensor(meta["input_std"], dtype=torch.float32)

    def _outputs(self, x: Array) -> torch.Tensor:
        inputs = torch.from_numpy(as_float32(x))
        chunks = []
        with torch.inference_mode():
            for start in range(0, inputs.shape[0], _CHUNK):
                batch = (inputs[start : start + _CHUNK] - self._mean) / self._std
                chunks.append(self.objective.outputs(self.module(batch)).float())
        if not chunks:
            width = () if self.objective.out_features == 1 else (self.objective.out_features,)
            return torch.empty((0, *width))
        return torch.cat(chunks)

    def predict(self, x: Array) -> Array:
        out = self.objective.predictions(self._outputs(x)).numpy()
        return out.astype(np.int64) if self.objective.classification else out.astype(np.float64)

    def predict_proba(self, x: Array) -> Array | None:
        if not self.objective.classification:
            return None
        probabilities = self.objective.probabilities(self._outputs(x))
        return None if probabilities is None else probabilities.numpy().astype(np.float64)


def save_torch(directory: Path, module: nn.Module, meta: Mapping[str, Any]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    weights, description = directory / "model.pt", directory / "module.json"
    state = {key: value.detach().cpu() for key, value in module.state_dict().items()}
    torch.save(state, weights)
    document = {"format_version": FORMAT_VERSION, "framework": "torch", **meta}
    description.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return [weights, description]


def load_torch(directory: Path) -> TorchPredictor:
    """Rebuild the module named in ``module.json``, load ``model.pt``, return a predictor."""
    meta = json.loads((Path(directory) / "module.json").read_text())
    module = instantiate(
        meta["module"], in_features=meta["in_features"], out_features=meta["out_features"]
    )
    state = torch.load(Path(directory) / "model.pt", map_location="cpu", weights_only=True)
    module.load_state_dict(state)
    objective = select_objective(meta["loss"], meta["task"], len(meta.get("classes") or ()))
    return TorchPredictor(module, objective, meta)
