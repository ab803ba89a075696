"""Monitors whose action is ``retrain`` mark their model for the next plan.

The plan is a pure function of (config, state), so a breach reaches it through the state
document it is computed from: :func:`mark_retrain` returns a copy of the state whose model
records carry ``outputs["retrain_requested"]`` (never written back), and the planner
turns that into a ``retrain`` with the reason ``monitor.NAME breached at TIME (...)``. A
mark counts only when the breach happened after the model was last applied: retraining
clears it, a new breach sets it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlform.monitoring.history import MonitorHistory

if TYPE_CHECKING:
    from mlform.state.model import StateDocument

__all__ = ["RetrainRequest", "mark_retrain", "retrain_requests"]

MARK = "retrain_requested"


@dataclass(frozen=True, slots=True)
class RetrainRequest:
    model: str  # "model.diagnosis"
    monitor: str
    time: str
    message: str  # "monitor.diagnosis-drift breached at … (psi 0.31 > 0.1 on column x)"

    def to_dict(self) -> dict[str, str]:
        return {"monitor": self.monitor, "time": self.time, "message": self.message}


def retrain_requests(
    state_dir: Path,
    monitors: Mapping[str, Mapping[str, Any]],
    deployments: Mapping[str, Mapping[str, Any]],
) -> list[RetrainRequest]:
    """The models whose ``retrain`` monitors breached at their latest verdict."""
    out: list[RetrainRequest] = []
    for name, config in sorted(monitors.items()):
        if config.get("on_breach") != "retrain":
            continue
        deployment = deployments.get(str(config.get("deployment")))
        if deployment is None or not deployment.get("model"):
            continue
        run = MonitorHistory(state_dir, name).last_judged()
        if run is None or not run.breached:
            continue
        out.append(
            RetrainRequest(f"model.{deployment['model']}", name, run.time, run.breach_reason())
        )
    return out


def mark_retrain(state: StateDocument, requests: list[RetrainRequest]) -> StateDocument:
    """``state`` with each requested model's record marked (breaches after its last apply)."""
    objects = dict(state.objects)
    changed = False
    for request in requests:
        record = objects.get(request.model)
        if record is None or (record.updated_at or "") >= request.time:
            continue
        outputs = {**record.outputs, MARK: request.to_dict()}
        objects[request.model] = record.model_copy(update={"outputs": outputs})
        changed = True
    return state.model_copy(update={"objects": objects}) if changed else state
