"""The ``data`` provider: load a source, check its schema and freshness, snapshot it.

Applying ``data.NAME`` loads the declared source (:mod:`mlform.providers.sources`),
conforms and checks it against the declared schema, checks freshness (stale data is a
warning, not a failure), and writes a content-addressed Parquet snapshot under
``<artifacts>/data/NAME/<sha12>.parquet`` that downstream feature sets read.

Outputs: ``rows``, ``columns`` ({name: arrow type}), ``content_sha256`` (of the source
file, or of the loaded table's canonical Arrow IPC bytes for non-file sources),
``snapshot`` (path) and ``freshness`` ({column, max_age, latest, stale} or {}).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mlform.addresses import Address, Kind
from mlform.diagnostics import Diagnostic
from mlform.providers.base import (
    ApplyRequest,
    ApplyResult,
    DeleteRequest,
    DeleteResult,
    DiffRequest,
    DiffResult,
    ProviderContext,
    ReadRequest,
    ReadResult,
    StepFailed,
    ValidateRequest,
)
from mlform.providers.data_checks import (
    check_freshness,
    check_schema,
    conform,
    parse_duration,
    schema_of,
    validate_static,
)
from mlform.providers.sources import (
    canonical_table,
    file_sha256,
    load_source,
    resolve_path,
    table_sha256,
)

__all__ = [
    "DataProvider",
    "check_freshness",
    "check_schema",
    "conform",
    "diff_config",
    "parse_duration",
    "schema_of",
    "validate_static",
    "write_parquet",
]


def diff_config(
    prior: Mapping[str, Any], config: Mapping[str, Any], replace_keys: tuple[str, ...] = ()
) -> DiffResult:
    """Compare two configs key by key: ``key: old -> new`` for each top-level change."""
    changed = sorted(k for k in set(prior) | set(config) if prior.get(k) != config.get(k))
    detail = tuple(f"{k}: {prior.get(k)!r} -> {config.get(k)!r}" for k in changed)
    replace = tuple(k for k in changed if k in replace_keys)
    return DiffResult(changed=bool(changed), replace_fields=replace, detail=detail)


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` atomically (temp file, then rename), byte-reproducibly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(canonical_table(table), temp)
    os.replace(temp, path)


class DataProvider:
    """Provider for ``data.*`` objects."""

    kind: Kind = Kind.DATA

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self._now = now or (lambda: datetime.now(UTC))

    def validate(self, request: ValidateRequest) -> tuple[Diagnostic, ...]:
        return tuple(validate_static(request.address, request.config, request.context))

    def read(self, request: ReadRequest) -> ReadResult:
        snapshot = request.outputs.get("snapshot")
        if not snapshot or not Path(str(snapshot)).is_file():
            return ReadResult(outputs=None)
        try:
            current = _current_sha256(request.address, request.config, request.context)
        except StepFailed as failed:
            return ReadResult(outputs=None, diagnostics=(failed.diagnostic,))
        if current is None:
            return ReadResult(outputs=None)
        diagnostics: tuple[Diagnostic, ...] = ()
        prior = request.outputs.get("content_sha256")
        if prior and prior != current:
            diagnostics = (
                Diagnostic.warning(
                    f"{request.address} content changed since it was applied",
                    f"sha256 {str(prior)[:12]}… -> {current[:12]}…; "
                    "the next plan will update it and its dependants.",
                    key=request.address.config_key,
                    address=str(request.address),
                ),
            )
        return ReadResult(
            outputs={**request.outputs, "content_sha256": current}, diagnostics=diagnostics
        )

    def diff(self, request: DiffRequest) -> DiffResult:
        return diff_config(request.prior_config, request.config, replace_keys=("kind",))

    def create(self, request: ApplyRequest) -> ApplyResult:
        return self._apply(request)

    def update(self, request: ApplyRequest) -> ApplyResult:
        return self._apply(request)

    def delete(self, request: DeleteRequest) -> DeleteResult:
        shutil.rmtree(_snapshot_dir(request.context, request.address), ignore_errors=True)
        return DeleteResult()

    def _apply(self, request: ApplyRequest) -> ApplyResult:
        address, config, context = request.address, request.config, request.context
        context.progress(f"loading {config.get('kind', 'file')} source", 0.0)
        raw = load_source(config, context, address=address)
        content = _source_sha256(config, context, raw)
        context.progress("checking schema", 0.4)
        schema = schema_of(config)
        table = conform(raw, schema.get("columns") or {})
        problems = check_schema(table, schema, address)
        if problems:
            raise StepFailed(_summarise(problems))
        freshness, warnings = check_freshness(table, config.get("freshness"), address, self._now())
        context.progress("writing snapshot", 0.7)
        table = canonical_table(table)
        snapshot = _snapshot_dir(context, address) / f"{table_sha256(table)[:12]}.parquet"
        if not snapshot.is_file():
            write_parquet(table, snapshot)
        context.progress("done", 1.0)
        outputs = {
            "rows": table.num_rows,
            "columns": {field.name: str(field.type) for field in table.schema},
            "content_sha256": content,
            "snapshot": str(snapshot),
            "freshness": freshness,
        }
        return ApplyResult(outputs=outputs, diagnostics=tuple(warnings))


def _snapshot_dir(context: ProviderContext, address: Address) -> Path:
    return context.artifact_dir / "data" / address.name


def _source_sha256(config: Mapping[str, Any], context: ProviderContext, table: pa.Table) -> str:
    if config.get("kind", "file") == "file":
        return file_sha256(resolve_path(config, context))
    return table_sha256(table)


def _current_sha256(
    address: Address, config: Mapping[str, Any], context: ProviderContext
) -> str | None:
    """The source's current content hash, or None when its file is gone."""
    kind = config.get("kind", "file")
    if kind in ("file", "sql") and config.get("engine") != "postgresql":
        path = resolve_path(config, context)
        if not path.is_file():
            return None
        if kind == "file":
            return file_sha256(path)
    return table_sha256(load_source(config, context, address=address))


def _summarise(problems: list[Diagnostic]) -> Diagnostic:
    """One diagnostic for StepFailed: the first problem, naming the others in its detail."""
    first = problems[0]
    if len(problems) == 1:
        return first
    others = "; ".join(f"{p.key}: {p.summary}" for p in problems[1:])
    detail = f"{first.detail} Also {len(problems) - 1} more schema problem(s): {others}."
    return Diagnostic.error(first.summary, detail, key=first.key, address=first.address)
