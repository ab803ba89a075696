"""``mlform state``: inspect and manage recorded state."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mlform.cli.base import Globals, StackOpt, _run, _usage

state_app = typer.Typer(help="Inspect and manage recorded state.", no_args_is_help=True)


@state_app.command("list")
def state_list(stack: StackOpt = None) -> None:
    """List recorded objects with their status."""
    from mlform import api
    from mlform.cli.console import out

    records = _run(lambda: api.state_list(Globals.project, stack))
    if not records:
        out().print("No objects recorded (nothing applied yet).")
    for r in records:
        out().print(f"{r.address:<40} {r.status.value:<9} serial {r.updated_serial}", markup=False)


@state_app.command("show")
def state_show(address: str, stack: StackOpt = None) -> None:
    """Show one recorded object as JSON."""
    from mlform import api

    record = _run(lambda: api.state_show(address, Globals.project, stack))
    sys.stdout.write(record.model_dump_json(indent=2) + "\n")


@state_app.command("history")
def state_history(stack: StackOpt = None) -> None:
    """List finished operations with the serials they produced."""
    from mlform import api
    from mlform.cli.console import out

    entries = _run(lambda: api.state_history(Globals.project, stack))
    if not entries:
        out().print("No history yet.")
    for e in entries:
        out().print(
            f"serial {e.started_serial:>4} -> {e.finished_serial:<4} {e.operation:<9} "
            f"{e.outcome:<11} {e.finished_at}  {e.summary}",
            markup=False,
        )


@state_app.command("unlock")
def state_unlock(
    lock_id: Annotated[
        str | None, typer.Argument(help="The lock id printed by the locked error.")
    ] = None,
    stack: StackOpt = None,
    force: Annotated[bool, typer.Option(help="Remove the lock whatever its id.")] = False,
) -> None:
    """Remove a state lock left by a process that is gone."""
    from mlform import api
    from mlform.cli.console import out

    _run(lambda: api.unlock(lock_id, Globals.project, stack, force=force))
    out().print("State unlocked.")


@state_app.command("export")
def state_export(stack: StackOpt = None) -> None:
    """Write the state document to stdout."""
    from mlform import api

    sys.stdout.write(_run(lambda: api.export_state(Globals.project, stack)) + "\n")


@state_app.command("import")
def state_import(
    file: Annotated[
        Path, typer.Argument(help="A state document written by `mlform state export`.")
    ],
    stack: StackOpt = None,
    force: Annotated[bool, typer.Option(help="Accept a different lineage.")] = False,
) -> None:
    """Replace the state with an exported document (kept in history)."""
    from mlform import api
    from mlform.cli.console import out

    if not file.is_file():
        _usage(f"no such file: {file}")
    doc = _run(lambda: api.import_state(file.read_text(), Globals.project, stack, force=force))
    out().print(f"Imported state: lineage {doc.lineage}, serial {doc.serial}.")
