"""Values passed between data loading, trainers, evaluation and the registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]
Task = Literal["classification", "regression"]


@dataclass(frozen=True, slots=True)
class Split:
    """One part of a feature set: inputs, target, and the sensitive columns (for fairness)."""

    x: Array  # float32, shape (rows, features)
    y: Array  # labels (classification: int64 class indices) or float64 targets
    sensitive: Mapping[str, Array] = field(default_factory=dict)  # column -> raw values
    ids: Array | None = None  # entity key per row, when the feature set has one


@dataclass(frozen=True, slots=True)
class TrainingData:
    """A feature set ready for training; ``validation`` may be None (trainers then hold
    out part of ``train`` themselves, seeded)."""

    task: Task
    feature_names: tuple[str, ...]
    label: str
    train: Split
    test: Split
    validation: Split | None = None
    classes: tuple[Any, ...] = ()  # original label values, index = class id


class Predictor(Protocol):
    def predict(self, x: Array) -> Array:
        """Class ids (classification) or values (regression)."""
        ...

    def predict_proba(self, x: Array) -> Array | None:
        """Class probabilities, shape (rows, classes); None for regression."""
        ...


@dataclass(frozen=True, slots=True)
class EpochMetrics:
    epoch: int
    metrics: Mapping[str, float]  # e.g. {"train_loss": .., "val_loss": .., "val_accuracy": ..}
    seconds: float


@dataclass(frozen=True, slots=True)
class TrainedModel:
    """What a trainer returns. ``save`` writes the artifact files into a directory (the
    registry content-addresses them); ``load`` in the same trainer module reads them back."""

    framework: Literal["sklearn", "torch"]
    predictor: Predictor
    params: Mapping[str, Any]  # resolved hyper-parameters as JSON-able values
    epochs: tuple[EpochMetrics, ...]  # empty for scikit-learn
    duration_s: float
    hardware: Mapping[str, Any]  # device, cuda name, precision, cpu count, torch/sklearn versions
    save: Callable[[Path], list[Path]]
    resumed_from_epoch: int | None = None  # set when an interrupted training was resumed
    # False on the ranks other than 0 of a data-parallel (torchrun) run: they hold the same
    # model, but only rank 0 writes and registers the artifact (their ``save`` writes nothing).
    primary: bool = True


def as_float32(x: Any) -> Array:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))
