"""Evaluation gates: ``metric: ">= 0.95"`` thresholds and ``must_beat_champion``.

A gate passes or fails; it never raises for a missing metric (that gate fails and says
why). The champion comparison knows which way is better: for losses and errors
(``rmse``, ``mae``, ``mape``, ``log_loss``) the candidate must be at most the champion's
value plus the tolerance, for every other metric at least the champion's value minus it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mlform.evaluation.errors import EvaluationError
from mlform.evaluation.metrics import lower_is_better
from mlform.spec.base import parse_comparison

__all__ = ["CHAMPION_GATE", "GateResult", "check_gates", "gate_metrics", "parse_gate"]

CHAMPION_GATE = "must_beat_champion"


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


_OPS: Mapping[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b or _close(a, b),
    "<=": lambda a, b: a <= b or _close(a, b),
    ">": operator.gt,
    "<": operator.lt,
    "==": _close,
    "!=": lambda a, b: not _close(a, b),
}


@dataclass(frozen=True, slots=True)
class GateResult:
    name: str  # the metric for a threshold gate, "must_beat_champion" for the champion gate
    metric: str
    op: str
    threshold: float | None  # None: nothing to compare with (no champion yet)
    value: float | None  # None: the metric was not computed
    passed: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        return cls(
            name=str(data["name"]),
            metric=str(data["metric"]),
            op=str(data["op"]),
            threshold=None if data.get("threshold") is None else float(data["threshold"]),
            value=None if data.get("value") is None else float(data["value"]),
            passed=bool(data["passed"]),
            message=str(data.get("message", "")),
        )


def parse_gate(metric: str, text: str) -> tuple[str, float]:
    """``(">=", 0.95)`` from ``">= 0.95"``; :class:`EvaluationError` naming the gate otherwise."""
    try:
        return parse_comparison(str(text))
    except ValueError as exc:
        raise EvaluationError(f"gate {metric!r}: {exc}") from None


def _split(gates: Any) -> tuple[dict[str, str], Mapping[str, Any] | None]:
    """Threshold gates and the champion gate from a ``Gates`` model or a plain mapping."""
    if gates is None:
        return {}, None
    if hasattr(gates, "model_dump"):
        gates = gates.model_dump(mode="json")
    if not isinstance(gates, Mapping):
        raise EvaluationError(f"gates must be a mapping, not {type(gates).__name__}")
    champion = gates.get(CHAMPION_GATE)
    thresholds = {str(k): str(v) for k, v in gates.items() if k != CHAMPION_GATE}
    if champion is not None and not isinstance(champion, Mapping):
        raise EvaluationError(f"{CHAMPION_GATE} must be a mapping with metric and tolerance")
    return thresholds, champion


def gate_metrics(gates: Any) -> list[str]:
    """Every metric a gate names (threshold gates, then the champion gate's metric)."""
    thresholds, champion = _split(gates)
    names = list(thresholds)
    if champion is not None:
        names.append(str(champion["metric"]))
    return list(dict.fromkeys(names))


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def check_gates(
    gates: Any,
    metrics: Mapping[str, float | None],
    champion_metrics: Mapping[str, float | None] | None = None,
) -> list[GateResult]:
    """One result per gate, threshold gates first (in config order), then the champion gate.

    ``gates`` is a :class:`mlform.spec.models.Gates` or the equivalent mapping;
    ``champion_metrics`` are the current champion's metrics (None: no champion yet).
    """
    thresholds, champion = _split(gates)
    results = [_threshold(metric, text, metrics.get(metric)) for metric, text in thresholds.items()]
    if champion is not None:
        results.append(_champion(champion, metrics, champion_metrics))
    return results


def _usable(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def _threshold(metric: str, text: str, value: float | None) -> GateResult:
    op, threshold = parse_gate(metric, text)
    if value is None or not _usable(value):
        why = "was not computed" if value is None else "is NaN"
        return GateResult(
            metric,
            metric,
            op,
            threshold,
            value,
            False,
            f"{metric} {why}; gate {op} {_fmt(threshold)} cannot pass",
        )
    passed = _OPS[op](value, threshold)
    verdict = "passes" if passed else "fails"
    return GateResult(
        metric,
        metric,
        op,
        threshold,
        float(value),
        passed,
        f"{metric} = {_fmt(value)}, required {op} {_fmt(threshold)}: {verdict}",
    )


def _champion(
    gate: Mapping[str, Any],
    metrics: Mapping[str, float | None],
    champion_metrics: Mapping[str, float | None] | None,
) -> GateResult:
    metric = str(gate["metric"])
    tolerance = float(gate.get("tolerance") or 0.0)
    lower = lower_is_better(metric)
    op = "<=" if lower else ">="
    value = metrics.get(metric)
    champ = None if champion_metrics is None else champion_metrics.get(metric)
    if champ is None or not _usable(champ):
        reason = "no champion yet" if champion_metrics is None else f"the champion has no {metric}"
        return GateResult(
            CHAMPION_GATE,
            metric,
            op,
            None,
            value,
            True,
            f"{reason}: nothing to beat, the gate passes",
        )
    threshold = champ + tolerance if lower else champ - tolerance
    if value is None or not _usable(value):
        return GateResult(
            CHAMPION_GATE,
            metric,
            op,
            threshold,
            value,
            False,
            f"{metric} was not computed for the candidate; it cannot be compared with the "
            f"champion ({_fmt(champ)})",
        )
    passed = _OPS[op](value, threshold)
    sign = "+" if lower else "-"
    better = "lower" if lower else "higher"
    return GateResult(
        CHAMPION_GATE,
        metric,
        op,
        threshold,
        float(value),
        passed,
        f"{metric} = {_fmt(value)}, champion {_fmt(champ)} {sign} tolerance {_fmt(tolerance)}"
        f" = {_fmt(threshold)} ({better} is better): {'passes' if passed else 'fails'}",
    )
