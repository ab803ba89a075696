"""Performance metrics of joined predictions (mlform.monitoring.performance), checked
against scikit-learn's own functions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from sklearn import metrics as skm

from mlform.monitoring.labels import Joined
from mlform.monitoring.performance import (
    default_metric,
    higher_is_better,
    known_metrics,
    performance,
)

BINARY = ("benign", "malignant")


def names(values: Sequence[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def classified(
    truth: Sequence[int],
    predicted: Sequence[int],
    classes: Sequence[str],
    probabilities: np.ndarray | None,
) -> Joined:
    return Joined(
        y_true=names([classes[i] for i in truth]),
        y_pred=names([classes[i] for i in predicted]),
        probabilities=probabilities,
        classes=tuple(classes),
        task="classification",
        matched_rows=len(truth),
        window_rows=len(truth) + 5,
    )


@pytest.fixture
def binary() -> tuple[Joined, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 2, 200)
    score = np.clip(truth * 0.4 + rng.random(200) * 0.6, 0, 1)
    predicted = (score > 0.5).astype(int)
    proba = np.column_stack([1 - score, score])
    return classified(truth, predicted, BINARY, proba), truth, predicted, score


def test_binary_metrics_equal_scikit_learns(
    binary: tuple[Joined, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    joined, truth, predicted, score = binary
    # the positive class is the one with id 1: classes[1] (as when a candidate is evaluated)
    assert performance(joined, "accuracy") == pytest.approx(skm.accuracy_score(truth, predicted))
    assert performance(joined, "f1") == pytest.approx(skm.f1_score(truth, predicted))
    assert performance(joined, "precision") == pytest.approx(skm.precision_score(truth, predicted))
    assert performance(joined, "recall") == pytest.approx(skm.recall_score(truth, predicted))
    assert performance(joined, "roc_auc") == pytest.approx(skm.roc_auc_score(truth, score))
    assert performance(joined, "balanced_accuracy") == pytest.approx(
        skm.balanced_accuracy_score(truth, predicted)
    )
    # and with the class names' strings, as they come from the labels
    as_names = skm.f1_score(
        [BINARY[i] for i in truth], [BINARY[i] for i in predicted], pos_label="malignant"
    )
    assert performance(joined, "f1") == pytest.approx(as_names)


def test_multiclass_metrics_are_macro_averages() -> None:
    rng = np.random.default_rng(11)
    classes = ("setosa", "versicolor", "virginica")
    truth = rng.integers(0, 3, 150)
    predicted = np.where(rng.random(150) < 0.7, truth, rng.integers(0, 3, 150))
    proba = rng.dirichlet([1, 1, 1], 150)
    proba[np.arange(150), truth] += 1.0
    proba /= proba.sum(axis=1, keepdims=True)
    joined = classified(truth, predicted, classes, proba)
    assert performance(joined, "accuracy") == pytest.approx(skm.accuracy_score(truth, predicted))
    assert performance(joined, "f1") == pytest.approx(
        skm.f1_score(truth, predicted, average="macro")
    )
    assert performance(joined, "recall") == pytest.approx(
        skm.recall_score(truth, predicted, average="macro")
    )
    assert performance(joined, "roc_auc") == pytest.approx(
        skm.roc_auc_score(truth, proba, multi_class="ovr")
    )


def test_regression_metrics_equal_scikit_learns() -> None:
    rng = np.random.default_rng(5)
    truth = rng.normal(10, 3, 300)
    predicted = truth + rng.normal(0, 1, 300)
    joined = Joined(
        y_true=truth,
        y_pred=predicted,
        probabilities=None,
        classes=(),
        task="regression",
        matched_rows=300,
        window_rows=300,
    )
    assert performance(joined, "rmse") == pytest.approx(
        np.sqrt(skm.mean_squared_error(truth, predicted))
    )
    assert performance(joined, "mae") == pytest.approx(skm.mean_absolute_error(truth, predicted))
    assert performance(joined, "r2") == pytest.approx(skm.r2_score(truth, predicted))


def test_unknown_metrics_and_empty_windows_are_value_errors(
    binary: tuple[Joined, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    joined = binary[0]
    with pytest.raises(ValueError, match=r"unknown metric 'rmse'.*accuracy.*f1.*roc_auc"):
        performance(joined, "rmse")
    empty = classified([], [], BINARY, None)
    with pytest.raises(ValueError, match="no labelled predictions in the window"):
        performance(empty, "accuracy")
    without = classified([0, 1], [0, 0], BINARY, None)
    with pytest.raises(ValueError, match="roc_auc needs the predicted probabilities"):
        performance(without, "roc_auc")
    one_class = classified([1, 1], [0, 1], BINARY, np.array([[0.6, 0.4], [0.2, 0.8]]))
    with pytest.raises(ValueError, match=r"roc_auc is undefined.*'malignant'"):
        performance(one_class, "roc_auc")
    assert performance(one_class, "accuracy") == 0.5
    regression = Joined(np.ones(3), np.ones(3), None, (), "regression", 3, 3)
    with pytest.raises(ValueError, match=r"unknown metric 'f1'.*rmse, mae, r2"):
        performance(regression, "f1")


def test_defaults_and_directions() -> None:
    assert default_metric("classification") == "accuracy"
    assert default_metric("regression") == "rmse"
    with pytest.raises(ValueError, match="unknown task"):
        default_metric("ranking")
    assert higher_is_better("accuracy") and higher_is_better("roc_auc") and higher_is_better("r2")
    assert not higher_is_better("rmse") and not higher_is_better("mae")
    assert {"accuracy", "f1", "precision", "recall", "roc_auc"} <= set(
        known_metrics("classification")
    )
    assert {"rmse", "mae", "r2"} <= set(known_metrics("regression"))
