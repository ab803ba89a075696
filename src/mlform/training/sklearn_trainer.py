"""The scikit-learn trainer: a ``framework: sklearn`` model spec and a feature set -> model.

The estimator comes from ``estimator._target_``: any scikit-learn estimator class or a user
factory returning one (``ml.pipelines.make_forest``). It is fitted on ``train`` plus
``validation`` (scikit-learn models have no use for a separate validation split here);
labels are class ids, so ``predict`` returns ids and ``predict_proba`` has one column per
class in ``TrainingData.classes``. The artifact is ``model.joblib`` (the fitted estimator,
pickled: loading it runs code, so load only artifacts from your own registry) and
``meta.json``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.base import is_classifier, is_regressor

from mlform.config.instantiate import instantiate
from mlform.diagnostics import Diagnostic
from mlform.providers.base import StepFailed
from mlform.training.boundary import user_code
from mlform.training.types import Array, TrainedModel, TrainingData, as_float32

__all__ = ["FORMAT_VERSION", "SklearnPredictor", "load_sklearn", "train_sklearn"]

FORMAT_VERSION = 1
Progress = Callable[[str, float | None], None]


class SklearnPredictor:
    """Class ids / values and class probabilities from a fitted estimator."""

    def __init__(self, estimator: Any, meta: Mapping[str, Any]) -> None:
        self.estimator = estimator
        self.meta = dict(meta)
        self.classification = meta["task"] == "classification"
        self.n_classes = len(meta.get("classes") or ())

    def predict(self, x: Array) -> Array:
        out = np.asarray(self.estimator.predict(as_float32(x)))
        return out.astype(np.int64) if self.classification else out.astype(np.float64)

    def predict_proba(self, x: Array) -> Array | None:
        if not self.classification:
            return None
        inputs = as_float32(x)
        if hasattr(self.estimator, "predict_proba"):
            scores = np.asarray(self.estimator.predict_proba(inputs), dtype=np.float64)
        elif hasattr(self.estimator, "decision_function"):
            scores = _softmax(np.asarray(self.estimator.decision_function(inputs)))
        else:
            return None
        return self._all_classes(scores)

    def _all_classes(self, scores: Array) -> Array:
        """One column per class id, also for classes the training rows lacked."""
        seen = np.asarray(getattr(self.estimator, "classes_", np.arange(scores.shape[1])))
        if scores.shape[1] == self.n_classes and np.array_equal(seen, np.arange(self.n_classes)):
            return scores
        out = np.zeros((scores.shape[0], self.n_classes), dtype=np.float64)
        out[:, seen.astype(np.int64)] = scores
        return out


def train_sklearn(
    spec: Mapping[str, Any],
    data: TrainingData,
    *,
    progress: Progress,
    address: str = "model",
) -> TrainedModel:
    """Fit the estimator of ``spec`` (a ``framework: sklearn`` model config) on ``data``."""
    started = time.perf_counter()
    block = _block(spec.get("estimator"))
    key = f"models.{address.partition('.')[2]}.estimator" if address.startswith("model.") else None
    with user_code("building the estimator", address, key=key):
        estimator = instantiate(block)
    _check_estimator(estimator, data, address, key)
    x, y = data.train.x, data.train.y
    if data.validation is not None:
        x = np.concatenate([x, data.validation.x])
        y = np.concatenate([y, data.validation.y])
    progress(f"fitting {type(estimator).__name__} on {x.shape[0]} rows", 0.1)
    with user_code("training", address, key=key):
        estimator.fit(as_float32(x), y)
    progress("fitted", 1.0)
    meta = {
        "estimator": block,
        "task": data.task,
        "classes": list(data.classes),
        "feature_names": list(data.feature_names),
        "label": data.label,
        "sklearn": sklearn.__version__,
    }
    return TrainedModel(
        framework="sklearn",
        predictor=SklearnPredictor(estimator, meta),
        params={"estimator": block, "resolved": _plain_params(estimator)},
        epochs=(),
        duration_s=time.perf_counter() - started,
        hardware={
            "device": "cpu",
            "sklearn": sklearn.__version__,
            "cpu_count": os.cpu_count(),
            "n_jobs": _plain_params(estimator).get("n_jobs"),
        },
        save=lambda directory: _save(directory, estimator, meta),
    )


def load_sklearn(directory: Path) -> SklearnPredictor:
    """The predictor saved in ``directory`` (unpickles ``model.joblib``: trusted files only)."""
    meta = json.loads((Path(directory) / "meta.json").read_text())
    return SklearnPredictor(joblib.load(Path(directory) / "model.joblib"), meta)


def _save(directory: Path, estimator: Any, meta: Mapping[str, Any]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    model, description = directory / "model.joblib", directory / "meta.json"
    joblib.dump(estimator, model)
    document = {"format_version": FORMAT_VERSION, "framework": "sklearn", **meta}
    description.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return [model, description]


def _check_estimator(estimator: Any, data: TrainingData, address: str, key: str | None) -> None:
    problem = None
    if not (hasattr(estimator, "fit") and hasattr(estimator, "predict")):
        problem = f"estimator._target_ built a {type(estimator).__name__}, not an estimator"
        todo = "Name a scikit-learn estimator (or a factory returning one) with fit/predict."
    elif data.task == "classification" and is_regressor(estimator):
        problem = f"{type(estimator).__name__} is a regressor but the task is classification"
        todo = "Use a classifier, or set task: regression."
    elif data.task == "regression" and is_classifier(estimator):
        problem = f"{type(estimator).__name__} is a classifier but the task is regression"
        todo = "Use a regressor, or set task: classification."
    if problem is not None:
        raise StepFailed(Diagnostic.error(f"{address}: {problem}", todo, key=key, address=address))


def _block(value: Any) -> dict[str, Any]:
    if hasattr(value, "model_dump"):
        dumped: dict[str, Any] = value.model_dump(by_alias=True, mode="json")
        return dumped
    return dict(value or {})


def _plain_params(estimator: Any) -> dict[str, Any]:
    """The estimator's JSON-able hyper-parameters (``get_params``, nested ones included)."""
    try:
        params = estimator.get_params(deep=True)
    except Exception:  # not a scikit-learn estimator
        return {}
    plain = (str, int, float, bool, type(None))
    return {k: v for k, v in sorted(params.items()) if isinstance(v, plain)}


def _softmax(scores: Array) -> Array:
    if scores.ndim == 1:  # binary decision function: score of the positive class
        positive = 1.0 / (1.0 + np.exp(-scores.astype(np.float64)))
        return np.stack([1.0 - positive, positive], axis=1)
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    result: Array = shifted / shifted.sum(axis=1, keepdims=True)
    return result
