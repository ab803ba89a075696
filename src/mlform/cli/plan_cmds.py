"""The read-only commands: ``validate``, ``plan``, ``graph`` and ``refresh``.

Thin shells over :mod:`mlform.api`; heavy modules are imported inside the commands so
that ``mlform --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mlform.cli.base import Globals, OverridesArg, StackOpt, _exit, _run, _usage


def validate(stack: StackOpt = None, overrides: OverridesArg = None) -> None:
    """Validate the config, references and dependency graph."""
    from mlform import api
    from mlform.cli.console import out, print_diagnostics

    warnings = _run(lambda: api.validate(Globals.project, stack, overrides or []))
    print_diagnostics(warnings)
    out().print("[green]The configuration is valid.[/]")


def plan(
    stack: StackOpt = None,
    overrides: OverridesArg = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", help="Save the plan to apply later.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text, json or markdown.")] = "text",
    detailed: Annotated[
        bool, typer.Option("--detailed", help="Show unchanged objects and every field.")
    ] = False,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 0: no changes, 1: error, 2: changes.")
    ] = False,
    destroy: Annotated[bool, typer.Option("--destroy", help="Plan to destroy everything.")] = False,
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh",
            help="Re-hash data sources fully and ask the infrastructure engine what is live.",
        ),
    ] = False,
    lock: Annotated[
        bool, typer.Option("--lock/--no-lock", help="Read the state under the state lock.")
    ] = True,
    lock_timeout: Annotated[float, typer.Option(help="Seconds to wait for the state lock.")] = 0.0,
) -> None:
    """Show what apply would change, and why."""
    from mlform import api
    from mlform.cli.console import out, print_diagnostics

    if fmt not in ("text", "json", "markdown"):
        _usage(f"unknown --format {fmt!r}: use text, json or markdown")
    result = _run(
        lambda: api.plan(
            Globals.project,
            stack,
            overrides or [],
            destroy=destroy,
            refresh=refresh,
            lock=lock,
            lock_timeout=lock_timeout,
        )
    )
    print_diagnostics(result.diagnostics)
    text = render_plan(result.plan, fmt, detailed)
    if fmt == "text":
        out().print(text, markup=False, highlight=False, end="")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if out_file is not None:
        _run(lambda: api.save_plan(result, out_file))
        if fmt == "text":
            out().print(
                f"\nSaved the plan to {out_file}. Apply exactly this plan with: "
                f"mlform apply {out_file}"
            )
    if detailed_exitcode and result.plan.has_changes:
        _exit(2)


def graph(
    stack: StackOpt = None,
    overrides: OverridesArg = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="mermaid or dot.")] = "mermaid",
    with_plan: Annotated[
        bool, typer.Option("--plan", help="Colour nodes by planned action.")
    ] = False,
) -> None:
    """Print the dependency graph as Mermaid or Graphviz DOT text."""
    from mlform import api

    text = _run(
        lambda: api.graph(Globals.project, stack, overrides or [], fmt=fmt, with_plan=with_plan)
    )
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def refresh(
    stack: StackOpt = None,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 0: no drift, 1: error, 2: drift.")
    ] = False,
) -> None:
    """Ask the providers what is live now and report recorded objects that drifted."""
    from rich.markup import escape

    from mlform import api
    from mlform.cli.console import out, print_diagnostics

    result = _run(lambda: api.refresh(Globals.project, stack))
    print_diagnostics(result.diagnostics)
    for item in result.drifted:
        out().print(f"[yellow]drift[/] {item.address}: {escape(item.detail)}")
    if result.drifted:
        out().print(
            f"\n{len(result.drifted)} of {result.checked} recorded objects drifted. "
            "Run `mlform plan --refresh` to see the repair, then `mlform apply`."
        )
    else:
        out().print(f"No drift: {result.checked} recorded objects match what is live.")
    if detailed_exitcode and result.drifted:
        _exit(2)


def render_plan(plan: Any, fmt: str, detailed: bool) -> str:
    from mlform.cli.console import color_enabled, out

    if fmt == "json":
        from mlform.plan.render.json import render_json

        return render_json(plan)
    if fmt == "markdown":
        from mlform.plan.render.markdown import render_markdown

        return render_markdown(plan)
    from mlform.plan.render.human import render_human

    return render_human(
        plan,
        detailed=detailed,
        color=color_enabled() and out().is_terminal,
        width=max(80, min(out().width, 140)),
    )
