"""The commands that change things: ``apply``, ``destroy`` and ``rollback``.

Each confirms (unless told not to), streams the apply's events to a view, and stops
gracefully on the first Ctrl-C.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from mlform.cli.base import Globals, OverridesArg, StackOpt, _exit, _run, _usage
from mlform.cli.plan_cmds import render_plan


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
    out().print(render_plan(result.plan, "text", False), markup=False, highlight=False, end="")
    if not do_apply and result.plan.has_changes:
        out().print(f"\nRun `mlform rollback --to {to} --apply` to apply this rollback plan.")
    _finish_apply(result)


def _split_args(args: list[str] | None) -> tuple[str | None, list[str]]:
    """A saved plan file among positional args (a path that is not an override)."""
    plan_file, overrides = None, []
    for arg in args or []:
        if "=" not in arg and not arg.startswith(("~", "+")) and plan_file is None:
            plan_file = arg
        else:
            overrides.append(arg)
    return plan_file, overrides


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

    out().print(render_plan(plan, "text", False), markup=False, highlight=False, end="")
    answer = typer.prompt(
        "\nDo you want to perform these actions? Only 'yes' will be accepted",
        default="",
        show_default=False,
    )
    return bool(answer.strip() == "yes")


def _interactive() -> bool:
    from mlform.cli.console import stdin_is_interactive

    return stdin_is_interactive()
