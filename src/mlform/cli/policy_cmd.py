"""``mlform policy check``: evaluate the policies and report in a CI-friendly format.

A thin shell over :func:`mlform.api.policy_check`. Exit codes as conftest: 0 clean,
1 a mandatory violation or a crashed rule (any violation with ``--fail-on-warn``),
1 for a config error (diagnostics on stderr), 2 for a usage error.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlform.policy.render import Format

if TYPE_CHECKING:
    from mlform.policy.model import PolicyReport

policy_app = typer.Typer(
    help="Check the system against its policies (built-in packs, CEL rules, exemptions).",
    no_args_is_help=True,
)


@policy_app.command("check")
def check(
    stack: Annotated[
        str | None,
        typer.Option(
            "--stack",
            "-s",
            help="Stack overlay from stacks/ (dev, staging, prod…).",
            envvar="MLFORM_STACK",
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="Hydra-syntax overrides, e.g. models.churn.trainer.epochs=20", show_default=False
        ),
    ] = None,
    fmt: Annotated[
        Format, typer.Option("--format", "-f", help="text, json, sarif, junit or github.")
    ] = Format.TEXT,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the report to this file instead of stdout."),
    ] = None,
    fail_on_warn: Annotated[
        bool, typer.Option("--fail-on-warn", help="Exit 1 on advisory violations too.")
    ] = False,
    with_plan: Annotated[
        bool,
        typer.Option(
            "--plan/--no-plan",
            help="Also run plan-aware rules against a fresh plan (needs the state backend).",
        ),
    ] = True,
    today: Annotated[
        str | None,
        typer.Option(
            "--today", hidden=True, help="Evaluate as of this date (YYYY-MM-DD), for tests/CI."
        ),
    ] = None,
) -> None:
    """Evaluate the policies; exit 1 on a mandatory violation (0 when clean)."""
    from mlform import api
    from mlform.cli.app import Globals, _exit, _run, _usage
    from mlform.policy.render import render

    as_of = _parse_date(today) if today is not None else None
    if today is not None and as_of is None:
        _usage(f"--today {today!r} is not a date: use YYYY-MM-DD")
    report: PolicyReport = _run(
        lambda: api.policy_check(
            Globals.project, stack, overrides or [], with_plan=with_plan, today=as_of
        )
    )
    text = render(report, fmt, fail_on_warn=fail_on_warn)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        _write(output, text)
        _note(report, output, fmt)
    code = report.exit_code(fail_on_warn=fail_on_warn)
    if code:
        _exit(code)


def _parse_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _write(path: Path, text: str) -> None:
    from mlform.cli.app import _exit
    from mlform.cli.console import err

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        err().print(
            f"Error: cannot write {path}: {exc.strerror or exc}", markup=False, soft_wrap=True
        )
        _exit(1)


def _note(report: PolicyReport, path: Path, fmt: Format) -> None:
    """With --output, the summary line still goes to stderr for the CI log."""
    from mlform.cli.console import err
    from mlform.policy.render.common import summary_line

    err().print(
        f"{summary_line(report)} ({fmt.value} report written to {path})",
        markup=False,
        soft_wrap=True,
    )
