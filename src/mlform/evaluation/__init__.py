"""Evaluation of a trained candidate: metrics, gates, champion comparison and fairness.

Pure functions over arrays and mappings: no I/O, no printing. The CLI and the apply
engine render the results (:class:`GateResult`, :class:`FairnessResult`).
"""

from mlform.evaluation.errors import EvaluationError
from mlform.evaluation.fairness import FairnessResult, check_fairness
from mlform.evaluation.gates import GateResult, check_gates, gate_metrics, parse_gate
from mlform.evaluation.metrics import (
    KNOWN_METRICS,
    compute_metrics,
    lower_is_better,
    metrics_to_compute,
)

__all__ = [
    "KNOWN_METRICS",
    "EvaluationError",
    "FairnessResult",
    "GateResult",
    "check_fairness",
    "check_gates",
    "compute_metrics",
    "gate_metrics",
    "lower_is_better",
    "metrics_to_compute",
    "parse_gate",
]
