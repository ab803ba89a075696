"""Performance metrics of a window's labelled predictions (performance monitors).

The metrics are the evaluation's (:mod:`mlform.evaluation.metrics`), computed the same way
as when a candidate is evaluated before registration, so a monitor's ``accuracy`` compares
with the model's registered ``accuracy``:

* classification: ``accuracy``, ``balanced_accuracy``, ``precision``, ``recall``, ``f1``,
  ``roc_auc``, ``log_loss``, ``average_precision``. Class names become class ids by their
  position in ``classes``; a binary task scores the class with id 1 (``classes[1]``, the
  last one), a multiclass task takes the macro average (``roc_auc``: one-vs-rest). The
  ranking and probability metrics need the logged probabilities.
* regression: ``rmse``, ``mae``, ``r2``, ``mape``.

:func:`default_metric` is the metric a performance monitor uses when it names none;
:func:`higher_is_better` says which way a metric improves.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from mlform.evaluation.metrics import KNOWN_METRICS, compute_metrics, lower_is_better
from mlform.monitoring.labels import Joined
from mlform.training.types import Array, Task

__all__ = ["default_metric", "higher_is_better", "known_metrics", "performance"]

_DEFAULT = {"classification": "accuracy", "regression": "rmse"}
_NEEDS_PROBABILITIES = frozenset({"roc_auc", "log_loss", "average_precision"})


def _task(task: str) -> str:
    if task not in KNOWN_METRICS:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(KNOWN_METRICS)}")
    return task


def known_metrics(task: str) -> tuple[str, ...]:
    """The metric names of ``task`` (classification or regression)."""
    return KNOWN_METRICS[_task(task)]


def default_metric(task: str) -> str:
    """``accuracy`` for classifiers, ``rmse`` for regressors."""
    return _DEFAULT[_task(task)]


def higher_is_better(metric: str) -> bool:
    """Whether larger values of ``metric`` are better (False for errors and losses)."""
    return not lower_is_better(metric)


def _class_ids(values: Array, classes: tuple[str, ...], what: str) -> Array:
    if not classes:
        try:
            return np.asarray([int(v) for v in values], dtype=np.int64)
        except (TypeError, ValueError):
            raise ValueError(
                f"the {what} are not class ids and the model names no classes"
            ) from None
    index = {name: i for i, name in enumerate(classes)}
    try:
        return np.asarray([index[v] for v in values], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(
            f"the {what} hold {exc.args[0]!r}, which is not one of the classes {', '.join(classes)}"
        ) from None


def performance(joined: Joined, metric: str) -> float:
    """``metric`` of the labelled predictions in ``joined``.

    ValueError for a metric unknown to the task (listing the known ones), for a window
    with no labelled predictions, and for a metric that is undefined on these rows (e.g.
    ``roc_auc`` when every label is the same class, or without probabilities).
    """
    task = _task(joined.task)
    known = KNOWN_METRICS[task]
    if metric not in known:
        raise ValueError(
            f"unknown metric {metric!r} for a {task} model; known metrics: {', '.join(known)}"
        )
    if joined.matched_rows < 1:
        raise ValueError("no labelled predictions in the window")
    if task == "regression":
        return _compute(
            task,
            metric,
            np.asarray(joined.y_true, dtype=np.float64),
            np.asarray(joined.y_pred, dtype=np.float64),
            None,
        )
    y_true = _class_ids(joined.y_true, joined.classes, "labels")
    y_pred = _class_ids(joined.y_pred, joined.classes, "predictions")
    scores = joined.probabilities
    if metric in _NEEDS_PROBABILITIES:
        if scores is None:
            raise ValueError(
                f"{metric} needs the predicted probabilities, but the logged predictions have "
                "none (the model gives none, or some rows were logged without); choose "
                "another metric, e.g. accuracy"
            )
        if metric == "roc_auc" and np.unique(y_true).size < 2:
            only = joined.classes[int(y_true[0])] if joined.classes else str(int(y_true[0]))
            raise ValueError(
                f"roc_auc is undefined: every labelled prediction in the window is of class "
                f"{only!r}; use a larger window or another metric"
            )
    return _compute(task, metric, y_true, y_pred, scores)


def _compute(task: str, metric: str, y_true: Array, y_pred: Array, scores: Array | None) -> float:
    # EvaluationError (a ValueError) for a metric undefined on these rows.
    return compute_metrics(cast(Task, task), [metric], y_true, y_pred, scores)[metric]
