"""``mlform serve``: serve a registered model version over the Open Inference Protocol (V2).

:func:`register_commands` adds the command to the ``mlform`` app; the server itself is
:mod:`mlform.serving.server`. Without ``--registry`` the registry is the one of the stack
(``-s``) of the project (``-C``): ``<state dir>/registry``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlform.cli.base import Globals, StackOpt, _exit, _run, _usage

if TYPE_CHECKING:
    import socket

    from mlform.serving.loaded_model import LoadedModel

__all__ = ["register_commands", "serve"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def register_commands(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command("serve")(serve)


def serve(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="REF",
            help="The model version: model.diagnosis@v2, model.diagnosis@champion, "
            "diagnosis@v2, or model.diagnosis (its champion).",
        ),
    ],
    registry: Annotated[
        Path | None,
        typer.Option(
            "--registry",
            help="The registry root (<state dir>/registry); default: the registry of the "
            "stack (-s) of the project (-C).",
        ),
    ] = None,
    stack: StackOpt = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help="The model name in V2 URLs (default: the model's name, e.g. diagnosis)."
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: a free one).")
    ] = 8080,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=256, help="Worker processes.")
    ] = 1,
    prediction_log: Annotated[
        Path | None,
        typer.Option(
            "--prediction-log",
            help="Directory for the prediction log (one JSON line per request); off when "
            "not given.",
        ),
    ] = None,
    project_dir: Annotated[
        Path | None,
        typer.Option(
            "--project-dir",
            help="Directory whose Python modules the model's code imports (default: the "
            "project, -C).",
        ),
    ] = None,
    max_body_mb: Annotated[
        float, typer.Option("--max-body-mb", help="Largest request body accepted, in MiB.")
    ] = 16.0,
) -> None:
    """Serve a model version over HTTP (Open Inference Protocol / KServe V2) until SIGTERM."""
    from mlform.serving.loaded_model import load_model_version
    from mlform.serving.server import ServeOptions, configure_logging
    from mlform.serving.workers import serve as run_server

    if name is not None and not _NAME_RE.match(name):
        _usage(
            f"--name {name!r} cannot be used in URLs: use letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    if not max_body_mb > 0:
        _usage(f"--max-body-mb must be more than 0, not {max_body_mb:g}")
    if registry is not None and not registry.is_dir():
        _usage(
            f"--registry {registry}: no such directory; give the registry root of a stack "
            "(<state dir>/registry, e.g. .mlform/stacks/dev/registry)"
        )
    if prediction_log is not None and prediction_log.exists() and not prediction_log.is_dir():
        _usage(f"--prediction-log {prediction_log} is a file; give a directory")
    project = project_dir if project_dir is not None else Globals.project
    if project_dir is not None and not project_dir.is_dir():
        _usage(f"--project-dir {project_dir}: no such directory")
    configure_logging()

    def load_and_bind() -> tuple[LoadedModel, socket.socket]:
        root = registry if registry is not None else _stack_registry(stack)
        model = load_model_version(root, ref, project_dir=project)
        from mlform.serving.workers import bind_socket

        return model, bind_socket(host, port)

    model, sock = _run(load_and_bind)
    options = ServeOptions(
        host=host,
        port=port,
        workers=workers,
        name=name,
        prediction_log=prediction_log,
        max_body_bytes=max(1, int(max_body_mb * 1024 * 1024)),
    )
    code = _run(lambda: run_server(model, options, sock=sock))
    if code:
        _exit(code)


def _stack_registry(stack: str | None) -> Path:
    from mlform import api, workspace

    return workspace.state_dir(api.load(Globals.project, stack)) / "registry"
