"""``mlform``: the command-line entry point.

Every command is a thin shell over :mod:`mlform.api`: parse arguments, call the
library, render the result. Heavy modules (Hydra, pydantic models, DuckDB) are
imported inside the commands so that ``mlform --help`` stays fast.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from mlform import __version__
from mlform.cli.policy_cmd import policy_app

app = typer.Typer(
    name="mlform",
    help="Plan and apply whole ML systems declared in Hydra YAML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
state_app = typer.Typer(help="Inspect and manage recorded state.", no_args_is_help=True)
app.add_typer(state_app, name="state")
app.add_typer(policy_app, name="policy")

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


@app.callback()
def _main(
    project: Annotated[
        Path, typer.Option("--project", "-C", help="Project directory (holds configs/).")
    ] = Path("."),
    no_color: Annotated[
        bool, typer.Option("--no-color", help="Disable colour (also NO_COLOR).")
    ] = False,
) -> None:
    Globals.project = project
    if no_color:
        from mlform.cli.console import disable_color

        disable_color()


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


def _split_args(args: list[str] | None) -> tuple[str | None, list[str]]:
    """A saved plan file among positional args (a path that is not an override)."""
    plan_file, overrides = None, []
    for arg in args or []:
        if "=" not in arg and not arg.startswith(("~", "+")) and plan_file is None:
            plan_file = arg
        else:
            overrides.append(arg)
    return plan_file, overrides


# -- commands ---------------------------------------------------------------------------


@app.command()
def version() -> None:
    """Print the mlform version."""
    typer.echo(f"mlform {__version__}")


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Directory to create the project in.")],
    name: Annotated[
        str | None, typer.Option(help="Project name (default: directory name).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite existing files.")] = False,
) -> None:
    """Scaffold a new project (configs/, stacks/) from the built-in templates."""
    from mlform import api
    from mlform.cli.console import out

    written = _run(lambda: api.init(directory, name=name, force=force))
    for path in written:
        out().print(f"  [green]created[/] {path}")
    out().print(f"\nNext: cd {directory} && mlform plan -s dev")


@app.command()
def validate(stack: StackOpt = None, overrides: OverridesArg = None) -> None:
    """Validate the config, references and dependency graph."""
    from mlform import api
    from mlform.cli.console import out, print_diagnostics

    warnings = _run(lambda: api.validate(Globals.project, stack, overrides or []))
    print_diagnostics(warnings)
    out().print("[green]The configuration is valid.[/]")


@app.command()
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
            "--refresh", help="Re-hash data sources fully instead of trusting size/mtime."
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
    text = _render_plan(result.plan, fmt, detailed)
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


@app.command()
def apply(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            help="A saved plan file, and/or Hydra-syntax overrides.", show_default=False
        ),
    ] = None,
    stack: StackOpt = None,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", "-y", help="Skip the confirmation.")
    ] = False,
    parallelism: Annotated[int, typer.Option(min=1, max=64, help="Steps run at once.")] = 4,
    json_lines: Annotated[
        bool, typer.Option("--json", help="Stream one JSON event per line.")
    ] = False,
    lock_timeout: Annotated[float, typer.Option(help="Seconds to wait for the state lock.")] = 0.0,
) -> None:
    """Apply the changes of a fresh plan (after confirmation) or of a saved plan file."""
    plan_file, overrides = _split_args(args)
    if plan_file is not None and overrides:
        _usage("a saved plan is applied exactly as planned: drop the overrides, or plan again")
    _apply(
        stack,
        overrides,
        plan_file,
        destroy=False,
        auto_approve=auto_approve or plan_file is not None,
        parallelism=parallelism,
        json_lines=json_lines,
        lock_timeout=lock_timeout,
    )


@app.command()
def destroy(
    stack: StackOpt = None,
    overrides: OverridesArg = None,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", "-y", help="Skip the confirmation.")
    ] = False,
    parallelism: Annotated[int, typer.Option(min=1, max=64)] = 4,
    json_lines: Annotated[
        bool, typer.Option("--json", help="Stream one JSON event per line.")
    ] = False,
    lock_timeout: Annotated[float, typer.Option(help="Seconds to wait for the state lock.")] = 0.0,
) -> None:
    """Destroy every object recorded in the stack's state."""
    _apply(
        stack,
        overrides or [],
        None,
        destroy=True,
        auto_approve=auto_approve,
        parallelism=parallelism,
        json_lines=json_lines,
        lock_timeout=lock_timeout,
    )


@app.command()
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


@app.command()
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


@app.command()
def rollback(
    to: Annotated[
        int, typer.Option("--to", help="State serial to go back to (see `mlform state history`).")
    ],
    stack: StackOpt = None,
    do_apply: Annotated[
        bool, typer.Option("--apply", help="Apply the rollback plan, not just show it.")
    ] = False,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", "-y")] = False,
) -> None:
    """Plan (and with --apply, apply) a return to the objects recorded at a serial."""
    from mlform import api
    from mlform.cli.console import out

    confirm = None if auto_approve else _confirm
    view_json = False
    from mlform.cli.apply_view import make_view

    with make_view(view_json) as view:
        result = _run(
            lambda: api.rollback(
                Globals.project,
                stack,
                to_serial=to,
                apply_changes=do_apply,
                confirm=confirm,
                sink=view,
            )
        )
    out().print(_render_plan(result.plan, "text", False), markup=False, highlight=False, end="")
    if not do_apply and result.plan.has_changes:
        out().print(f"\nRun `mlform rollback --to {to} --apply` to apply this rollback plan.")
    _finish_apply(result)


# -- state ---------------------------------------------------------------------------------


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


# -- helpers -------------------------------------------------------------------------------


def _apply(
    stack: str | None,
    overrides: list[str],
    plan_file: str | None,
    *,
    destroy: bool,
    auto_approve: bool,
    parallelism: int,
    json_lines: bool,
    lock_timeout: float,
) -> None:
    from mlform import api
    from mlform.cli.apply_view import make_view

    if not auto_approve and (json_lines or not _interactive()):
        _usage("apply needs confirmation: pass --auto-approve, or apply a saved plan file")
    confirm = None if auto_approve else _confirm
    if plan_file is not None and not Path(plan_file).exists():
        _usage(f"no such plan file: {plan_file} (overrides look like key=value)")
    with make_view(json_lines) as view, _graceful_interrupt() as stop:
        result = _run(
            lambda: api.apply(
                Globals.project,
                stack,
                overrides,
                plan_file=plan_file,
                destroy=destroy,
                parallelism=parallelism,
                lock_timeout=lock_timeout,
                confirm=confirm,
                sink=view,
                should_stop=stop.is_set,
            )
        )
    if json_lines:
        if not result.ok:
            _exit(1)
        return
    _finish_apply(result)


@contextmanager
def _graceful_interrupt() -> Iterator[threading.Event]:
    """First Ctrl-C: finish the running steps and start no new ones. Second: abort."""
    stop = threading.Event()

    def handler(_signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        from mlform.cli.console import err

        err().print(
            "[yellow]Interrupt received: finishing the running steps and starting no new "
            "ones (press Ctrl-C again to abort).[/]"
        )

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _finish_apply(result: Any) -> None:
    from mlform.cli.console import out, print_diagnostics

    print_diagnostics(result.warnings)
    if result.cancelled:
        out().print("Apply cancelled. Nothing changed.")
        return
    if result.outcome is None:
        if not result.plan.has_changes:
            out().print("No changes. The system matches the configuration.")
        return
    print_diagnostics(result.outcome.diagnostics)
    if not result.ok:
        _exit(1)


def _confirm(plan: Any) -> bool:
    from mlform.cli.console import out

    out().print(_render_plan(plan, "text", False), markup=False, highlight=False, end="")
    answer = typer.prompt(
        "\nDo you want to perform these actions? Only 'yes' will be accepted",
        default="",
        show_default=False,
    )
    return bool(answer.strip() == "yes")


def _render_plan(plan: Any, fmt: str, detailed: bool) -> str:
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


def _interactive() -> bool:
    from mlform.cli.console import stdin_is_interactive

    return stdin_is_interactive()


def _usage(message: str) -> NoReturn:
    from mlform.cli.console import err

    err().print(f"[bold red]Error:[/] {message}")
    _exit(2)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
