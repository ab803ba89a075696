"""``mlform doctor``: check the toolchain and the project, and say how to fix what is missing."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from mlform.cli.base import Globals, StackOpt, _exit, _run

if TYPE_CHECKING:
    from mlform.doctor import Report

_STYLES = {"ok": "green", "warning": "yellow", "missing": "bold red", "wrong_version": "bold red"}


def doctor(
    stack: StackOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Write the checks as one JSON document.")
    ] = False,
) -> None:
    """Check Python, the Pulumi CLI and plugins, Go and the state directory (exit 1: missing)."""
    from mlform.doctor import run_checks

    report = _run(lambda: run_checks(Globals.project, stack))
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        _render(report)
    _exit(0 if report.ok else 1)


def _render(report: Report) -> None:
    from rich.markup import escape

    from mlform.cli.console import out

    console = out()
    width = max(len(c.name) for c in report.checks)
    for check in report.checks:
        status = check.status.value
        label = f"[{_STYLES[status]}]{status:<13}[/]"
        console.print(
            f"  {label} {escape(check.name.ljust(width))}  {escape(check.found)}", soft_wrap=True
        )
        if check.fix is not None and check.status.value != "ok":
            console.print(
                f"  {'':<13} {'':<{width}}  [bold]fix:[/] {escape(check.fix)}",
                soft_wrap=True,
            )
    console.print()
    problems = report.problems
    if not problems:
        console.print("[green]Everything mlform needs is present.[/]")
        return
    noun = "problem" if len(problems) == 1 else "problems"
    console.print(f"[bold red]{len(problems)} {noun}[/]; run the fix commands above.")
