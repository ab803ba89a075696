"""``mlform models fit``: train one model here and write it to a location, for a training Job.

This is what a model's training Job runs in the cluster (``models.NAME.training``,
:mod:`mlform.providers.models_cluster`); ``mlform apply`` then evaluates, gates and
registers what it wrote. It can be run by hand to reproduce a Job's run. The library call
is :func:`mlform.providers.models_fit.fit_to`; progress goes to stderr (the pod's log).
Exit codes: 0 trained (and written, on rank 0), 1 the model could not be trained.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mlform.cli.base import Globals, OverridesArg, StackOpt, _run, _usage

__all__ = ["fit", "register_commands"]


def register_commands(app: typer.Typer) -> None:
    """Add ``fit`` to ``mlform models`` (``app`` is the ``models`` sub-app)."""
    app.command("fit")(fit)


def fit(
    name: Annotated[str, typer.Argument(help="The model: its name or address (model.NAME).")],
    run_id: Annotated[
        str, typer.Option("--run-id", help="The training run's id (names the run's files).")
    ],
    to: Annotated[
        str,
        typer.Option(
            "--to", help="Where to write the trained model and result.json (file:///dir)."
        ),
    ],
    stack: StackOpt = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="The stack's state directory (default: the backend's, under the project).",
        ),
    ] = None,
    expect: Annotated[
        str | None,
        typer.Option(
            "--expect-fingerprints",
            envvar="MLFORM_EXPECTED_FINGERPRINTS",
            help="JSON {name: sha256:...} the model must match (set by the training Job).",
        ),
    ] = None,
    overrides: OverridesArg = None,
) -> None:
    """Train one model of the stack and write it to --to (what a training Job runs).

    OVERRIDES are apply's command-line overrides (the Job passes them after --), so the
    model composes as apply composed it.
    """
    from rich.markup import escape

    from mlform.cli.console import err
    from mlform.providers.models_fit import fit_to

    expected: dict[str, str] = {}
    if expect:
        try:
            expected = {str(k): str(v) for k, v in dict(json.loads(expect)).items()}
        except (ValueError, TypeError):
            _usage("--expect-fingerprints must be a JSON object of fingerprints")

    def progress(message: str, fraction: float | None) -> None:
        done = "" if fraction is None else f" ({fraction:.0%})"
        line = f"model.{escape(name.removeprefix('model.'))}: {escape(message)}{done}"
        err().print(line, soft_wrap=True)

    result = _run(
        lambda: fit_to(
            name,
            project_dir=Globals.project,
            stack=stack,
            run_id=run_id,
            to=to,
            state_dir=state_dir,
            expected=expected,
            overrides=tuple(overrides or ()),
            progress=progress,
        )
    )
    if result is None:
        err().print("trained (not rank 0: rank 0 writes the model)")
    else:
        err().print(f"trained {escape(result.address)}: wrote {escape(str(result.directory))}")
