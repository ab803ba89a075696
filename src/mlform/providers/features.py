"""The ``features`` provider: build a feature set into the offline store.

Applying ``features.NAME`` registers each source (the Parquet snapshot of a ``data.*``
object, or the table of another ``features.*`` object) as a DuckDB view named after
the source, runs ``query``, applies the declarative ``transforms``
(:mod:`mlform.providers.transforms`), checks entity keys and label, sorts rows by the
entity keys, makes a seeded (optionally stratified) split and writes Parquet files to
``<artifacts>/features/NAME/<digest12>/{all,train,test[,validation]}.parquet`` (or under
``offline_store.path``). ``online_store`` is not materialised yet.

The digest covers the config, the bytes of every source and the versions of DuckDB and
Arrow, so the same inputs give the same digest and byte-identical files.

Outputs: ``table`` (path of all.parquet), ``splits`` ({split: path}), ``rows``
({all, train, test[, validation]}), ``columns`` (names), ``column_types``, ``label``,
``entity``, ``sensitive``, ``digest`` and ``standardize`` ({column: {mean, std}}).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

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
from mlform.providers.data import diff_config, write_parquet
from mlform.providers.sources import file_sha256
from mlform.providers.transforms import (
    TransformError,
    apply_transforms,
    check_transform,
    standardize,
)

__all__ = ["FORMAT_VERSION", "FeaturesProvider"]

FORMAT_VERSION = 1


class FeaturesProvider:
    """Provider for ``features.*`` objects."""

    kind: Kind = Kind.FEATURES

    def validate(self, request: ValidateRequest) -> tuple[Diagnostic, ...]:
        address, config = request.address, request.config
        out: list[Diagnostic] = []

        def error(field: str, summary: str, detail: str) -> None:
            key = f"{address.config_key}.{field}"
            out.append(Diagnostic.error(summary, detail, key=key, address=str(address)))

        sources = list(config.get("sources") or ())
        if not sources:
            error("sources", f"{address} has no sources", "List the data sources it reads.")
        elif len(sources) > 1 and not config.get("query"):
            error(
                "query",
                f"{address} reads {len(sources)} sources but has no query",
                "Write a DuckDB SQL query that combines them (one view per source).",
            )
        for index, op in enumerate(config.get("transforms") or ()):
            problem = check_transform(op)
            if problem:
                error(f"transforms[{index}]", problem, "Fix the transform's op and keys.")
        if not _sizes_ok(config.get("split") or {}):
            error(
                "split",
                "split sizes must be fractions that leave rows for training",
                "Use 0 < test_size < 1 and test_size + validation_size < 1.",
            )
        return tuple(out)

    def read(self, request: ReadRequest) -> ReadResult:
        paths = [request.outputs.get("table"), *dict(request.outputs.get("splits") or {}).values()]
        if not all(path and Path(str(path)).is_file() for path in paths):
            return ReadResult(outputs=None)
        return ReadResult(outputs=dict(request.outputs))

    def diff(self, request: DiffRequest) -> DiffResult:
        return diff_config(request.prior_config, request.config)

    def create(self, request: ApplyRequest) -> ApplyResult:
        return self._build(request)

    def update(self, request: ApplyRequest) -> ApplyResult:
        return self._build(request)

    def delete(self, request: DeleteRequest) -> DeleteResult:
        store = _store_dir(request.context, request.address, request.prior_config)
        shutil.rmtree(store, ignore_errors=True)
        return DeleteResult()

    def _build(self, request: ApplyRequest) -> ApplyResult:
        address, config, context = request.address, request.config, request.context
        fail = _Failure(address)
        sources = _source_paths(config, request.upstream_outputs, fail)
        digest = _digest(config, sources)
        context.progress("running query", 0.1)
        table = _query(config, sources, fail)
        context.progress("applying transforms", 0.3)
        try:
            transformed = apply_transforms(table, list(config.get("transforms") or ()))
        except TransformError as error:
            raise fail(f"transforms[{error.index}]", error.summary, error.detail) from error
        entity = _as_list(config.get("entity"))
        label = config.get("label")
        table = _checked(transformed.table, entity, label, fail)
        context.progress("splitting", 0.6)
        split = split_rows(table, config.get("split") or {}, fail)
        stats: dict[str, dict[str, float]] = {}
        for index, columns in transformed.deferred:
            try:
                table, more = standardize(table, columns, split["train"])
            except KeyError as missing:
                raise fail(
                    f"transforms[{index}]",
                    f"standardize: no column {missing}",
                    f"Columns are: {', '.join(table.column_names)}.",
                ) from None
            stats.update(more)
        context.progress("writing offline store", 0.8)
        out_dir = _store_dir(context, address, config) / digest[:12]
        write_parquet(table, out_dir / "all.parquet")
        paths: dict[str, str] = {}
        rows: dict[str, int] = {"all": table.num_rows}
        for part, indices in split.items():
            write_parquet(table.take(pa.array(indices)), out_dir / f"{part}.parquet")
            paths[part] = str(out_dir / f"{part}.parquet")
            rows[part] = len(indices)
        context.progress("done", 1.0)
        outputs: dict[str, Any] = {
            "table": str(out_dir / "all.parquet"),
            "splits": paths,
            "rows": rows,
            "columns": list(table.column_names),
            "column_types": {f.name: str(f.type) for f in table.schema},
            "label": label,
            "entity": entity,
            "sensitive": _as_list(config.get("sensitive")),
            "digest": digest,
            "standardize": stats,
        }
        return ApplyResult(outputs=outputs)


class _Failure:
    """Builds StepFailed errors whose diagnostic names a key under the feature set."""

    def __init__(self, address: Address) -> None:
        self.address = address

    def __call__(self, field: str, summary: str, detail: str) -> StepFailed:
        key = f"{self.address.config_key}.{field}"
        diagnostic = Diagnostic.error(
            f"{self.address}: {summary}", detail, key=key, address=str(self.address)
        )
        return StepFailed(diagnostic)


def _sizes_ok(split: Mapping[str, Any]) -> bool:
    try:
        test = float(split.get("test_size", 0.2))
        validation = float(split.get("validation_size") or 0)
    except (TypeError, ValueError):
        return False
    return 0 < test < 1 and 0 <= validation < 1 - test


def _store_dir(context: ProviderContext, address: Address, config: Mapping[str, Any]) -> Path:
    """``offline_store.path`` (relative to the project) / NAME, else <artifacts>/features/NAME."""
    custom = (config.get("offline_store") or {}).get("path")
    if not custom:
        return context.artifact_dir / "features" / address.name
    base = Path(str(custom))
    return (base if base.is_absolute() else context.project_dir / base) / address.name


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


def _source_paths(
    config: Mapping[str, Any], upstream: Mapping[str, Mapping[str, Any]], fail: _Failure
) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for index, name in enumerate(_as_list(config.get("sources"))):
        data, features = upstream.get(f"data.{name}"), upstream.get(f"features.{name}")
        path = (data or {}).get("snapshot") or (features or {}).get("table")
        if not path or not Path(str(path)).is_file():
            raise fail(
                f"sources[{index}]",
                f"source {name!r} has no materialised table",
                f"Declare data.{name} (or features.{name}) and apply it first.",
            )
        paths[name] = Path(str(path))
    return paths


def _digest(config: Mapping[str, Any], sources: Mapping[str, Path]) -> str:
    document = {
        "format": FORMAT_VERSION,
        "toolchain": {"duckdb": duckdb.__version__, "pyarrow": pa.__version__},
        "config": {k: v for k, v in config.items() if k != "description"},
        "sources": {name: file_sha256(path) for name, path in sorted(sources.items())},
    }
    text = json.dumps(document, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _query(config: Mapping[str, Any], sources: Mapping[str, Path], fail: _Failure) -> pa.Table:
    names = list(sources)
    query = config.get("query") or (f'SELECT * FROM "{names[0]}"' if len(names) == 1 else None)
    if not query:
        raise fail(
            "query",
            "a query is needed to combine several sources",
            f"Write a DuckDB SQL query over the views {', '.join(names)}.",
        )
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        for name, path in sources.items():
            literal = str(path).replace("'", "''")
            ident = name.replace('"', '""')
            con.execute(f"CREATE VIEW \"{ident}\" AS SELECT * FROM read_parquet('{literal}')")
        return con.sql(str(query)).to_arrow_table()
    except duckdb.Error as error:
        raise fail("query", "the feature query failed", f"DuckDB said: {error}") from error
    finally:
        con.close()


def _checked(table: pa.Table, entity: list[str], label: Any, fail: _Failure) -> pa.Table:
    """Check entity keys and label; return the rows sorted by entity (or every column)."""
    columns = ", ".join(table.column_names)
    for key in entity:
        if key not in table.column_names:
            raise fail("entity", f"entity key {key!r} is not a column", f"Columns are: {columns}.")
    if label is not None and label not in table.column_names:
        raise fail("label", f"label {label!r} is not a column", f"Columns are: {columns}.")
    if label is not None and table.column(label).null_count:
        raise fail(
            "label",
            f"label {label!r} has {table.column(label).null_count} null(s)",
            "Filter out unlabeled rows (a filter transform) or fill the label.",
        )
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("__input", table)
        keys = ", ".join('"' + k.replace('"', '""') + '"' for k in entity)
        if entity:
            dupes = con.sql(
                f"SELECT {keys}, count(*) AS n FROM __input GROUP BY ALL HAVING n > 1 LIMIT 3"
            ).fetchall()
            if dupes:
                raise fail(
                    "entity",
                    f"entity keys {entity} are not unique",
                    f"Duplicated keys (key..., count): {dupes}. Fix the query or keys.",
                )
        order = keys if entity else "ALL"
        return con.sql(f"SELECT * FROM __input ORDER BY {order}").to_arrow_table()
    finally:
        con.close()


def split_rows(
    table: pa.Table, split: Mapping[str, Any], fail: _Failure
) -> dict[str, np.ndarray[Any, Any]]:
    """Seeded train/test[/validation] row indices (sorted), stratified when asked."""
    test_size = float(split.get("test_size", 0.2))
    val_size = float(split.get("validation_size") or 0)
    seed = int(split.get("seed", 0))
    stratify = split.get("stratify")
    columns = [stratify] if isinstance(stratify, str) else list(stratify or [])
    labels: np.ndarray[Any, Any] | None = None
    if columns:
        for column in columns:
            if column not in table.column_names:
                raise fail(
                    "split.stratify",
                    f"stratify column {column!r} is not a column",
                    f"Columns are: {', '.join(table.column_names)}.",
                )
        values = [table.column(c).to_pylist() for c in columns]
        labels = np.asarray(["\x1f".join(str(v) for v in row) for row in zip(*values, strict=True)])
        classes, counts = np.unique(labels, return_counts=True)
        if counts.min() < 2:
            rare = str(classes[counts.argmin()]).replace("\x1f", ", ")
            what = columns[0] if len(columns) == 1 else " x ".join(columns)
            raise fail(
                "split.stratify",
                f"class {rare!r} of {what!r} has only 1 row",
                "A stratified split needs at least 2 rows of every class: "
                "collect more rows, merge rare classes, or remove split.stratify.",
            )
    from sklearn.model_selection import train_test_split  # scikit-learn imports slowly

    indices = np.arange(table.num_rows)
    try:
        train, test = train_test_split(
            indices, test_size=test_size, random_state=seed, stratify=labels
        )
        parts = {"train": train, "test": test}
        if val_size:
            inner = None if labels is None else labels[train]
            relative = val_size / (1 - test_size)
            parts["train"], parts["validation"] = train_test_split(
                train, test_size=relative, random_state=seed, stratify=inner
            )
    except ValueError as error:
        raise fail("split", "the split cannot be made", f"scikit-learn said: {error}") from error
    return {name: np.sort(rows) for name, rows in parts.items()}
