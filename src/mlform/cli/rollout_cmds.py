"""``mlform rollout status|promote|abort``: watch and steer a deployment's rollout.

Like ``kubectl argo rollouts``: ``status`` reads the rollout journal (every step, check
and event); ``promote`` skips the remaining steps (or ends a blue-green preview) and
``abort`` sends all traffic back to the stable version. When an ``mlform apply`` is
driving the rollout, promote and abort are left for it to act on at its next check.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from mlform.cli.base import Globals, StackOpt, _exit, _run

if TYPE_CHECKING:
    from mlform.rollout.journal import RolloutRecord

__all__ = ["register_commands", "rollout_app"]

rollout_app = typer.Typer(help="Show, promote or abort deployment rollouts.", no_args_is_help=True)

DeploymentArg = Annotated[
    str, typer.Argument(help="The deployment: its name or address (deployment.NAME).")
]


def register_commands(app: typer.Typer) -> None:
    """Add ``rollout`` to ``app``."""
    app.add_typer(rollout_app, name="rollout")


@rollout_app.command("status")
def status(
    deployment: Annotated[
        str | None, typer.Argument(help="One deployment (default: all with a rollout record).")
    ] = None,
    stack: StackOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Write JSON to stdout.")] = False,
    events: Annotated[int, typer.Option(help="How many recent events to show.", min=0)] = 8,
) -> None:
    """Show each deployment's rollout: phase, versions, weight, analysis checks, events."""
    from mlform import api
    from mlform.cli.console import out

    records = _run(lambda: api.rollout_status(deployment, Globals.project, stack))
    if as_json:
        sys.stdout.write(json.dumps([r.to_dict() for r in records], indent=2) + "\n")
        return
    if not records:
        out().print("No rollouts on record (no deployment applied yet).")
        return
    for record in records:
        _print_record(record, events)


def _print_record(record: RolloutRecord, events: int) -> None:
    from rich.markup import escape

    from mlform.cli.console import out

    colour = {"healthy": "green", "aborted": "red", "paused": "yellow"}.get(record.phase, "cyan")
    console = out()
    console.print(
        f"[bold]{escape(record.deployment)}[/]  {record.strategy}  [{colour}]{record.phase}[/]"
    )
    stable = ", ".join(
        f"{s.ref} ({s.weight}%)" if len(record.stable) > 1 else s.ref for s in record.stable
    )
    console.print(f"  stable:  {escape(stable or '—')}")
    if record.canary is not None:
        label = "aborted" if record.phase == "aborted" else "canary"
        if record.strategy == "blue_green" and record.pending:
            label = "preview"
        weight = f" at {record.weight}% (step {record.step + 1})" if record.pending else ""
        console.print(f"  {label}:  {escape(record.canary.ref)}{weight}")
    if record.mirror is not None:
        console.print(f"  shadow:  {escape(record.mirror.ref)}")
    if record.checks:
        console.print(f"  analysis: {len(record.checks)} checks, {record.failed_checks} failed")
        for check in record.checks[-3:]:
            verdict = "[green]passed[/]" if check.get("passed") else "[red]failed[/]"
            values = ", ".join(
                f"{k} {'n/a' if v is None else f'{v:.4g}'}"
                for k, v in dict(check.get("values") or {}).items()
            )
            console.print(f"    {check.get('time')}  {verdict}  {escape(values)}")
    for event in record.events[-events:] if events else ():
        console.print(f"  {event.get('time')}  {escape(str(event.get('message')))}")
    console.print()


def _act(deployment: str, what: str, stack: str | None) -> None:
    from rich.markup import escape

    from mlform import api
    from mlform.cli.console import out, print_diagnostics
    from mlform.events import Event, StepProgress

    def show(event: Event) -> None:
        if isinstance(event, StepProgress):
            out().print(f"  {escape(event.message)}")

    result = _run(lambda: api.rollout_act(deployment, what, Globals.project, stack, sink=show))
    if result.outcome == "requested":
        out().print(
            f"{what.capitalize()} requested for {escape(result.deployment)}: the `mlform apply` "
            "driving its rollout acts on it at its next check (`mlform rollout status` shows it)."
        )
        return
    if result.diagnostics:
        print_diagnostics(list(result.diagnostics))
        _exit(1)
    out().print(f"{escape(result.deployment)}: {escape(result.record.message)}")


@rollout_app.command("promote")
def promote(deployment: DeploymentArg, stack: StackOpt = None) -> None:
    """Promote the new version now: skip the remaining steps and pauses."""
    _act(deployment, "promote", stack)


@rollout_app.command("abort")
def abort(deployment: DeploymentArg, stack: StackOpt = None) -> None:
    """Abort the rollout: all traffic back to the stable version, the new one stopped."""
    _act(deployment, "abort", stack)
