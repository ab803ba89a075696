"""``mlform monitor run|status|history``: run a monitor now, see verdicts and their history.

Scheduled runs happen in each monitor's scheduler process (``mlform apply`` starts it);
``run`` judges one monitor on demand with the same code, records the run, alerts and
acts on a breach like a scheduled run (``--no-act`` only measures and records). Exit
codes of ``run``: 0 ok or no data, 3 breached, 1 the monitor could not run.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from mlform.cli.base import Globals, OverridesArg, StackOpt, _exit, _run

if TYPE_CHECKING:
    from mlform.monitoring.history import MonitorRun

__all__ = ["monitor_app", "register_commands"]

monitor_app = typer.Typer(
    help="Run monitors on demand and show their verdicts and history.", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(help="The monitor: its name or address (monitor.NAME).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Write JSON to stdout.")]

BREACHED_EXIT = 3
_COLOURS = {"ok": "green", "breached": "red", "no_data": "yellow", "error": "red"}


def register_commands(app: typer.Typer) -> None:
    """Add ``monitor`` to ``app``."""
    app.add_typer(monitor_app, name="monitor")


@monitor_app.command("run")
def run(
    name: NameArg,
    overrides: OverridesArg = None,
    stack: StackOpt = None,
    no_act: Annotated[
        bool,
        typer.Option("--no-act", help="Measure and record only: no alerts, no breach action."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run one monitor now: measure its window, judge, alert and act; exit 3 when breached."""
    from mlform import api

    result = _run(
        lambda: api.monitor_run(name, Globals.project, stack, overrides or (), act=not no_act)
    )
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        _print_run(result, detailed=True)
    if result.status == "error":
        _exit(1)
    if result.breached:
        _exit(BREACHED_EXIT)


@monitor_app.command("status")
def status(stack: StackOpt = None, as_json: JsonOpt = False) -> None:
    """Every monitor: what it watches, its schedule, its latest verdict."""
    from rich.markup import escape

    from mlform import api
    from mlform.cli.console import out

    monitors = _run(lambda: api.monitor_status(Globals.project, stack))
    if as_json:
        document = [
            {
                "name": m.name,
                "deployment": m.deployment,
                "type": m.type,
                "on_breach": m.on_breach,
                "schedule": m.schedule,
                "applied": m.applied,
                "scheduler": m.scheduler,
                "latest": None if m.latest is None else m.latest.to_dict(),
                "verdict": None if m.verdict is None else m.verdict.to_dict(),
            }
            for m in monitors
        ]
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    console = out()
    if not monitors:
        console.print("No monitors declared.")
        return
    for m in monitors:
        state = "scheduled" if m.applied else "[yellow]not applied[/]"
        console.print(
            f"[bold]monitor.{escape(m.name)}[/]  {m.type} on deployment.{escape(m.deployment)}"
            f"  every {m.schedule}  on breach: {m.on_breach}  ({state})"
        )
        if m.verdict is None:
            console.print("  no verdict yet")
        else:
            colour = _COLOURS.get(m.verdict.status, "white")
            console.print(
                f"  [{colour}]{m.verdict.status}[/] at {m.verdict.time}: {escape(m.verdict.reason)}"
            )
        if m.latest is not None and m.latest is not m.verdict and m.latest != m.verdict:
            colour = _COLOURS.get(m.latest.status, "white")
            console.print(
                f"  latest run {m.latest.time}: [{colour}]{m.latest.status}[/] "
                f"{escape(m.latest.reason)}"
            )


@monitor_app.command("history")
def history(
    name: NameArg,
    stack: StackOpt = None,
    limit: Annotated[int, typer.Option(help="How many recent runs to show.", min=1)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The monitor's recent runs, oldest first: verdict, value, action and alerts."""
    from mlform import api
    from mlform.cli.console import out

    runs = _run(lambda: api.monitor_history(name, Globals.project, stack, limit=limit))
    if as_json:
        sys.stdout.write(json.dumps([r.to_dict() for r in runs], indent=2) + "\n")
        return
    if not runs:
        out().print(f"No runs of {name} yet (`mlform monitor run {name}` runs it now).")
        return
    for one in runs:
        _print_run(one, detailed=False)


def _print_run(run: MonitorRun, *, detailed: bool) -> None:
    from rich.markup import escape

    from mlform.cli.console import out

    console = out()
    colour = _COLOURS.get(run.status, "white")
    unit = "request" if run.type in ("latency", "error_rate") else "row"
    count = f"{run.rows} {unit}{'' if run.rows == 1 else 's'}"
    window = f" [{run.window}, {count}]" if run.window else ""
    console.print(
        f"{run.time}  monitor.{escape(run.monitor)}  [{colour}]{run.status}[/]  "
        f"{escape(run.reason)}{escape(window)}"
    )
    if run.action.get("outcome"):
        console.print(f"  {run.action.get('action')}: {escape(str(run.action['outcome']))}")
    for alert in run.alerts:
        mark = "sent" if alert.get("ok") else "[red]failed[/]"
        console.print(f"  alert {escape(str(alert.get('sink')))}: {mark} ({alert.get('detail')})")
    if not detailed:
        return
    for column in run.details.get("columns") or ():
        if isinstance(column, dict):
            flag = "[red]drift[/]" if column.get("drifted") else "ok"
            console.print(f"    {flag}  {escape(_column_text(column))}")


def _column_text(column: dict[str, object]) -> str:
    score = column.get("score")
    value = f"{score:.3g}" if isinstance(score, float) else str(score)
    threshold = column.get("threshold")
    return f"{column.get('column')}: {column.get('method')} {value} (threshold {threshold})"
