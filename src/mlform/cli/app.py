"""``mlform``: the command-line entry point.

Every command is a thin shell over :mod:`mlform.api`: parse arguments, call the
library, render the result. Heavy modules (Hydra, pydantic models, DuckDB) are
imported inside the commands so that ``mlform --help`` stays fast.

The commands live in :mod:`mlform.cli.plan_cmds`, :mod:`mlform.cli.apply_cmds`,
:mod:`mlform.cli.state_cmds` and :mod:`mlform.cli.policy_cmd`; this module puts
them together, in the order ``mlform --help`` lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlform import __version__
from mlform.cli import apply_cmds, doctor_cmd, fit_cmd, plan_cmds
from mlform.cli.base import Globals, _exit, _run, _usage
from mlform.cli.models_cmds import models_app
from mlform.cli.models_cmds import register_commands as register_model_commands
from mlform.cli.monitor_cmds import register_commands as register_monitor_commands
from mlform.cli.policy_cmd import policy_app
from mlform.cli.rollout_cmds import register_commands as register_rollout_commands
from mlform.cli.serve_cmd import register_commands as register_serve_commands
from mlform.cli.state_cmds import state_app

# Re-exported: mlform.cli.policy_cmd imports the shared helpers from here.
__all__ = ["Globals", "_exit", "_run", "_usage", "app", "main"]

app = typer.Typer(
    name="mlform",
    help="Plan and apply whole ML systems declared in Hydra YAML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(state_app, name="state")
app.add_typer(policy_app, name="policy")


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


def version() -> None:
    """Print the mlform version."""
    typer.echo(f"mlform {__version__}")


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


for _command in (
    version,
    init,
    plan_cmds.validate,
    plan_cmds.plan,
    apply_cmds.apply,
    apply_cmds.destroy,
    plan_cmds.graph,
    plan_cmds.refresh,
    apply_cmds.rollback,
    doctor_cmd.doctor,
):
    app.command()(_command)
register_model_commands(app)  # runs, models, lineage
fit_cmd.register_commands(models_app)  # models fit (what a training Job runs)
register_rollout_commands(app)  # rollout status|promote|abort
register_serve_commands(app)  # serve
register_monitor_commands(app)  # monitor run|status|history


def main() -> None:
    app()


if __name__ == "__main__":
    main()
