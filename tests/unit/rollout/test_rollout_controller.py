"""The rollout walk, against a fake runtime (a clock, servers and a router in memory)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from mlform.rollout.analysis import Snapshot
from mlform.rollout.controller import Controller, Wanted
from mlform.rollout.journal import Phase, RolloutJournal, Served
from mlform.rollout.strategy import Strategy

DEPLOYMENT = "deployment.api"
V1 = Served("m-v1", "model.m@v1")
V2 = Served("m-v2", "model.m@v2")
V3 = Served("m-v3", "model.m@v3")


class FakeRuntime:
    """Servers answer ``rate`` requests per second; ``behaviour`` per upstream decides how."""

    def __init__(self, behaviour: Mapping[str, str] | None = None) -> None:
        self.now = 0.0
        self.behaviour = dict(behaviour or {})
        self.serving: list[tuple[str, ...]] = []
        self.tables: list[dict[str, Any]] = []
        self.messages: list[str] = []
        self.on_sleep: list[Any] = []

    def serve(self, versions: Sequence[Served]) -> Mapping[str, str]:
        self.serving.append(tuple(sorted(s.upstream for s in versions)))
        return {s.upstream: f"http://fake/{s.upstream}" for s in versions}

    def route(self, table: Mapping[str, Any]) -> int:
        self.tables.append(dict(table))
        return int(table["generation"])

    def metrics(self, base_url: str) -> Snapshot:
        upstream = base_url.rsplit("/", 1)[1]
        kind = self.behaviour.get(upstream, "good")
        n = 0.0 if kind == "silent" else self.now * 100
        errors = n * 0.5 if kind == "failing" else 0.0
        slow = kind == "slow"
        buckets = {0.005: 0.0 if slow else n, 1.0: n, float("inf"): n}
        return Snapshot(self.now, {"200": n - errors, "500": errors}, buckets)

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        while self.on_sleep and self.on_sleep[0][0] <= self.now:
            self.on_sleep.pop(0)[1]()

    def monotonic(self) -> float:
        return self.now

    def progress(self, message: str, fraction: float | None) -> None:
        self.messages.append(message)

    @property
    def splits(self) -> list[dict[str, int]]:
        return [t["split"] for t in self.tables]


def canary(**analysis: Any) -> Strategy:
    block = {
        "type": "canary",
        "steps": [
            {"weight": 10, "pause": "10s"},
            {"weight": 50, "pause": "10s"},
            {"weight": 100},
        ],
        "analysis": {
            "interval": "5s",
            "failure_limit": 2,
            "metrics": [
                {"name": "success_rate", "threshold": ">= 0.99"},
                {"name": "latency_p99_ms", "threshold": "<= 500"},
            ],
            **analysis,
        },
    }
    return Strategy.from_config({"strategy": block})


def walk(
    tmp_path: Path, strategy: Strategy, runtime: FakeRuntime
) -> tuple[Controller, RolloutJournal]:
    journal = RolloutJournal(tmp_path)
    return Controller(DEPLOYMENT, strategy, journal, runtime), journal


def test_first_deploy_switches_straight_to_the_new_version(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    controller, journal = walk(tmp_path, canary(), runtime)
    record = controller.deploy(Wanted((V1,)))
    assert record.phase == Phase.HEALTHY and record.stable == (V1,)
    assert runtime.splits == [{"m-v1": 100}]
    assert runtime.serving == [("m-v1",)]
    assert journal.load(DEPLOYMENT) == record


def test_canary_moves_through_the_steps_and_promotes(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    controller, _journal = walk(tmp_path, canary(), runtime)
    controller.deploy(Wanted((V1,)))
    record = controller.deploy(Wanted((V2,)))
    assert record.phase == Phase.HEALTHY and record.stable == (V2,)
    assert runtime.splits[1:] == [
        {"m-v1": 90, "m-v2": 10},
        {"m-v1": 50, "m-v2": 50},
        {"m-v2": 100},
    ]
    # Old and new ran side by side during the steps; the old one stopped at the end.
    assert runtime.serving[-2:] == [("m-v1", "m-v2"), ("m-v2",)]
    # Two checks per 10 s step at a 5 s interval, all passed.
    assert len(record.checks) == 4 and record.failed_checks == 0
    assert all(c["passed"] for c in record.checks)
    assert runtime.now == pytest.approx(20.0)
    assert not controller.aborted


def test_failed_analysis_rolls_back_after_the_failure_limit(tmp_path: Path) -> None:
    runtime = FakeRuntime({"m-v2": "failing"})
    controller, _ = walk(tmp_path, canary(), runtime)
    controller.deploy(Wanted((V1,)))
    record = controller.deploy(Wanted((V2,)))
    assert controller.aborted
    assert record.phase == Phase.ABORTED and record.stable == (V1,)
    assert record.failed_checks == 2
    assert runtime.splits[-1] == {"m-v1": 100}
    assert runtime.serving[-1] == ("m-v1",)
    assert "success_rate 0.5 breaks success_rate >= 0.99" in record.message
    assert "traffic is back on model.m@v1" in record.message


def test_slow_canary_breaks_the_latency_threshold(tmp_path: Path) -> None:
    runtime = FakeRuntime({"m-v2": "slow"})
    controller, _ = walk(tmp_path, canary(failure_limit=1), runtime)
    controller.deploy(Wanted((V1,)))
    record = controller.deploy(Wanted((V2,)))
    assert record.phase == Phase.ABORTED and record.failed_checks == 1
    assert "latency_p99_ms" in record.message


def test_no_data_counts_as_failure(tmp_path: Path) -> None:
    runtime = FakeRuntime({"m-v2": "silent"})
    controller, _ = walk(tmp_path, canary(), runtime)
    controller.deploy(Wanted((V1,)))
    record = controller.deploy(Wanted((V2,)))
    assert record.phase == Phase.ABORTED
    assert "no data for success_rate" in record.message


def test_without_auto_rollback_a_failed_analysis_pauses(tmp_path: Path) -> None:
    block = {
        "type": "canary",
        "steps": [{"weight": 20, "pause": "10s"}, {"weight": 100}],
        "analysis": {
            "interval": "5s",
            "failure_limit": 1,
            "metrics": [{"name": "success_rate", "threshold": ">= 0.99"}],
        },
        "auto_rollback": False,
    }
    runtime = FakeRuntime({"m-v2": "failing"})
    controller, _journal = walk(tmp_path, Strategy.from_config({"strategy": block}), runtime)
    controller.deploy(Wanted((V1,)))
    record = controller.deploy(Wanted((V2,)))
    assert record.phase == Phase.PAUSED and record.weight == 20
    # An operator promotes anyway.
    runtime.behaviour["m-v2"] = "good"
    record = controller.resume(Wanted((V2,)), "promote")
    assert record.phase == Phase.HEALTHY and record.stable == (V2,)


def test_promote_request_skips_the_remaining_steps(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    controller, journal = walk(tmp_path, canary(), runtime)
    controller.deploy(Wanted((V1,)))
    runtime.on_sleep.append((3.0, lambda: journal.request(DEPLOYMENT, "promote")))
    record = controller.deploy(Wanted((V2,)))
    assert record.phase == Phase.HEALTHY and record.stable == (V2,)
    assert runtime.splits[1:] == [{"m-v1": 90, "m-v2": 10}, {"m-v2": 100}]
    assert any("promotion requested" in e["message"] for e in record.events)
    assert journal.load(DEPLOYMENT).requested is None  # type: ignore[union-attr]


def test_abort_request_returns_traffic_to_stable(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    controller, journal = walk(tmp_path, canary(), runtime)
    controller.deploy(Wanted((V1,)))
    runtime.on_sleep.append((12.0, lambda: journal.request(DEPLOYMENT, "abort")))
    record = controller.deploy(Wanted((V2,)))
    assert record.phase == Phase.ABORTED and runtime.splits[-1] == {"m-v1": 100}
    assert "aborted by `mlform rollout abort`" in record.message


def test_an_interrupted_rollout_resumes_at_its_recorded_step(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    controller, journal = walk(tmp_path, canary(), runtime)
    controller.deploy(Wanted((V1,)))

    class Interrupted(Exception):
        pass

    def crash() -> None:
        raise Interrupted

    runtime.on_sleep.append((12.0, crash))  # during the second step (50%)
    with pytest.raises(Interrupted):
        controller.deploy(Wanted((V2,)))
    stopped = journal.load(DEPLOYMENT)
    assert stopped is not None and stopped.pending and stopped.step == 1
    again = FakeRuntime()
    record = Controller(DEPLOYMENT, canary(), journal, again).deploy(Wanted((V2,)))
    assert record.phase == Phase.HEALTHY
    # Resumed at 50%, not from the first step.
    assert again.splits == [{"m-v1": 50, "m-v2": 50}, {"m-v2": 100}]
    assert any("resuming the rollout of model.m@v2 at step 1" in m for m in again.messages)


def test_a_newer_version_supersedes_a_pending_rollout(tmp_path: Path) -> None:
    block = {"type": "blue_green", "auto_promote": False}
    runtime = FakeRuntime()
    controller, _ = walk(tmp_path, Strategy.from_config({"strategy": block}), runtime)
    controller.deploy(Wanted((V1,)))
    assert controller.deploy(Wanted((V2,))).phase == Phase.PAUSED
    record = controller.deploy(Wanted((V3,)))
    assert record.phase == Phase.PAUSED and record.canary == V3 and record.stable == (V1,)
    assert not controller.aborted
    assert runtime.serving[-1] == ("m-v1", "m-v3")


def test_blue_green_previews_then_promotes_on_request(tmp_path: Path) -> None:
    block = {"type": "blue_green", "auto_promote": False, "scale_down_delay": "30s"}
    runtime = FakeRuntime()
    controller, _ = walk(tmp_path, Strategy.from_config({"strategy": block}), runtime)
    controller.deploy(Wanted((V1,)))
    paused = controller.deploy(Wanted((V2,)))
    assert paused.phase == Phase.PAUSED
    table = runtime.tables[-1]
    assert table["split"] == {"m-v1": 100} and table["preview"] == "m-v2"
    assert "mlform rollout promote" in paused.message
    record = controller.resume(Wanted((V2,)), "promote")
    assert record.phase == Phase.HEALTHY and record.stable == (V2,)
    assert runtime.tables[-1]["split"] == {"m-v2": 100}
    assert runtime.tables[-1]["preview"] is None
    # The old version kept running for the scale-down delay before it stopped.
    assert runtime.now == pytest.approx(30.0)
    assert runtime.serving[-1] == ("m-v2",)


def test_blue_green_auto_promotes_after_its_delay(tmp_path: Path) -> None:
    block = {
        "type": "blue_green",
        "auto_promote": True,
        "promote_after": "20s",
        "scale_down_delay": "0s",
    }
    runtime = FakeRuntime()
    controller, _ = walk(tmp_path, Strategy.from_config({"strategy": block}), runtime)
    controller.deploy(Wanted((V1,)))
    record = controller.deploy(Wanted((V2,)))
    assert record.phase == Phase.HEALTHY and record.stable == (V2,)
    assert runtime.now == pytest.approx(20.0)


def test_rolling_starts_new_before_stopping_old_and_recreate_does_not(tmp_path: Path) -> None:
    rolling = FakeRuntime()
    controller, _ = walk(tmp_path / "r", Strategy.from_config({}), rolling)
    controller.deploy(Wanted((V1,)))
    controller.deploy(Wanted((V2,)))
    assert rolling.serving[-2:] == [("m-v1", "m-v2"), ("m-v2",)]
    recreate = FakeRuntime()
    block = {"strategy": {"type": "recreate"}}
    controller, _ = walk(tmp_path / "c", Strategy.from_config(block), recreate)
    controller.deploy(Wanted((V1,)))
    controller.deploy(Wanted((V2,)))
    assert recreate.serving[-1] == ("m-v2",) and len(recreate.serving) == 2


def test_ab_test_and_shadow_route_tables(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    ab = Strategy.from_config({"strategy": {"type": "ab_test"}})
    a, b = Served("a-v1", "model.a@v1", 70), Served("b-v4", "model.b@v4", 30)
    controller, _ = walk(tmp_path / "ab", ab, runtime)
    controller.deploy(Wanted((a, b), route_by="header", key="x-variant"))
    table = runtime.tables[-1]
    assert table["split"] == {"a-v1": 70, "b-v4": 30}
    assert table["route_by"] == "header" and table["key"] == "x-variant"

    shadow = Strategy.from_config({"strategy": {"type": "shadow"}})
    controller, _ = walk(tmp_path / "shadow", shadow, runtime)
    controller.deploy(Wanted((V1,), mirror=b, mirror_percent=25))
    table = runtime.tables[-1]
    assert table["split"] == {"m-v1": 100}
    assert table["mirror"] == {"upstream": "b-v4", "percent": 25}
    assert set(table["upstreams"]) == {"m-v1", "b-v4"}


def test_describe_lists_the_steps_for_the_plan() -> None:
    text = canary().describe()
    assert text.startswith("canary 10% (pause 10s) → 50% (pause 10s) → 100%")
    assert "success_rate >= 0.99" in text and "abort after 2 failed checks" in text


def test_rollback_returns_to_the_previous_version_and_keeps_it(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    controller, journal = walk(tmp_path, canary(), runtime)
    controller.deploy(Wanted((V1,)))
    promoted = controller.deploy(Wanted((V2,)))
    assert promoted.previous == (V1,)
    record = controller.rollback(Wanted((V2,)), "monitor.lat breached")
    assert controller.aborted
    assert record.phase == Phase.ABORTED and record.stable == (V1,) and record.canary == V2
    assert record.previous == ()
    assert runtime.splits[-1] == {"m-v1": 100}
    # Both served while traffic moved; only v1 afterwards.
    assert runtime.serving[-2:] == [("m-v1", "m-v2"), ("m-v1",)]
    assert record.message == ("rolled back from model.m@v2 to model.m@v1: monitor.lat breached")
    # The next deploy of the same (rolled back) version keeps serving v1.
    again = Controller(DEPLOYMENT, canary(), journal, runtime).deploy(Wanted((V2,)))
    assert again.stable == (V1,) and runtime.splits[-1] == {"m-v1": 100}
    # A newer version rolls out as usual.
    newer = Controller(DEPLOYMENT, canary(), journal, runtime).deploy(Wanted((V3,)))
    assert newer.phase == Phase.HEALTHY and newer.stable == (V3,) and newer.previous == (V1,)


def test_rollback_without_an_earlier_version_is_refused(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    controller, _ = walk(tmp_path, canary(), runtime)
    controller.deploy(Wanted((V1,)))
    with pytest.raises(LookupError, match="no earlier version"):
        controller.rollback(Wanted((V1,)), "breach")
    with pytest.raises(LookupError, match="never deployed"):
        Controller("deployment.other", canary(), RolloutJournal(tmp_path), runtime).rollback(
            Wanted((V1,)), "breach"
        )
