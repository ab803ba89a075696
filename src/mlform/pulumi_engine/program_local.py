"""The Pulumi program of the ``local`` target: one :class:`LocalProcess` per process."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mlform.infra.model import Process
from mlform.pulumi_engine.local_process import LocalProcess


def process_inputs(process: Process, log_dir: Path) -> dict[str, Any]:
    """The provider's inputs for ``process``: its own inputs plus where its log goes."""
    return {
        **process.inputs(),
        "log_dir": str(log_dir),
        "owner": str(process.owner),
        "name": process.name,
    }


def declare_processes(processes: Sequence[Process], log_dir: Path) -> list[LocalProcess]:
    """Register one resource per process (inside a running Pulumi program)."""
    return [LocalProcess(p.logical_name, process_inputs(p, log_dir)) for p in processes]


def local_program(processes: Sequence[Process], log_dir: Path) -> Callable[[], None]:
    """An inline program declaring ``processes``, each named by its logical name."""
    declared = tuple(processes)

    def program() -> None:
        declare_processes(declared, log_dir)

    return program
