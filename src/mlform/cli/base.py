"""What every command shares: global options, common arguments and the error boundary.

The command modules (:mod:`mlform.cli.plan_cmds`, :mod:`mlform.cli.apply_cmds`,
:mod:`mlform.cli.state_cmds`, :mod:`mlform.cli.policy_cmd`) import from here;
:mod:`mlform.cli.app` puts them together into the ``mlform`` Typer app.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer

T = TypeVar("T")


class Globals:
    project: Path = Path(".")


StackOpt = Annotated[
    str | None,
    typer.Option(
        "--stack",
        "-s",
        help="Stack overlay from stacks/ (dev, staging, prod…).",
        envvar="MLFORM_STACK",
    ),
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Hydra-syntax overrides, e.g. models.churn.trainer.epochs=20", show_default=False
    ),
]


def _run(fn: Callable[[], T]) -> T:
    """The error boundary of every command: diagnostics and a clean exit, never a traceback."""
    from mlform.cli.console import err, print_diagnostics
    from mlform.errors import DiagnosticsError, MlformError

    try:
        return fn()
    except DiagnosticsError as exc:
        print_diagnostics(exc.diagnostics)
        _exit(1)
    except MlformError as exc:
        from rich.markup import escape

        err().print(f"[bold red]Error:[/] {escape(str(exc))}")
        _exit(1)
    except KeyboardInterrupt:
        err().print("[yellow]Interrupted.[/]")
        _exit(130)
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except Exception as exc:  # the outermost boundary: a bug, reported as one
        if os.environ.get("MLFORM_DEBUG"):
            raise
        err().print(
            f"[bold red]Internal error:[/] {type(exc).__name__}: {exc}\n"
            "This is a bug in mlform. Re-run with MLFORM_DEBUG=1 for the traceback and report it."
        )
        _exit(1)


def _exit(code: int) -> NoReturn:
    raise typer.Exit(code)


def _usage(message: str) -> NoReturn:
    from mlform.cli.console import err

    err().print(f"[bold red]Error:[/] {message}")
    _exit(2)
