"""Metric values of a candidate on held-out data, computed with scikit-learn.

Classification metrics take class ids (``y_true``, ``y_pred``) and, for the ranking and
probability metrics (``roc_auc``, ``log_loss``, ``average_precision``), class
probabilities ``y_score`` of shape (rows, classes) (or the positive-class score for a
binary task). Binary tasks score the class with id 1; multiclass tasks use the macro
average (``roc_auc``: one-vs-rest).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from mlform.evaluation.errors import EvaluationError
from mlform.training.types import Array, Task

__all__ = [
    "CLASSIFICATION_METRICS",
    "KNOWN_METRICS",
    "LOWER_IS_BETTER",
    "REGRESSION_METRICS",
    "compute_metrics",
    "lower_is_better",
    "metrics_to_compute",
]

CLASSIFICATION_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
    "average_precision",
)
REGRESSION_METRICS = ("rmse", "mae", "r2", "mape")
KNOWN_METRICS: Mapping[str, tuple[str, ...]] = {
    "classification": CLASSIFICATION_METRICS,
    "regression": REGRESSION_METRICS,
}
LOWER_IS_BETTER = frozenset({"rmse", "mae", "mape", "log_loss"})
_NEEDS_SCORES = frozenset({"roc_auc", "log_loss", "average_precision"})
_DEFAULTS: Mapping[str, tuple[str, ...]] = {
    "classification": ("accuracy", "f1"),
    "regression": ("rmse", "mae", "r2"),
}


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of ``metric`` are better (losses and errors)."""
    name = metric.lower()
    return name in LOWER_IS_BETTER or name.endswith(("loss", "error", "rmse", "mae"))


def metrics_to_compute(
    task: Task, names: Iterable[str], gate_metric_names: Iterable[str] = ()
) -> list[str]:
    """The configured metrics plus every metric a gate names, in order, without repeats.

    With neither, the task's defaults (classification: accuracy, f1; regression: rmse,
    mae, r2).
    """
    ordered = list(dict.fromkeys([*names, *gate_metric_names]))
    return ordered or list(_DEFAULTS[task])


def compute_metrics(
    task: Task,
    names: Sequence[str],
    y_true: Array,
    y_pred: Array,
    y_score: Array | None = None,
) -> dict[str, float]:
    """``{name: value}`` for each metric in ``names``.

    Raises :class:`EvaluationError` for an unknown name (listing the known ones), a
    metric of the other task, a score-based metric without ``y_score``, or a metric that
    is undefined on this data (e.g. ``roc_auc`` when ``y_true`` holds a single class).
    """
    _check_names(task, names)
    truth = np.asarray(y_true).ravel()
    pred = np.asarray(y_pred).ravel()
    if truth.shape != pred.shape:
        raise EvaluationError(
            f"y_true has {truth.size} rows but y_pred has {pred.size}; they must match"
        )
    if truth.size == 0:
        raise EvaluationError("cannot compute metrics on an empty split")
    if task == "regression":
        return {name: _regression(name, truth.astype(np.float64), pred) for name in names}
    score = None if y_score is None else np.asarray(y_score, dtype=np.float64)
    if score is not None and score.shape[0] != truth.size:
        raise EvaluationError(f"y_score has {score.shape[0]} rows but y_true has {truth.size}")
    ctx = _Classification(truth.astype(np.int64), pred.astype(np.int64), score)
    return {name: ctx.value(name) for name in names}


def _check_names(task: Task, names: Sequence[str]) -> None:
    known = KNOWN_METRICS[task]
    for name in names:
        if name in known:
            continue
        other = "regression" if task == "classification" else "classification"
        if name in KNOWN_METRICS[other]:
            raise EvaluationError(
                f"metric {name!r} is a {other} metric, but this model's task is {task}; "
                f"{task} metrics: {', '.join(known)}"
            )
        raise EvaluationError(
            f"unknown metric {name!r} for a {task} model; known metrics: {', '.join(known)}"
        )


def _quiet(fn: Callable[[], Any]) -> float:
    """Run a scikit-learn metric with its undefined-value warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message=".*y_pred contains classes not in y_true.*")
        return float(fn())


def _regression(name: str, y_true: Array, y_pred: Array) -> float:
    pred = y_pred.astype(np.float64)
    if name == "rmse":
        return float(np.sqrt(skm.mean_squared_error(y_true, pred)))
    if name == "mae":
        return float(skm.mean_absolute_error(y_true, pred))
    if name == "r2":
        if y_true.size < 2:
            raise EvaluationError("r2 is undefined with fewer than two rows")
        return _quiet(lambda: skm.r2_score(y_true, pred))
    return float(skm.mean_absolute_percentage_error(y_true, pred))  # mape


class _Classification:
    def __init__(self, y_true: Array, y_pred: Array, y_score: Array | None) -> None:
        self.y_true = y_true
        self.y_pred = y_pred
        self.y_score = y_score
        seen = int(max(y_true.max(), y_pred.max())) + 1
        width = y_score.shape[1] if y_score is not None and y_score.ndim == 2 else 0
        self.n_classes = max(seen, width, 2)
        self.labels = list(range(self.n_classes))
        self.binary = self.n_classes == 2

    def value(self, name: str) -> float:
        if name in _NEEDS_SCORES and self.y_score is None:
            raise EvaluationError(
                f"metric {name!r} needs class probabilities, but the model gives none "
                "(its predict_proba returned None); drop it from metrics and gates"
            )
        t, p = self.y_true, self.y_pred
        if name == "accuracy":
            return float(skm.accuracy_score(t, p))
        if name == "balanced_accuracy":
            return _quiet(lambda: skm.balanced_accuracy_score(t, p))
        if name in ("precision", "recall", "f1"):
            fn = {
                "precision": skm.precision_score,
                "recall": skm.recall_score,
                "f1": skm.f1_score,
            }[name]
            average = "binary" if self.binary else "macro"
            return _quiet(lambda: fn(t, p, labels=self.labels, average=average, zero_division=0))
        if name == "roc_auc":
            return self._roc_auc()
        if name == "log_loss":
            return float(skm.log_loss(t, self._proba(), labels=self.labels))
        return self._average_precision()

    def _proba(self) -> Array:
        """Probabilities of shape (rows, classes)."""
        assert self.y_score is not None
        if self.y_score.ndim == 1:
            return np.column_stack([1.0 - self.y_score, self.y_score])
        return self.y_score

    def _positive_score(self) -> Array:
        assert self.y_score is not None
        return self.y_score if self.y_score.ndim == 1 else self.y_score[:, 1]

    def _roc_auc(self) -> float:
        present = np.unique(self.y_true)
        if present.size < 2:
            raise EvaluationError(
                "roc_auc is undefined: the evaluation split holds a single class "
                f"({int(present[0])}); use a larger or stratified test split"
            )
        if self.binary:
            return float(skm.roc_auc_score(self.y_true, self._positive_score()))
        proba = self._proba()
        if present.size < self.n_classes:
            raise EvaluationError(
                f"roc_auc (one-vs-rest) is undefined: the evaluation split holds "
                f"{present.size} of {self.n_classes} classes"
            )
        return float(skm.roc_auc_score(self.y_true, proba, multi_class="ovr", labels=self.labels))

    def _average_precision(self) -> float:
        if self.binary:
            if not np.any(self.y_true == 1):
                raise EvaluationError(
                    "average_precision is undefined: the evaluation split has no positive rows"
                )
            return float(skm.average_precision_score(self.y_true, self._positive_score()))
        proba = self._proba()
        present = np.unique(self.y_true)
        onehot = (self.y_true[:, None] == present[None, :]).astype(np.int64)
        return float(skm.average_precision_score(onehot, proba[:, present], average="macro"))
