"""``mlform runs``, ``mlform models`` and ``mlform lineage``: the training runs, the model
registry and the lineage records of a stack. Each has ``--json``; the library calls are in
:mod:`mlform.registry.queries`. :func:`register_commands` adds them to the ``mlform`` app.

``mlform models pull`` and ``push`` copy one version between a registry and an artifact
store (:mod:`mlform.registry.transfer`); ``pull`` is what the model-pull init container of
every serving pod on Kubernetes runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlform.cli.base import Globals, StackOpt, _run, _usage

if TYPE_CHECKING:
    from rich.table import Table

    from mlform.registry.queries import VersionDetails
    from mlform.registry.runs import RunRecord
    from mlform.registry.transfer import StoreURI, Transfer

__all__ = ["lineage", "models_app", "register_commands", "runs_app"]

runs_app = typer.Typer(help="List, show and compare training runs.", no_args_is_help=True)
models_app = typer.Typer(
    help="Inspect the model registry; pull and push versions to artifact stores.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Write JSON to stdout.")]


def register_commands(app: typer.Typer) -> None:
    """Add ``runs``, ``models`` and ``lineage`` to ``app``."""
    app.add_typer(runs_app, name="runs")
    app.add_typer(models_app, name="models")
    app.command("lineage")(lineage)


def _write_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(*columns: str) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


# -- runs ----------------------------------------------------------------------------


@runs_app.command("list")
def runs_list(
    address: Annotated[
        str | None, typer.Argument(help="Only the runs of this model, e.g. model.churn.")
    ] = None,
    stack: StackOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List recorded training runs, oldest first."""
    from rich.markup import escape

    from mlform import api
    from mlform.cli.console import out

    records = _run(lambda: api.runs(Globals.project, stack, address))
    if as_json:
        _write_json([r.to_dict() for r in records])
        return
    if not records:
        out().print("No training runs recorded" + (f" for {escape(address)}." if address else "."))
        return
    table = _table("RUN", "MODEL", "STATUS", "STARTED", "DURATION", "VERSION")
    for r in records:
        status = {"succeeded": "green", "failed": "red"}.get(r.status, "yellow")
        table.add_row(
            escape(r.run_id),
            escape(r.address),
            f"[{status}]{r.status}[/]",
            escape(r.started_at),
            "—" if r.duration_s is None else f"{r.duration_s:.1f} s",
            escape(r.version or "—"),
        )
    out().print(table)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="A run id from `mlform runs list`.")],
    stack: StackOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one training run: params, metrics, per-epoch metrics, hardware."""
    from mlform import api

    record = _run(lambda: api.run_show(run_id, Globals.project, stack))
    if as_json:
        _write_json(record.to_dict())
        return
    _print_run(record)


def _print_run(r: RunRecord) -> None:
    from rich.markup import escape

    from mlform.cli.console import out

    console = out()
    console.print(f"[bold]Run {escape(r.run_id)}[/] ({escape(r.address)}): {r.status}")
    fields = [
        ("started", r.started_at),
        ("finished", r.finished_at),
        ("duration", None if r.duration_s is None else f"{r.duration_s:.2f} s"),
        ("version", r.version),
        ("git commit", r.git_commit),
        ("error", r.error),
    ]
    for label, value in fields:
        if value is not None:
            console.print(f"  {label:<11} {escape(str(value))}")
    for title, section in (
        ("Params", r.params),
        ("Metrics", r.metrics),
        ("Hardware", r.hardware),
        ("Fingerprints", r.fingerprints),
    ):
        if section:
            table = _table(title.upper(), "VALUE")
            for key, item in section.items():
                table.add_row(escape(str(key)), escape(_num(item)))
            console.print()
            console.print(table)
    if r.epochs:
        names = list(dict.fromkeys(k for e in r.epochs for k in dict(e.get("metrics", {}))))
        table = _table("EPOCH", *[n.upper() for n in names], "SECONDS")
        for e in r.epochs:
            metrics = dict(e.get("metrics", {}))
            table.add_row(
                str(e.get("epoch")),
                *[_num(metrics.get(n)) for n in names],
                _num(e.get("seconds")),
            )
        console.print()
        console.print(table)


@runs_app.command("compare")
def runs_compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids.")],
    stack: StackOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the params, metrics and hardware that differ between runs."""
    from rich.markup import escape

    from mlform import api
    from mlform.cli.console import out

    rows = _run(lambda: api.runs_compare(run_ids, Globals.project, stack))
    if as_json:
        _write_json({"runs": run_ids, "rows": [{"key": r.key, "values": r.values} for r in rows]})
        return
    if not rows:
        out().print("The runs do not differ in params, metrics or hardware.")
        return
    table = _table("KEY", *[escape(r[:8]) for r in run_ids])
    for row in rows:
        table.add_row(escape(row.key), *[escape(_num(row.values[r])) for r in run_ids])
    out().print(table)


# -- models --------------------------------------------------------------------------


@models_app.command("list")
def models_list(stack: StackOpt = None, as_json: JsonOpt = False) -> None:
    """List registered models with their latest version and aliases."""
    from rich.markup import escape

    from mlform import api
    from mlform.cli.console import out

    summaries = _run(lambda: api.models(Globals.project, stack))
    if as_json:
        _write_json([s.to_dict() for s in summaries])
        return
    if not summaries:
        out().print("No models registered (nothing trained yet).")
        return
    table = _table("MODEL", "VERSIONS", "LATEST", "STATUS", "ALIASES")
    for s in summaries:
        aliases = ", ".join(f"{a} -> v{n}" for a, n in sorted(s.aliases.items())) or "—"
        status = "green" if s.latest_status == "accepted" else "red"
        count = f"{s.versions}" + (f" ({s.rejected} rejected)" if s.rejected else "")
        table.add_row(
            escape(s.address),
            count,
            escape(s.latest),
            f"[{status}]{s.latest_status}[/]",
            escape(aliases),
        )
    out().print(table)


@models_app.command("show")
def models_show(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="ADDRESS[@vN|@alias]",
            help="model.churn (its champion, else the latest), model.churn@v3, "
            "model.churn@champion or model.churn@latest.",
        ),
    ],
    stack: StackOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a model version: status, aliases, metrics, gates, fairness, digest, card."""
    from mlform import api

    details = _run(lambda: api.model_show(ref, Globals.project, stack))
    if as_json:
        _write_json(details.to_dict())
        return
    _print_version(details)


def _print_version(d: VersionDetails) -> None:
    from rich.markup import escape

    from mlform.cli.console import out

    console = out()
    mv = d.version
    colour = "green" if mv.accepted else "red"
    aliases = f"  aliases: {', '.join(d.aliases)}" if d.aliases else ""
    console.print(f"[bold]{escape(mv.ref)}[/]  [{colour}]{mv.status}[/]{escape(aliases)}")
    integrity = {None: "", True: " (verified)", False: " [red](MISSING OR MODIFIED)[/]"}
    lines = [
        ("digest", escape(mv.digest or "none") + integrity[d.artifact_verified]),
        ("registered", escape(mv.created_at)),
        ("run", escape(mv.run_id or "—")),
        ("card", escape(str(d.card_path or "none"))),
        ("lineage", escape(str(d.lineage_path or "none"))),
        ("reference", escape(str(d.reference_path or "none"))),
    ]
    for label, value in lines:
        console.print(f"  {label:<11} {value}")
    if mv.reasons:
        console.print("\n[bold red]Rejected because:[/]")
        for reason in mv.reasons:
            console.print(f"  - {escape(reason)}")
    if mv.metrics:
        table = _table("METRIC", "VALUE")
        for name, metric in mv.metrics.items():
            table.add_row(escape(name), _num(metric))
        console.print()
        console.print(table)
    if mv.gate_results:
        table = _table("GATE", "METRIC", "REQUIRED", "VALUE", "RESULT")
        for g in mv.gate_results:
            result = "[green]pass[/]" if g.get("passed") else "[red]FAIL[/]"
            table.add_row(
                escape(str(g.get("name"))),
                escape(str(g.get("metric"))),
                escape(f"{g.get('op')} {_num(g.get('threshold'))}"),
                _num(g.get("value")),
                result,
            )
        console.print()
        console.print(table)
    if mv.fairness:
        table = _table("SENSITIVE", "RATIO", "REQUIRED", "RATES", "RESULT")
        for f in mv.fairness:
            rates = ", ".join(f"{g}: {_num(r)}" for g, r in dict(f.get("rates", {})).items())
            small = list(f.get("small_groups") or [])
            if small:
                rates += f" (too few rows: {', '.join(small)})"
            table.add_row(
                escape(str(f.get("column"))),
                _num(f.get("ratio")),
                f">= {_num(f.get('min_ratio'))}",
                escape(rates),
                "[green]pass[/]" if f.get("passed") else "[red]FAIL[/]",
            )
        console.print()
        console.print(table)
    if d.alias_history:
        console.print("\n[bold]Alias history[/]")
        for m in d.alias_history:
            before = "—" if m.from_version is None else f"v{m.from_version}"
            after = "removed" if m.to_version is None else f"v{m.to_version}"
            note = f"  {m.reason}" if m.reason else ""
            console.print(
                f"  {escape(m.time)}  {escape(m.alias)}: {before} -> {after}{escape(note)}"
            )


# -- pull and push -------------------------------------------------------------------

TransferRef = Annotated[
    str,
    typer.Argument(
        metavar="REF",
        help="The version: model.churn@v3 (or an alias, model.churn@champion, resolved in "
        "the source).",
    ),
]


def _store(uri: str, option: str) -> StoreURI:
    """The parsed store URI; a malformed or unsupported one is a usage error (exit 2)."""
    from mlform.registry.transfer import StoreURI, StoreURIError

    try:
        return StoreURI.parse(uri, option=option)
    except StoreURIError as exc:
        _usage(str(exc))


def _report(transfer: Transfer, verb: str, as_json: bool) -> None:
    from rich.markup import escape

    from mlform.cli.console import out

    if as_json:
        _write_json(transfer.to_dict())
        return
    where = f"{escape(transfer.source)} -> {escape(transfer.destination)}"
    if transfer.copied:
        out().print(f"{verb} {escape(transfer.ref)} ({escape(transfer.digest)}): {where}")
    else:
        out().print(
            f"{escape(transfer.ref)} ({escape(transfer.digest)}) is already in "
            f"{escape(transfer.destination)}, verified; nothing copied"
        )


@models_app.command("pull")
def models_pull(
    ref: TransferRef,
    from_store: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="STORE_URI",
            help="The artifact store holding the version: file:///absolute/registry/dir.",
        ),
    ],
    to_dir: Annotated[
        Path,
        typer.Option(
            "--to",
            metavar="DIR",
            help="The registry to copy it into (created if missing), for "
            "`mlform serve REF --registry DIR`.",
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Copy a model version from an artifact store into a local registry, verified."""
    from mlform.registry.transfer import copy_version

    store = _store(from_store, "--from")
    transfer = _run(
        lambda: copy_version(store.path, ref, to_dir, source=store.uri, destination=str(to_dir))
    )
    _report(transfer, "Pulled", as_json)


@models_app.command("push")
def models_push(
    ref: TransferRef,
    to_store: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="STORE_URI",
            help="The artifact store to publish to: file:///absolute/registry/dir.",
        ),
    ],
    registry: Annotated[
        Path | None,
        typer.Option(
            "--registry",
            help="The registry to read (default: the registry of the stack (-s) of the "
            "project (-C)).",
        ),
    ] = None,
    stack: StackOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Publish a model version of the project's registry to an artifact store, verified."""
    from mlform.registry.transfer import copy_version

    store = _store(to_store, "--to")
    if registry is not None and not registry.is_dir():
        _usage(
            f"--registry {registry}: no such directory; give the registry root of a stack "
            "(<state dir>/registry, e.g. .mlform/stacks/dev/registry)"
        )

    def push() -> Transfer:
        root = registry if registry is not None else _stack_registry(stack)
        return copy_version(root, ref, store.path, source=str(root), destination=store.uri)

    _report(_run(push), "Pushed", as_json)


def _stack_registry(stack: str | None) -> Path:
    from mlform import api, workspace

    return workspace.state_dir(api.load(Globals.project, stack)) / "registry"


# -- lineage -------------------------------------------------------------------------


def lineage(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="ADDRESS[@vN|@alias]",
            help="model.churn (its champion, else the latest) or model.churn@v3.",
        ),
    ],
    stack: StackOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the lineage record (an OpenLineage RunEvent) of a model version as JSON."""
    from mlform import api

    record = _run(lambda: api.lineage(ref, Globals.project, stack))
    del as_json  # the record is JSON either way; the flag is accepted for symmetry
    _write_json(record)
