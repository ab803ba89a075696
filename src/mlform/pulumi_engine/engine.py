"""The adapter to the Pulumi engine: preview, up, drift, refresh and destroy of one stack.

Each :class:`Engine` drives one Pulumi stack through the Automation API with an inline
program, on a ``file://`` backend inside ``work_dir``::

    work_dir/backend/   Pulumi's state (file backend)
    work_dir/project/   the Pulumi project directory (Pulumi.yaml, Pulumi.<stack>.yaml)
    work_dir/home/      PULUMI_HOME
    work_dir/logs/      logs of local processes
    work_dir/passphrase the generated secrets passphrase (when none is configured)
    work_dir/engine.lock

Every operation holds the stack's engine lock; Pulumi's errors come out as
:class:`mlform.errors.InfraError` and its events as :class:`InfraChange` values.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from pulumi import automation as auto
from pulumi.automation._stack import StackInitMode

from mlform.infra.model import InfraChange, InfraOp, InfraResource
from mlform.pulumi_engine.environment import engine_environment
from mlform.pulumi_engine.errors import infra_error
from mlform.pulumi_engine.events import PROVIDER_KEY, EventLog, is_own_resource
from mlform.pulumi_engine.lock import engine_lock
from mlform.pulumi_engine.programs import build_program
from mlform.pulumi_engine.target import EngineTarget
from mlform.pulumi_engine.toolchain import Toolchain, find_toolchain
from mlform.state.lock import process_alive

_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")


def pulumi_name(name: str) -> str:
    """``name`` with only the characters Pulumi allows in project and stack names."""
    cleaned = _NAME_RE.sub("-", name).strip("-.")[:100]
    return cleaned or "mlform"


@dataclass(frozen=True, slots=True)
class EngineRun:
    """What one engine operation did (or, for preview and drift, would do)."""

    operation: str  # "preview" | "up" | "refresh" | "drift" | "destroy"
    changes: tuple[InfraChange, ...]
    outputs: Mapping[str, Mapping[str, Any]]
    duration_s: float

    def changed(self) -> tuple[InfraChange, ...]:
        return tuple(c for c in self.changes if c.op is not InfraOp.SAME)


def _no_program() -> None:
    """The program of runs that never run one (drift, refresh, destroy)."""


_LIVE_OPERATIONS = frozenset({"up", "destroy"})


class _EngineStack(auto.Stack):
    """A Stack without the CLI runs the SDK makes only to fill result objects.

    After ``up``, ``refresh`` and ``destroy`` the SDK runs ``stack output`` twice and
    ``stack history`` (about 1.3 s of a 3 s ``up``) to build ``UpResult.outputs`` and
    ``.summary``. mlform reads everything from the engine events instead.
    """

    def outputs(self) -> auto.OutputMap:
        return {}

    def info(self, show_secrets: bool = True) -> auto.UpdateSummary | None:
        return auto.UpdateSummary(
            kind="",
            start_time=datetime.now(UTC),
            message="",
            environment={},
            config={},
            result="not-read",
        )


@cache
def _pulumi_command(root: str) -> auto.PulumiCommand:
    """The CLI wrapper (its constructor runs ``pulumi version``: once per process)."""
    return auto.PulumiCommand(root=root)


class Engine:
    """One Pulumi stack of one mlform stack; see the module docstring for the layout."""

    def __init__(
        self,
        *,
        work_dir: Path,
        project: str,
        stack: str,
        target: EngineTarget,
        toolchain: Toolchain | None = None,
        on_change: Callable[[InfraChange], None] | None = None,
        lock_timeout_s: float = 60.0,
    ) -> None:
        self.work_dir = Path(work_dir).resolve()
        self.project = pulumi_name(project)
        self.stack_name = pulumi_name(stack)
        self.target = target
        self._toolchain = toolchain
        self._on_change = on_change
        self._lock_timeout_s = lock_timeout_s
        self._stack: auto.Stack | None = None

    # -- layout ---------------------------------------------------------------------

    @property
    def backend_dir(self) -> Path:
        return self.work_dir / "backend"

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def toolchain(self) -> Toolchain:
        if self._toolchain is None:
            self._toolchain = find_toolchain(kubernetes=self.target.needs_kubernetes)
        return self._toolchain

    def _checkpoint(self) -> Path:
        return self.backend_dir / ".pulumi" / "stacks" / self.project / f"{self.stack_name}.json"

    def has_stack(self) -> bool:
        """Whether the backend holds the stack (read from its files, no CLI run)."""
        checkpoint = self._checkpoint()
        return checkpoint.is_file() or checkpoint.with_suffix(".json.gz").is_file()

    # -- operations -----------------------------------------------------------------

    def preview(self, resources: Sequence[InfraResource]) -> EngineRun:
        program = build_program(resources, self.target, self.log_dir)
        return self._run("preview", lambda s, log: s.preview(program=program, on_event=log))

    def up(self, resources: Sequence[InfraResource]) -> EngineRun:
        program = build_program(resources, self.target, self.log_dir)
        return self._run(
            "up", lambda s, log: s.up(program=program, on_event=log), with_outputs=True
        )

    def drift(self) -> EngineRun:
        """A refresh in preview-only mode: reports GONE and DRIFTED, changes nothing."""
        if not self.has_stack():
            return EngineRun("drift", (), {}, 0.0)
        return self._run(
            "drift",
            lambda s, log: s.preview_refresh(program=_no_program, run_program=False, on_event=log),
        )

    def refresh(self) -> EngineRun:
        """Like ``pulumi refresh``: the recorded state follows the live world."""
        if not self.has_stack():
            return EngineRun("refresh", (), {}, 0.0)
        return self._run(
            "refresh",
            lambda s, log: s.refresh(program=_no_program, run_program=False, on_event=log),
            with_outputs=True,
        )

    def destroy(self) -> EngineRun:
        """Delete every resource of the stack; no stack is an empty run."""
        if not self.has_stack():
            return EngineRun("destroy", (), {}, 0.0)
        return self._run(
            "destroy",
            lambda s, log: s.destroy(program=_no_program, run_program=False, on_event=log),
        )

    def outputs(self) -> dict[str, dict[str, Any]]:
        """Logical name -> outputs of every resource in the stack's state."""
        if not self.has_stack():
            return {}
        with engine_lock(self.work_dir, "export", self._lock_timeout_s):
            try:
                # ``stack export`` shows secrets in plain text: never log what it returns.
                deployment = self._open_stack().export_stack().deployment or {}
            except auto.CommandError as exc:
                raise infra_error(exc, "export", self.stack_name, []) from exc
        outputs: dict[str, dict[str, Any]] = {}
        for resource in deployment.get("resources") or []:
            urn, kind = resource.get("urn", ""), resource.get("type", "")
            if is_own_resource(kind, urn):
                values = resource.get("outputs") or {}
                outputs[urn.rsplit("::", 1)[-1]] = {
                    k: v for k, v in values.items() if k != PROVIDER_KEY
                }
        return dict(sorted(outputs.items()))

    # -- machinery ------------------------------------------------------------------

    def _run(
        self,
        operation: str,
        body: Callable[[auto.Stack, EventLog], object],
        *,
        with_outputs: bool = False,
    ) -> EngineRun:
        log = EventLog(operation, self._on_change if operation in _LIVE_OPERATIONS else None)
        with engine_lock(self.work_dir, operation, self._lock_timeout_s):
            started = time.monotonic()
            try:
                stack = self._open_stack()
                self._clear_stale_pulumi_locks()
                body(stack, log)
            except auto.CommandError as exc:
                raise infra_error(exc, operation, self.stack_name, log.failures()) from exc
            duration = time.monotonic() - started
        if log.callback_error is not None:
            raise log.callback_error
        outputs = log.outputs() if with_outputs else {}
        return EngineRun(operation, log.changes(), outputs, duration)

    def _open_stack(self) -> auto.Stack:
        if self._stack is not None:
            return self._stack
        project_dir = self.work_dir / "project"
        for directory in (self.backend_dir, project_dir, self.work_dir / "home", self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        workspace = auto.LocalWorkspace(
            work_dir=str(project_dir),
            pulumi_home=str(self.work_dir / "home"),
            program=_no_program,
            env_vars=engine_environment(self.work_dir, self.toolchain),
            secrets_provider="passphrase",
            project_settings=auto.ProjectSettings(
                name=self.project,
                runtime="python",
                main=str(project_dir),
                backend=auto.ProjectBackend(self.backend_dir.as_uri()),
            ),
            pulumi_command=_pulumi_command(str(self.toolchain.root)),
        )
        mode = StackInitMode.SELECT if self.has_stack() else StackInitMode.CREATE_OR_SELECT
        self._stack = _EngineStack(self.stack_name, workspace, mode)
        return self._stack

    def _clear_stale_pulumi_locks(self) -> None:
        """Remove Pulumi's own stack locks left by dead processes on this host.

        Called with the engine lock held, so no mlform operation can own them; a lock of a
        live process (someone running ``pulumi`` by hand) is left alone.
        """
        locks = self.backend_dir / ".pulumi" / "locks"
        if not locks.is_dir():
            return
        host = socket.gethostname()
        for path in locks.glob(f"*/{self.project}/{self.stack_name}/*.json"):
            try:
                holder = json.loads(path.read_text(encoding="utf-8"))
                pid = int(holder.get("pid", 0))
            except (OSError, ValueError, TypeError, AttributeError):
                continue
            if holder.get("hostname") == host and pid > 0 and not process_alive(pid):
                for stale in (path, path.with_name(path.name + ".attrs")):
                    with contextlib.suppress(OSError):
                        stale.unlink()
