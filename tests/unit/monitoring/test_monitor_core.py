"""The monitor core without servers: history, verdict transitions, retrain marks, spec checks."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mlform.monitoring.actions import RollbackOutcome, act
from mlform.monitoring.history import MonitorHistory, MonitorRun, RunStatus
from mlform.monitoring.job import MonitorJob
from mlform.monitoring.retrain import mark_retrain, retrain_requests
from mlform.plan.compute import compute_plan
from mlform.plan.testing import declared, desired_system, state_as_applied
from mlform.providers.registry import default_registry
from mlform.spec.monitors import MonitorSpec


def _job(tmp_path: Path, **config: Any) -> MonitorJob:
    base = {
        "deployment": "api",
        "type": "latency",
        "threshold": "100ms",
        "quantile": 0.9,
        "window": {"duration": "5m"},
        "schedule": {"every": "1m"},
        "alerts": [{"sink": "log", "level": "warning"}],
        "on_breach": "alert",
    }
    return MonitorJob("lat", {**base, **config}, tmp_path, tmp_path)


def _run(status: str, time: str = "2026-11-24T02:00:00Z", **more: Any) -> MonitorRun:
    return MonitorRun(
        run_id=f"r-{time}",
        monitor="lat",
        deployment="api",
        type="latency",
        time=time,
        status=status,
        reason="p90 250 ms > 100 ms over 8 requests",
        **more,
    )


def test_history_round_trips_and_ignores_a_torn_last_line(tmp_path: Path) -> None:
    history = MonitorHistory(tmp_path, "lat")
    history.append(_run(RunStatus.OK, "2026-11-24T02:00:00Z"))
    history.append(_run(RunStatus.BREACHED, "2026-11-24T02:01:00Z", value=250.0))
    history.append(_run(RunStatus.NO_DATA, "2026-11-24T02:02:00Z"))
    with history.path.open("a") as handle:
        handle.write('{"run_id": "torn", "monit')
    runs = history.runs()
    assert [r.status for r in runs] == ["ok", "breached", "no_data"]
    assert runs[1].value == 250.0
    assert history.latest() == runs[-1]
    assert history.last_judged() == runs[1]
    assert runs[1].breach_reason() == (
        "monitor.lat breached at 2026-11-24T02:01:00Z (p90 250 ms > 100 ms over 8 requests)"
    )


def test_a_corrupt_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    history = MonitorHistory(tmp_path, "lat")
    history.append(_run(RunStatus.OK))
    with history.path.open("a") as handle:
        handle.write("not json\n")
    history.append(_run(RunStatus.OK))
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        history.runs()


def test_alerts_follow_transitions_and_the_action_runs_once_per_breach(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def rollback(job: MonitorJob, run: MonitorRun) -> RollbackOutcome:
        calls.append(run.run_id)
        return RollbackOutcome(True, "rolled back from v2 to v1")

    job = _job(tmp_path, on_breach="rollback")
    caplog.set_level(logging.INFO, logger="mlform.monitor")
    first = act(job, _run(RunStatus.BREACHED), None, rollback=rollback)
    assert calls == [first.run_id]
    assert first.action == {
        "action": "rollback",
        "outcome": "rolled back from v2 to v1",
        "retry": False,
    }
    assert [a["sink"] for a in first.alerts] == ["log"]
    assert "breached at" in caplog.text and "rolled back from v2 to v1" in caplog.text
    caplog.clear()
    still = act(job, _run(RunStatus.BREACHED, "2026-11-24T02:01:00Z"), first, rollback=rollback)
    assert len(calls) == 1 and still.alerts == ()
    assert still.action["outcome"].startswith("still breached")
    fine = act(job, _run(RunStatus.OK, "2026-11-24T02:02:00Z"), still, rollback=rollback)
    assert fine.alerts and "recovered" in caplog.text
    quiet = act(job, _run(RunStatus.OK, "2026-11-24T02:03:00Z"), fine, rollback=rollback)
    assert quiet.alerts == () and len(calls) == 1
    # no_data and error runs neither alert nor act.
    assert act(job, _run(RunStatus.NO_DATA), None, rollback=rollback).alerts == ()


def test_a_deferred_rollback_is_tried_again_at_the_next_breached_run(tmp_path: Path) -> None:
    outcomes = [RollbackOutcome(False, "deferred: locked"), RollbackOutcome(True, "done")]

    def rollback(job: MonitorJob, run: MonitorRun) -> RollbackOutcome:
        return outcomes.pop(0)

    job = _job(tmp_path, on_breach="rollback")
    first = act(job, _run(RunStatus.BREACHED), None, rollback=rollback)
    assert first.action["retry"] is True
    second = act(job, _run(RunStatus.BREACHED, "2026-11-24T02:01:00Z"), first, rollback=rollback)
    assert second.action == {"action": "rollback", "outcome": "done", "retry": False}
    assert second.alerts == ()  # the alert went out with the first breach
    assert outcomes == []


def _system() -> Any:
    return desired_system(
        [
            declared("features.f", {"label": "y"}),
            declared("model.m", {"features": "f"}, ["features.f"]),
            declared("deployment.api", {"model": "m"}, ["model.m"]),
            declared(
                "monitor.drift",
                {"deployment": "api", "type": "data_drift", "on_breach": "retrain"},
                ["deployment.api"],
            ),
        ]
    )


def test_a_retrain_breach_makes_the_plan_retrain_the_model_and_roll_it_out(
    tmp_path: Path,
) -> None:
    desired = _system()
    state = state_as_applied(desired)
    state = state.model_copy(
        update={
            "objects": {
                k: v.model_copy(update={"updated_at": "2026-11-24T01:00:00Z"})
                for k, v in state.objects.items()
            }
        }
    )
    history = MonitorHistory(tmp_path, "drift")
    breach = dataclasses.replace(
        _run(RunStatus.BREACHED, "2026-11-24T02:00:00Z"),
        monitor="drift",
        reason="psi 0.31 > 0.2 on column x",
    )
    history.append(breach)
    monitors = {"drift": desired.objects[_addr("monitor.drift")].config}
    deployments = {"api": {"model": "m"}}
    requests = retrain_requests(tmp_path, monitors, deployments)
    assert [r.model for r in requests] == ["model.m"]
    marked = mark_retrain(state, requests)
    kinds = default_registry().supported_kinds()
    plan = compute_plan(desired, marked, supported_kinds=kinds, mlform_version="test")
    changes = {c.address: c for c in plan.changes}
    model = changes["model.m"]
    assert model.action == "retrain"
    assert [r.message for r in model.reasons] == [
        "monitor.drift breached at 2026-11-24T02:00:00Z (psi 0.31 > 0.2 on column x)"
    ]
    deployment = changes["deployment.api"]
    assert deployment.action == "rollout"
    assert "monitor.drift breached" in deployment.reasons[0].message
    assert changes["features.f"].action == "no-op"
    # A model retrained after the breach is not marked again; the unmarked plan is quiet.
    later = state.model_copy(
        update={
            "objects": {
                **state.objects,
                "model.m": state.objects["model.m"].model_copy(
                    update={"updated_at": "2026-11-24T03:00:00Z"}
                ),
            }
        }
    )
    assert mark_retrain(later, requests) is later
    quiet = compute_plan(desired, state, supported_kinds=kinds, mlform_version="test")
    assert {c.action for c in quiet.changes} == {"no-op"}


def _addr(text: str) -> Any:
    from mlform.addresses import Address

    return Address.parse(text)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"type": "data_drift", "method": "psi", "threshold": -1}, "psi threshold -1 can never"),
        ({"type": "data_drift", "method": "ks", "threshold": 1.5}, "p-value threshold between"),
        ({"type": "data_drift", "method": "jensenshannon", "threshold": 0.9}, "between 0 and 0.83"),
        ({"type": "data_drift", "threshold": 2}, "strictly between 0 and 1"),
        ({"type": "error_rate", "threshold": 1.0}, "strictly between 0 and 1"),
        ({"type": "latency", "threshold": "0ms"}, "longer than 0"),
        ({"type": "latency", "threshold": 0.5}, "threshold is a duration"),
        ({"type": "performance", "labels": {}, "threshold": 1.2}, "must be in (0, 1]"),
        ({"type": "performance", "labels": {}, "metric": "rmse", "threshold": 0}, "greater than 0"),
        ({"type": "performance", "labels": {}, "metric": "acc", "threshold": 0.9}, "unknown"),
        ({"type": "performance", "threshold": 0.9}, "needs labels"),
    ],
)
def test_impossible_monitor_configs_are_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re_escape(message)):
        MonitorSpec.model_validate({"deployment": "api", **config})


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_defaults_follow_the_product_brief() -> None:
    drift = MonitorSpec.model_validate({"deployment": "api", "type": "data_drift"})
    assert (drift.method, drift.threshold, drift.drift_share) == ("auto", None, 0.5)
    psi = MonitorSpec.model_validate({"deployment": "a", "type": "data_drift", "method": "psi"})
    assert (psi.threshold, psi.bins) == (0.1, 30)
    latency = MonitorSpec.model_validate({"deployment": "api", "type": "latency"})
    assert (latency.threshold, latency.quantile) == ("500ms", 0.99)
