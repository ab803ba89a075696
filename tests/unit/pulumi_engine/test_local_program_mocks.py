"""The local target's program under Pulumi's mocks, and the event and error translation.

No Pulumi CLI runs here: the program is checked against ``pulumi.runtime.set_mocks``, and
events and errors are hand-built ``pulumi.automation`` objects.
"""

from __future__ import annotations

import base64
import random
import threading
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.automation import (
    CommandError,
    CommandResult,
    ConcurrentUpdateError,
    DiagnosticEvent,
    EngineEvent,
    OpType,
    ResOpFailedEvent,
    ResourcePreEvent,
    ResOutputsEvent,
    StepEventMetadata,
    StepEventStateMetadata,
)

from mlform.addresses import Address
from mlform.infra.model import InfraChange, InfraOp, Manifest, Process
from mlform.pulumi_engine.errors import clean_message, infra_error
from mlform.pulumi_engine.events import EventLog, failures_of, outputs_of, translate
from mlform.pulumi_engine.local_process import LocalProcessProvider, changed_inputs
from mlform.pulumi_engine.program_local import declare_processes, local_program
from mlform.pulumi_engine.programs import build_program
from mlform.pulumi_engine.target import EngineTarget

DYNAMIC = "pulumi-python:dynamic:Resource"
API = Address.parse("deployment.api")
MONITOR = Address.parse("monitor.drift")


# -- the program under mocks ------------------------------------------------------------


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers like the provider would (pid, port, url) and records every registration."""

    def __init__(self) -> None:
        self.registered: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.registered.append(args)
        port = int(args.inputs.get("port") or 0) or 40000 + len(self.registered)
        outputs = {
            **args.inputs,
            "pid": 1000 + len(self.registered),
            "port": port,
            "url": f"http://127.0.0.1:{port}",
            "health": "healthy",
        }
        return f"id-{len(self.registered)}", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        return {}, []


@pytest.fixture
def mocks() -> RecordingMocks:
    recording = RecordingMocks()
    pulumi.runtime.set_mocks(recording, project="project", stack="stack", preview=False)
    return recording


def _server(name: str = "server-0", **overrides: Any) -> Process:
    fields: dict[str, Any] = {
        "owner": API,
        "name": name,
        "command": ("python", "-m", "http.server", "{port}"),
        "env": {"MODEL_URI": "file:///models/churn/3", "WORKERS": "2"},
        "port": 0,
        "health_path": "/v2/health/ready",
        "cwd": "/srv/api",
        "startup_timeout_s": 12.5,
    }
    fields.update(overrides)
    return Process(**fields)


@pulumi.runtime.test
def test_each_process_is_one_dynamic_resource_with_its_inputs(
    mocks: RecordingMocks, tmp_path: Path
) -> Any:
    processes = [_server("server-0"), _server("server-1", port=8081, env={"A": "1"})]
    resources = declare_processes(processes, tmp_path / "logs")

    def check(values: list[Any]) -> None:
        urn0, urn1, url0, port1 = values
        assert urn0.endswith(f"{DYNAMIC}::deployment.api/server-0")
        assert urn1.endswith(f"{DYNAMIC}::deployment.api/server-1")
        assert url0 == "http://127.0.0.1:40001"  # the picked port flows to the output
        assert port1 == 8081
        by_name = {args.name: args for args in mocks.registered}
        assert set(by_name) == {"deployment.api/server-0", "deployment.api/server-1"}
        first = by_name["deployment.api/server-0"].inputs
        assert first["command"] == ["python", "-m", "http.server", "{port}"]
        assert first["env"] == {"MODEL_URI": "file:///models/churn/3", "WORKERS": "2"}
        assert first["port"] == 0
        assert first["health_path"] == "/v2/health/ready"
        assert first["cwd"] == "/srv/api"
        assert first["startup_timeout_s"] == 12.5
        assert first["log_dir"] == str(tmp_path / "logs")
        assert (first["owner"], first["name"]) == ("deployment.api", "server-0")
        second = by_name["deployment.api/server-1"].inputs
        assert (second["port"], second["env"], second["name"]) == (8081, {"A": "1"}, "server-1")

    return pulumi.Output.all(
        resources[0].urn, resources[1].urn, resources[0].url, resources[1].port
    ).apply(check)


@pulumi.runtime.test
def test_the_provider_is_pickled_by_reference_for_the_launcher(
    mocks: RecordingMocks, tmp_path: Path
) -> Any:
    import dill

    resource = declare_processes([_server()], tmp_path)[0]

    def check(_: str) -> None:
        serialized = mocks.registered[0].inputs["__provider"]
        raw = base64.b64decode(serialized)
        # By reference: the launcher imports the module instead of receiving code.
        assert b"mlform.pulumi_engine.local_process" in raw
        assert b"LocalProcessProvider" in raw
        assert len(raw) < 2000
        assert isinstance(dill.loads(raw), LocalProcessProvider)

    return resource.urn.apply(check)


def test_local_program_registers_exactly_the_given_processes(
    mocks: RecordingMocks, tmp_path: Path
) -> None:
    program = local_program([_server("a"), _server("b", owner=MONITOR)], tmp_path)
    # runtime.test returns only once every registration the program started is done.
    pulumi.runtime.test(program)()
    names = sorted(args.name for args in mocks.registered)
    assert names == ["deployment.api/a", "monitor.drift/b"]
    assert {args.typ for args in mocks.registered} == {DYNAMIC}
    assert {args.inputs["owner"] for args in mocks.registered} == {
        "deployment.api",
        "monitor.drift",
    }


def test_build_program_refuses_a_manifest_on_the_local_target(tmp_path: Path) -> None:
    manifest = Manifest(
        owner=API, name="svc", body={"apiVersion": "v1", "kind": "Service", "metadata": {}}
    )
    with pytest.raises(ValueError, match=r"deployment\.api/svc"):
        build_program([_server(), manifest], EngineTarget(type="local"), tmp_path)


def test_build_program_refuses_a_process_on_the_render_target(tmp_path: Path) -> None:
    target = EngineTarget(type="render", render_directory=tmp_path)
    with pytest.raises(ValueError, match=r"deployment\.api/server-0"):
        build_program([_server()], target, tmp_path)


def test_diff_compares_the_requested_port_not_the_picked_one() -> None:
    inputs = {**_server().inputs(), "log_dir": "/l", "owner": "deployment.api", "name": "s"}
    recorded = {**inputs, "port": 41234, "port_requested": 0, "startup_timeout_s": 12.5}
    provider = LocalProcessProvider()
    assert changed_inputs(recorded, inputs) == []
    assert provider.diff("id", {**recorded, "health": "healthy"}, inputs).changes is False
    assert provider.diff("id", {**recorded, "health": "unhealthy"}, inputs).changes is True
    changed = {**inputs, "env": {"WORKERS": "4"}}
    assert changed_inputs(recorded, changed) == ["env"]
    result = provider.diff("id", recorded, changed)
    assert result.changes is True
    assert result.replaces == []  # restarted in place: the id never changes


# -- events -----------------------------------------------------------------------------

STACK_URN = "urn:pulumi:dev::proj::pulumi:pulumi:Stack::proj-dev"
PROVIDER_URN = "urn:pulumi:dev::proj::pulumi:providers:pulumi-python::default"


def _urn(logical: str, kind: str = DYNAMIC) -> str:
    return f"urn:pulumi:dev::proj::{kind}::{logical}"


def _state(urn: str, kind: str, inputs: dict[str, Any], outputs: dict[str, Any]) -> Any:
    return StepEventStateMetadata(
        type=kind, urn=urn, id="x", parent="", provider="", inputs=inputs, outputs=outputs
    )


def _meta(
    op: OpType,
    logical: str,
    *,
    kind: str = DYNAMIC,
    old: tuple[dict[str, Any], dict[str, Any]] | None = None,
    new: tuple[dict[str, Any], dict[str, Any]] | None = None,
    diffs: list[str] | None = None,
    urn: str | None = None,
) -> StepEventMetadata:
    urn = urn or _urn(logical, kind)
    return StepEventMetadata(
        op=op,
        urn=urn,
        type=kind,
        provider="",
        old=_state(urn, kind, *old) if old else None,
        new=_state(urn, kind, *new) if new else None,
        diffs=diffs,
    )


def _pre(seq: int, meta: StepEventMetadata) -> EngineEvent:
    return EngineEvent(seq, 0, resource_pre_event=ResourcePreEvent(meta))


def _done(seq: int, meta: StepEventMetadata) -> EngineEvent:
    return EngineEvent(seq, 0, res_outputs_event=ResOutputsEvent(meta))


def _ops(changes: tuple[InfraChange, ...]) -> list[tuple[str, InfraOp, tuple[str, ...]]]:
    return [(c.logical_name, c.op, c.fields) for c in changes]


def _up_events() -> list[EngineEvent]:
    old_in = {"env": {"A": "1"}, "port": 0, "__provider": "p1"}
    new_in = {"env": {"A": "2"}, "port": 0, "__provider": "p2"}
    deploy = "kubernetes:apps/v1:Deployment"
    same = _meta(OpType.SAME, "deployment.api/server-1", old=(old_in, {}), new=(old_in, {}))
    return [
        _pre(1, _meta(OpType.SAME, "", kind="pulumi:pulumi:Stack", urn=STACK_URN)),
        _pre(2, _meta(OpType.CREATE, "", kind="pulumi:providers:pulumi-python", urn=PROVIDER_URN)),
        _pre(3, _meta(OpType.CREATE, "deployment.api/server-0", new=(new_in, {}))),
        _pre(4, _meta(OpType.UPDATE, "monitor.drift/worker", old=(old_in, {}), new=(new_in, {}))),
        _pre(5, same),
        _pre(
            6, _meta(OpType.CREATE_REPLACEMENT, "deployment.api/web", kind=deploy, diffs=["spec"])
        ),
        _pre(7, _meta(OpType.REPLACE, "deployment.api/web", kind=deploy, diffs=["spec"])),
        _pre(8, _meta(OpType.DELETE_REPLACED, "deployment.api/web", kind=deploy)),
        _pre(9, _meta(OpType.DELETE, "deployment.old/server-0", old=(old_in, {}))),
        _pre(10, _meta(OpType.CREATE, "not-an-mlform-name")),
    ]


def test_up_events_become_one_change_per_resource_in_pulumi_order() -> None:
    changes = translate(_up_events(), "up")
    assert _ops(changes) == [
        ("deployment.api/server-0", InfraOp.CREATE, ()),
        ("monitor.drift/worker", InfraOp.UPDATE, ("env",)),  # computed: Pulumi gave no diffs
        ("deployment.api/server-1", InfraOp.SAME, ()),
        ("deployment.api/web", InfraOp.REPLACE, ("spec",)),
        ("deployment.old/server-0", InfraOp.DELETE, ()),
    ]
    assert [c.type for c in changes] == [
        "process",
        "process",
        "process",
        "kubernetes:apps/v1:Deployment",
        "process",
    ]
    assert changes[1].owner == MONITOR and changes[1].name == "worker"


def test_events_are_ordered_by_sequence_whatever_thread_delivered_them() -> None:
    events = _up_events()
    random.Random(7).shuffle(events)
    log = EventLog("up")
    threads = [threading.Thread(target=log, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _ops(log.changes()) == _ops(translate(_up_events(), "up"))


def test_a_restart_of_an_unhealthy_process_names_health() -> None:
    inputs = {"env": {}, "port": 0}
    meta = _meta(
        OpType.UPDATE,
        "deployment.api/server-0",
        old=(inputs, {"health": "unhealthy"}),
        new=(inputs, {}),
    )
    assert _ops(translate([_pre(1, meta)], "up")) == [
        ("deployment.api/server-0", InfraOp.UPDATE, ("health",))
    ]


def test_refresh_outcomes_become_same_gone_and_drifted() -> None:
    healthy = {"pid": 7, "health": "healthy"}
    unhealthy = {"pid": 7, "health": "unhealthy"}
    events = [
        _pre(1, _meta(OpType.REFRESH, "deployment.api/a", old=({}, healthy), new=({}, healthy))),
        _pre(2, _meta(OpType.REFRESH, "deployment.api/b", old=({}, healthy), new=({}, healthy))),
        _pre(3, _meta(OpType.REFRESH, "deployment.api/c", old=({}, healthy), new=({}, healthy))),
        _done(4, _meta(OpType.SAME, "deployment.api/a", old=({}, healthy), new=({}, healthy))),
        _done(5, _meta(OpType.DELETE, "deployment.api/b", old=({}, healthy))),
        _done(6, _meta(OpType.UPDATE, "deployment.api/c", old=({}, healthy), new=({}, unhealthy))),
        _done(7, _meta(OpType.SAME, "", kind="pulumi:pulumi:Stack", urn=STACK_URN)),
    ]
    for operation in ("drift", "refresh"):
        changes = translate(events, operation)
        assert _ops(changes) == [
            ("deployment.api/a", InfraOp.SAME, ()),
            ("deployment.api/b", InfraOp.GONE, ()),
            ("deployment.api/c", InfraOp.DRIFTED, ("health",)),
        ]


def test_outputs_follow_the_completed_steps() -> None:
    provider = {"__provider": "secret-pickle"}
    events = [
        _done(2, _meta(OpType.SAME, "deployment.api/a", new=({}, {"pid": 1.0, **provider}))),
        _done(1, _meta(OpType.CREATE, "deployment.api/b", new=({}, {"pid": 2.0}))),
        _done(3, _meta(OpType.DELETE, "deployment.api/b", old=({}, {"pid": 2.0}))),
        _done(4, _meta(OpType.UPDATE, "deployment.api/c", new=({}, {"url": "http://x"}))),
        _done(5, _meta(OpType.SAME, "", kind="pulumi:pulumi:Stack", urn=STACK_URN)),
    ]
    assert outputs_of(events) == {
        "deployment.api/a": {"pid": 1.0},
        "deployment.api/c": {"url": "http://x"},
    }


def test_on_change_is_called_once_per_resource_as_its_step_completes() -> None:
    seen: list[InfraChange] = []
    log = EventLog("up", seen.append)
    log(_pre(1, _meta(OpType.CREATE, "deployment.api/a")))
    assert seen == []
    log(_done(2, _meta(OpType.CREATE, "deployment.api/a")))
    log(_done(3, _meta(OpType.SAME, "", kind="pulumi:pulumi:Stack", urn=STACK_URN)))
    log(_done(4, _meta(OpType.CREATE, "deployment.api/a")))
    assert [(c.logical_name, c.op) for c in seen] == [("deployment.api/a", InfraOp.CREATE)]


def _diagnostic(seq: int, message: str, urn: str | None) -> EngineEvent:
    event = DiagnosticEvent(message=message, color="never", severity="error", urn=urn)
    return EngineEvent(seq, 0, diagnostic_event=event)


def _failure_events() -> list[EngineEvent]:
    urn = _urn("deployment.api/server-0")
    message = (
        "Exception calling application: the process exited with status 3 during startup; "
        "last lines of /state/logs/deployment.api/server-0.log:\nTraceback ...\n"
        "ModuleNotFoundError: No module named 'fastapi'\n"
    )
    failed = ResOpFailedEvent(_meta(OpType.CREATE, "deployment.api/server-0"), 1, 1)
    return [
        _pre(1, _meta(OpType.CREATE, "deployment.api/server-0")),
        _diagnostic(2, message, urn),
        EngineEvent(3, 0, res_op_failed_event=failed),
        _diagnostic(4, "update failed\n", None),
    ]


def test_failures_carry_the_failed_step() -> None:
    failures = failures_of(_failure_events())
    assert [(f.logical_name, f.op, f.type) for f in failures] == [
        ("deployment.api/server-0", "create", DYNAMIC),
        (None, None, None),
    ]


# -- errors -----------------------------------------------------------------------------


def _command_error(stdout: str = "", stderr: str = "", cls: type = CommandError) -> Any:
    return cls(CommandResult(stdout=stdout, stderr=stderr, code=1))


def test_a_failed_resource_becomes_a_diagnostic_addressed_to_its_owner() -> None:
    error = infra_error(
        _command_error(stdout="Updating (dev):\n error: update failed"),
        "up",
        "dev",
        failures_of(_failure_events()),
    )
    assert len(error.diagnostics) == 1
    diagnostic = error.diagnostics[0]
    assert diagnostic.summary == "deployment.api/server-0: could not be created"
    assert diagnostic.address == "deployment.api"
    assert "Exception calling application" not in diagnostic.detail
    assert diagnostic.detail.startswith("the process exited with status 3 during startup")
    assert "No module named 'fastapi'" in diagnostic.detail
    assert "log" in diagnostic.detail.splitlines()[-1]  # says what to do next


def test_the_same_failure_twice_is_reported_once() -> None:
    failures = failures_of(_failure_events() + _failure_events())
    error = infra_error(_command_error(), "up", "dev", failures)
    assert [d.summary for d in error.diagnostics] == [
        "deployment.api/server-0: could not be created"
    ]


def test_a_delete_failure_says_how_to_recover() -> None:
    urn = _urn("deployment.api/server-0")
    failed = ResOpFailedEvent(_meta(OpType.DELETE, "deployment.api/server-0"), 1, 1)
    events = [
        _diagnostic(1, "permission denied", urn),
        EngineEvent(2, 0, res_op_failed_event=failed),
    ]
    error = infra_error(_command_error(), "destroy", "dev", failures_of(events))
    assert error.diagnostics[0].summary == "deployment.api/server-0: could not be deleted"
    assert "mlform refresh" in error.diagnostics[0].detail


def test_a_locked_stack_is_reported_as_such() -> None:
    stderr = (
        "error: the stack is currently locked by 1 lock(s). Either wait for the other "
        "process(es) to end or delete the lock file with `pulumi cancel`."
    )
    error = infra_error(_command_error(stderr=stderr, cls=ConcurrentUpdateError), "up", "dev", [])
    assert error.diagnostics[0].summary == "the Pulumi stack 'dev' is locked"
    assert "currently locked by 1 lock(s)" in error.diagnostics[0].detail
    assert error.diagnostics[0].address is None


def test_a_failure_no_resource_explains_keeps_the_cli_error_lines() -> None:
    stderr = "warning: something harmless\nerror: could not read plugin [resource-kubernetes]"
    error = infra_error(
        _command_error(stderr=stderr), "preview", "dev", failures_of([_diagnostic(1, "x", None)])
    )
    diagnostic = error.diagnostics[0]
    assert diagnostic.summary == "the Pulumi preview of stack 'dev' failed"
    assert diagnostic.detail.splitlines() == [
        "x",
        "error: could not read plugin [resource-kubernetes]",
    ]


def test_clean_message_strips_colour_codes_and_wrappers() -> None:
    assert clean_message("\x1b[31mException calling application: boom\x1b[0m\n\n") == "boom"
