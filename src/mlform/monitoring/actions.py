"""What a monitor does with a verdict: alert on changes, and act on a new breach.

Alerts follow the verdict's transitions, like Alertmanager's firing/resolved: a run that
breaches after a passing one (or as the first verdict) fires; the first passing run after
a breach resolves; runs that stay breached or stay fine send nothing. ``no_data`` and
``error`` runs keep the previous verdict. The breach action runs once per breach:

- ``alert``: the alerts are the action;
- ``rollback``: the deployment returns to the version it served before, through the
  rollout machinery (``rollback``, given by the caller: it needs the state lock); a
  rollback that could not run (an apply held the lock) is tried again at the next run;
- ``retrain``: nothing happens now; the next ``mlform plan`` retrains the model with the
  reason ``monitor.NAME breached at TIME (...)`` (:mod:`mlform.monitoring.retrain`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from mlform.monitoring.history import MonitorRun, RunStatus
from mlform.monitoring.job import MonitorJob

__all__ = ["Rollback", "RollbackOutcome", "act"]


@dataclasses.dataclass(frozen=True, slots=True)
class RollbackOutcome:
    done: bool  # False: not possible now, try again at the next breached run
    message: str


Rollback = Callable[[MonitorJob, MonitorRun], RollbackOutcome]


def act(
    job: MonitorJob,
    run: MonitorRun,
    previous: MonitorRun | None,
    *,
    rollback: Rollback | None = None,
    logger: logging.Logger | None = None,
    deliver_alerts: bool = True,
) -> MonitorRun:
    """``run`` with its alerts sent and its action taken (``previous``: the last verdict)."""
    from mlform.monitoring.alerts import Alert, DeliveryLog, deliver

    if run.status not in (RunStatus.OK, RunStatus.BREACHED):
        return run
    was_breached = previous is not None and previous.breached
    action: dict[str, Any] = {}
    alert_status: str | None = None
    if run.breached:
        pending = was_breached and previous is not None and previous.action.get("retry")
        if not was_breached or pending:
            action = _act_on_breach(job, run, rollback)
        else:
            action = {"action": job.action, "outcome": "still breached (acted when it began)"}
        alert_status = None if was_breached else "firing"
    elif was_breached:
        alert_status = "resolved"
    run = dataclasses.replace(run, action=action)
    if alert_status is None or not deliver_alerts:
        return run
    summary = (
        run.breach_reason()
        if alert_status == "firing"
        else f"monitor.{run.monitor} recovered at {run.time} ({run.reason})"
    )
    if action.get("outcome") and alert_status == "firing":
        summary += f"; {job.action}: {action['outcome']}"
    alert = Alert(
        id=f"{job.name}:{run.run_id}:{alert_status}",
        monitor=job.name,
        deployment=job.deployment,
        status=alert_status,
        severity=_severity(job),
        summary=summary,
        time=run.time,
        action=job.action,
        details={
            "type": run.type,
            "reason": run.reason,
            "value": run.value,
            "threshold": run.threshold,
            "rows": run.rows,
            "window": run.window,
            "serving": list(run.serving),
        },
    )
    deliveries = deliver(
        alert,
        list(job.config.get("alerts") or ()),
        log=DeliveryLog(job.directory / "deliveries.jsonl"),
        logger=logger,
    )
    return dataclasses.replace(
        run,
        alerts=tuple(
            {"sink": d.sink, "ok": d.ok, "attempts": d.attempts, "detail": d.detail}
            for d in deliveries
        ),
    )


def _act_on_breach(job: MonitorJob, run: MonitorRun, rollback: Rollback | None) -> dict[str, Any]:
    if job.action == "rollback":
        if rollback is None:
            return {"action": "rollback", "outcome": "not rolled back here (dry run)"}
        outcome = rollback(job, run)
        return {"action": "rollback", "outcome": outcome.message, "retry": not outcome.done}
    if job.action == "retrain":
        model = run.details.get("model") or f"the model of deployment.{job.deployment}"
        return {"action": "retrain", "outcome": f"the next plan retrains {model}"}
    return {"action": "alert", "outcome": "alerted"}


def _severity(job: MonitorJob) -> str:
    for sink in job.config.get("alerts") or ():
        if sink.get("sink") == "prometheus":
            return str(sink.get("severity", "warning"))
    return "critical" if job.action == "rollback" else "warning"
