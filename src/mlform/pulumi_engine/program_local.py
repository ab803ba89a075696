"""The Pulumi program of the ``local`` target: one :class:`LocalProcess` per process.

A process's ``env`` may hold ``${secret:}`` redaction tokens (a deployment's ``env``):
mlform records the tokens; the program reveals them (``reveal``, the target's) into the
inputs it declares, as a secret value, so Pulumi's state keeps the ``env`` encrypted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pulumi

from mlform.infra.model import Process
from mlform.pulumi_engine.local_process import LocalProcess
from mlform.secrets import is_sensitive

Reveal = Callable[[Any], Any]


def _clear_env(process: Process, reveal: Reveal | None) -> dict[str, str]:
    if reveal is None:
        raise ValueError(
            f"{process.logical_name}: env holds ${{secret:}} values and the target has no "
            "way to reveal them"
        )
    clear: dict[str, str] = reveal(dict(process.env))
    return clear


def process_inputs(process: Process, log_dir: Path, reveal: Reveal | None = None) -> dict[str, Any]:
    """The provider's inputs for ``process``: its own inputs plus where its log goes
    (``env`` revealed, as a secret value, when it holds secret tokens: module docstring)."""
    inputs: dict[str, Any] = {
        **process.inputs(),
        "log_dir": str(log_dir),
        "owner": str(process.owner),
        "name": process.name,
    }
    if is_sensitive(inputs["env"]):
        inputs["env"] = pulumi.Output.secret(_clear_env(process, reveal))
    return inputs


def declare_processes(
    processes: Sequence[Process], log_dir: Path, reveal: Reveal | None = None
) -> list[LocalProcess]:
    """Register one resource per process (inside a running Pulumi program)."""
    return [
        LocalProcess(
            p.logical_name,
            process_inputs(p, log_dir, reveal),
            opts=pulumi.ResourceOptions(additional_secret_outputs=["env"])
            if is_sensitive(dict(p.env))
            else None,
        )
        for p in processes
    ]


def local_program(
    processes: Sequence[Process], log_dir: Path, reveal: Reveal | None = None
) -> Callable[[], None]:
    """An inline program declaring ``processes``, each named by its logical name."""
    declared = tuple(processes)
    for process in declared:  # before `pulumi up`: a missing or changed secret fails first
        if is_sensitive(dict(process.env)):
            _clear_env(process, reveal)

    def program() -> None:
        declare_processes(declared, log_dir, reveal)

    return program
