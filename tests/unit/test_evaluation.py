"""Metrics against scikit-learn and hand-computed values, gates, champion, fairness."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from mlform.evaluation import (
    EvaluationError,
    check_fairness,
    check_gates,
    compute_metrics,
    gate_metrics,
    metrics_to_compute,
    parse_gate,
)
from mlform.spec.models import Gates

Y_TRUE = np.array([0, 0, 1, 1, 1, 0, 1, 0])
Y_PRED = np.array([0, 1, 1, 1, 0, 0, 1, 0])
P1 = np.array([0.1, 0.6, 0.8, 0.9, 0.4, 0.2, 0.7, 0.3])
PROBA = np.column_stack([1 - P1, P1])


def test_binary_metrics_by_hand() -> None:
    m = compute_metrics(
        "classification",
        ["accuracy", "precision", "recall", "f1", "balanced_accuracy", "roc_auc"],
        Y_TRUE,
        Y_PRED,
        PROBA,
    )
    # TP=3 FP=1 FN=1 TN=3
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    # positives' scores 0.8 0.9 0.4 0.7 vs negatives 0.1 0.6 0.2 0.3: 15 of 16 pairs ordered
    assert m["roc_auc"] == pytest.approx(15 / 16)


def test_probability_metrics_match_sklearn_and_accept_1d_scores() -> None:
    names = ["log_loss", "average_precision", "roc_auc"]
    two_d = compute_metrics("classification", names, Y_TRUE, Y_PRED, PROBA)
    one_d = compute_metrics("classification", names, Y_TRUE, Y_PRED, P1)
    assert two_d == pytest.approx(one_d)
    assert two_d["log_loss"] == pytest.approx(skm.log_loss(Y_TRUE, PROBA))
    assert two_d["average_precision"] == pytest.approx(skm.average_precision_score(Y_TRUE, P1))


def test_multiclass_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    proba = rng.dirichlet(np.ones(3), 60)
    pred = proba.argmax(axis=1)
    m = compute_metrics(
        "classification", ["roc_auc", "f1", "log_loss", "average_precision"], y, pred, proba
    )
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    onehot = np.eye(3)[y]
    assert m["average_precision"] == pytest.approx(
        skm.average_precision_score(onehot, proba, average="macro")
    )


def test_regression_metrics_by_hand() -> None:
    y = np.array([1.0, 2.0, 4.0, 5.0])
    pred = np.array([1.5, 2.0, 3.0, 5.0])
    m = compute_metrics("regression", ["rmse", "mae", "r2", "mape"], y, pred)
    assert m["rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 1 + 0) / 4))
    assert m["mae"] == pytest.approx(1.5 / 4)
    assert m["r2"] == pytest.approx(1 - 1.25 / 10)
    assert m["mape"] == pytest.approx((0.5 + 0 + 0.25 + 0) / 4)


def test_unknown_and_wrong_task_metrics_list_the_known_ones() -> None:
    with pytest.raises(EvaluationError, match=r"unknown metric 'auc'.*roc_auc"):
        compute_metrics("classification", ["auc"], Y_TRUE, Y_PRED, PROBA)
    with pytest.raises(EvaluationError, match=r"regression metric.*classification metrics"):
        compute_metrics("classification", ["rmse"], Y_TRUE, Y_PRED)


def test_score_metrics_need_probabilities_and_two_classes() -> None:
    with pytest.raises(EvaluationError, match="needs class probabilities"):
        compute_metrics("classification", ["roc_auc"], Y_TRUE, Y_PRED, None)
    ones = np.ones(5, dtype=int)
    with pytest.raises(EvaluationError, match="single class"):
        compute_metrics("classification", ["roc_auc"], ones, ones, np.full(5, 0.9))


def test_gate_metrics_are_always_computed() -> None:
    gates = Gates.model_validate(
        {"roc_auc": ">= 0.95", "must_beat_champion": {"metric": "f1", "tolerance": 0.01}}
    )
    assert gate_metrics(gates) == ["roc_auc", "f1"]
    assert metrics_to_compute("classification", ["accuracy"], gate_metrics(gates)) == [
        "accuracy",
        "roc_auc",
        "f1",
    ]
    assert metrics_to_compute("regression", []) == ["rmse", "mae", "r2"]


@pytest.mark.parametrize(
    ("text", "op", "threshold"),
    [(">= 0.95", ">=", 0.95), ("<0.3", "<", 0.3), ("== 1", "==", 1.0), (" > -2e-3 ", ">", -0.002)],
)
def test_parse_gate(text: str, op: str, threshold: float) -> None:
    assert parse_gate("m", text) == (op, threshold)


@pytest.mark.parametrize("text", ["0.95", ">= high", "=> 0.9", ">= 0.9 0.8", ""])
def test_parse_gate_rejects_bad_strings(text: str) -> None:
    with pytest.raises(EvaluationError, match="gate 'm'"):
        parse_gate("m", text)


def test_threshold_gates_pass_fail_and_missing() -> None:
    results = check_gates(
        {"roc_auc": ">= 0.95", "accuracy": "> 0.9", "rmse": "<= 1"},
        {"roc_auc": 0.95, "accuracy": 0.9},
    )
    by_name = {r.name: r for r in results}
    assert by_name["roc_auc"].passed  # equal passes >=
    assert not by_name["accuracy"].passed
    assert not by_name["rmse"].passed and by_name["rmse"].value is None
    assert "not computed" in by_name["rmse"].message


def test_champion_gate_without_champion_passes_with_a_message() -> None:
    [result] = check_gates({"must_beat_champion": {"metric": "roc_auc"}}, {"roc_auc": 0.5}, None)
    assert result.passed and result.threshold is None
    assert "no champion yet" in result.message


@pytest.mark.parametrize(
    ("candidate", "passed"),
    [(0.96, True), (0.955, True), (0.954, False), (0.97, True)],
)
def test_champion_higher_is_better_with_tolerance(candidate: float, passed: bool) -> None:
    gates = {"must_beat_champion": {"metric": "roc_auc", "tolerance": 0.005}}
    [result] = check_gates(gates, {"roc_auc": candidate}, {"roc_auc": 0.96})
    assert result.op == ">=" and result.threshold == pytest.approx(0.955)
    assert result.passed is passed


@pytest.mark.parametrize(
    ("candidate", "passed"),
    [(0.40, True), (0.42, True), (0.421, False), (0.30, True)],
)
def test_champion_lower_is_better_with_tolerance(candidate: float, passed: bool) -> None:
    gates = {"must_beat_champion": {"metric": "rmse", "tolerance": 0.02}}
    [result] = check_gates(gates, {"rmse": candidate}, {"rmse": 0.40})
    assert result.op == "<=" and result.threshold == pytest.approx(0.42)
    assert result.passed is passed
    assert "lower is better" in result.message


def test_champion_gate_from_spec_model_and_log_loss_direction() -> None:
    gates = Gates.model_validate({"must_beat_champion": {"metric": "log_loss"}})
    [worse] = check_gates(gates, {"log_loss": 0.5}, {"log_loss": 0.4})
    [better] = check_gates(gates, {"log_loss": 0.3}, {"log_loss": 0.4})
    assert not worse.passed and better.passed


def test_gate_result_round_trips() -> None:
    [result] = check_gates({"f1": ">= 0.5"}, {"f1": 0.7})
    assert type(result).from_dict(result.to_dict()) == result


def _fairness_data(rate_a: float, rate_b: float, n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    groups = np.array(["a"] * n + ["b"] * n)
    pred = np.concatenate(
        [np.arange(n) < round(rate_a * n), np.arange(n) < round(rate_b * n)]
    ).astype(int)
    return pred, groups


def test_four_fifths_rule_fails() -> None:
    pred, groups = _fairness_data(0.5, 0.3)
    [result] = check_fairness(pred, {"sex": groups}, min_ratio=0.8)
    assert result.rates == {"a": 0.5, "b": 0.3}
    assert result.ratio == pytest.approx(0.6)
    assert not result.passed
    assert "fails" in result.message


def test_four_fifths_rule_passes() -> None:
    pred, groups = _fairness_data(0.5, 0.45)
    [result] = check_fairness(pred, {"sex": groups})
    assert result.ratio == pytest.approx(0.9) and result.passed
    assert result.counts == {"a": 100, "b": 100}


def test_small_groups_are_reported_not_dropped() -> None:
    pred, groups = _fairness_data(0.5, 0.45)
    groups = np.concatenate([groups, ["c", "c", "c"]])
    pred = np.concatenate([pred, [0, 0, 0]])
    [result] = check_fairness(pred, {"region": groups})
    assert result.small_groups == ("c",)
    assert result.rates["c"] == 0.0 and result.counts["c"] == 3
    assert result.ratio == pytest.approx(0.9) and result.passed
    assert "c (3 rows)" in result.message


def test_fairness_needs_two_comparable_groups_and_known_columns() -> None:
    [result] = check_fairness(np.array([1, 0, 1]), {"sex": np.array(["a", "a", "b"])})
    assert result.ratio is None and not result.passed
    with pytest.raises(EvaluationError, match="'age' is not in the evaluation data"):
        check_fairness(np.array([1]), {"sex": np.array(["a"])}, ["age"])


def test_fairness_with_no_selection_is_equal_and_missing_values_grouped() -> None:
    groups = np.array([None] * 6 + ["x"] * 6, dtype=object)
    [result] = check_fairness(np.zeros(12, dtype=int), {"s": groups})
    assert result.ratio == 1.0 and result.passed
    assert set(result.rates) == {"<missing>", "x"}
