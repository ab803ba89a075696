"""Loading a declared data source into a :class:`pyarrow.Table`.

Three kinds of source: ``file`` (CSV or Parquet, path relative to the project),
``sql`` (a query against SQLite, DuckDB or PostgreSQL) and ``sklearn`` (a dataset
bundled with scikit-learn, for examples). Every failure the user can fix becomes a
:class:`~mlform.providers.base.StepFailed` carrying a diagnostic with the config key.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from mlform.addresses import Address
from mlform.diagnostics import Diagnostic
from mlform.providers.base import ProviderContext, StepFailed

__all__ = [
    "FILE_FORMATS",
    "SKLEARN_DATASETS",
    "SOURCE_KINDS",
    "SQL_ENGINES",
    "canonical_table",
    "file_format",
    "file_sha256",
    "load_source",
    "normalise_name",
    "resolve_path",
    "table_sha256",
]

SOURCE_KINDS = ("file", "sql", "sklearn")
FILE_FORMATS = ("csv", "parquet")
SQL_ENGINES = ("sqlite", "duckdb", "postgresql")
SKLEARN_DATASETS = ("breast_cancer", "iris", "wine", "diabetes", "digits")

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def normalise_name(name: str) -> str:
    """``"mean radius"`` -> ``"mean_radius"``; ``"sepal length (cm)"`` -> ``"sepal_length_cm"``."""
    return _NON_ALNUM.sub("_", name.lower()).strip("_")


def resolve_path(config: Mapping[str, Any], context: ProviderContext) -> Path:
    """The source's ``path``, relative to the project directory unless absolute."""
    path = Path(str(config.get("path", "")))
    return path if path.is_absolute() else context.project_dir / path


def file_format(config: Mapping[str, Any]) -> str:
    """The declared ``format``, else inferred from the file extension (CSV by default)."""
    declared = config.get("format")
    if declared:
        return str(declared)
    return "parquet" if str(config.get("path", "")).endswith((".parquet", ".pq")) else "csv"


def canonical_table(table: pa.Table) -> pa.Table:
    """The table in one chunk per column with no schema metadata: a stable byte form."""
    return table.replace_schema_metadata(None).combine_chunks()


def table_sha256(table: pa.Table) -> str:
    """sha256 of the table's canonical Arrow IPC stream bytes."""
    sink = pa.BufferOutputStream()
    canonical = canonical_table(table)
    with pa.ipc.new_stream(sink, canonical.schema) as writer:
        writer.write_table(canonical)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_source(
    config: Mapping[str, Any], context: ProviderContext, *, address: Address | None = None
) -> pa.Table:
    """Load the data source ``config`` describes; raise StepFailed for a user mistake."""
    kind = config.get("kind", "file")
    fail = _Failure(address)
    if kind == "file":
        return _load_file(config, context, fail)
    if kind == "sql":
        return _load_sql(config, context, fail)
    if kind == "sklearn":
        return _load_sklearn(config, fail)
    raise fail(
        "kind",
        f"unknown data source kind {kind!r}",
        f"Set kind to one of: {', '.join(SOURCE_KINDS)}.",
    )


class _Failure:
    """Builds StepFailed errors whose diagnostic names the source's config key."""

    def __init__(self, address: Address | None) -> None:
        self.address = address

    def __call__(self, field: str, summary: str, detail: str) -> StepFailed:
        prefix = self.address.config_key if self.address else "data"
        where = str(self.address) if self.address else None
        return StepFailed(Diagnostic.error(summary, detail, key=f"{prefix}.{field}", address=where))


def _load_file(config: Mapping[str, Any], context: ProviderContext, fail: _Failure) -> pa.Table:
    path = resolve_path(config, context)
    if not path.is_file():
        raise fail(
            "path",
            f"data file {config.get('path')!r} does not exist",
            f"No file at {path}. Fix the path (relative to the project directory) or create it.",
        )
    fmt = file_format(config)
    try:
        if fmt == "csv":
            return pa_csv.read_csv(path)
        if fmt == "parquet":
            return pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise fail("path", f"cannot read {fmt} file {config.get('path')!r}", f"{error}") from error
    raise fail(
        "format",
        f"unknown file format {fmt!r}",
        f"Set format to one of: {', '.join(FILE_FORMATS)}.",
    )


def _load_sql(config: Mapping[str, Any], context: ProviderContext, fail: _Failure) -> pa.Table:
    engine = config.get("engine", "sqlite")
    query = config.get("query")
    if not query:
        raise fail("query", "a sql data source needs a query", "Set query to a SELECT statement.")
    if engine == "postgresql":
        return _load_postgresql(context.reveal(config.get("url", "")), str(query), fail)
    if engine not in ("sqlite", "duckdb"):
        raise fail(
            "engine", f"unknown sql engine {engine!r}", f"Use one of: {', '.join(SQL_ENGINES)}."
        )
    path = resolve_path(config, context)
    if not path.is_file():
        raise fail(
            "path",
            f"{engine} database {config.get('path')!r} does not exist",
            f"No database file at {path}. Fix the path (relative to the project directory).",
        )
    try:
        if engine == "sqlite":
            return _query_sqlite(path, str(query))
        with duckdb.connect(str(path), read_only=True) as con:
            return con.sql(str(query)).to_arrow_table()
    except (sqlite3.Error, duckdb.Error, pa.ArrowException) as error:
        raise fail(
            "query",
            f"the {engine} query failed",
            f"{engine} said: {error}. Fix the query and run again.",
        ) from error


def _query_sqlite(path: Path, query: str) -> pa.Table:
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        cursor = con.execute(query)
        names = [column[0] for column in cursor.description or ()]
        rows = cursor.fetchall()
    finally:
        con.close()
    return _rows_to_table(names, rows)


def _rows_to_table(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return pa.table(
        {name: pa.array(list(values)) for name, values in zip(names, columns, strict=True)}
    )


def _load_postgresql(url: Any, query: str, fail: _Failure) -> pa.Table:
    try:
        import psycopg  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise fail(
            "engine",
            "PostgreSQL sources need the psycopg package",
            "Install it into the environment that runs mlform: pip install 'psycopg[binary]'.",
        ) from None
    try:
        with psycopg.connect(str(url)) as con, con.cursor() as cursor:
            cursor.execute(query)
            names = [column.name for column in cursor.description or ()]
            return _rows_to_table(names, cursor.fetchall())
    except psycopg.Error as error:
        # The message may quote the URL; never repeat it (it can hold a secret).
        raise fail(
            "query",
            "the postgresql query failed",
            f"PostgreSQL said: {type(error).__name__}. Check the url, credentials and query.",
        ) from error


def _load_sklearn(config: Mapping[str, Any], fail: _Failure) -> pa.Table:
    from sklearn import datasets

    name = str(config.get("dataset", ""))
    if name not in SKLEARN_DATASETS:
        raise fail(
            "dataset",
            f"unknown scikit-learn dataset {name!r}",
            f"Use one of: {', '.join(SKLEARN_DATASETS)}.",
        )
    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame
    frame.columns = [normalise_name(str(column)) for column in frame.columns]
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    sample_id = pa.array(range(table.num_rows), type=pa.int64())
    return table.add_column(0, "sample_id", sample_id)
