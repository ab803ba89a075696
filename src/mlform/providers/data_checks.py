"""Checks of a data source: declared schema, freshness, and static config validation.

Pure functions over a loaded Arrow table and the data config; the ``data`` provider
(:mod:`mlform.providers.data`) calls them and turns problems into step failures or
warnings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mlform.addresses import Address
from mlform.diagnostics import Diagnostic
from mlform.providers.base import ProviderContext, StepFailed
from mlform.providers.sources import (
    FILE_FORMATS,
    SKLEARN_DATASETS,
    SOURCE_KINDS,
    SQL_ENGINES,
    file_format,
    resolve_path,
)
from mlform.spec.base import parse_duration as parse_seconds

__all__ = [
    "COLUMN_TYPES",
    "check_freshness",
    "check_schema",
    "conform",
    "parse_duration",
    "schema_of",
    "validate_static",
]


COLUMN_TYPES = ("int64", "float64", "string", "bool", "category", "timestamp", "date")


def parse_duration(text: object) -> timedelta | None:
    """``"30d"`` -> 30 days (units ms, s, m, h, d, w, as the spec allows); None when malformed."""
    try:
        return timedelta(seconds=parse_seconds(str(text)))
    except ValueError:
        return None


def schema_of(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The declared schema (dumped by alias ``schema`` or by field name ``schema_``)."""
    return config.get("schema") or config.get("schema_") or {}


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _compatible(declared: str, kind: pa.DataType) -> bool:
    if pa.types.is_null(kind):
        return True  # every value is null; the nullable check decides
    checks: dict[str, Callable[[pa.DataType], bool]] = {
        "int64": pa.types.is_integer,
        "float64": lambda k: (
            pa.types.is_floating(k) or pa.types.is_integer(k) or pa.types.is_decimal(k)
        ),
        "string": _is_text,
        "bool": pa.types.is_boolean,
        "category": lambda k: (
            _is_text(k)
            or pa.types.is_dictionary(k)
            or pa.types.is_integer(k)
            or pa.types.is_boolean(k)
        ),
        "timestamp": pa.types.is_timestamp,
        "date": pa.types.is_date,
    }
    return checks[declared](kind) if declared in checks else False


def conform(table: pa.Table, columns: Mapping[str, Any]) -> pa.Table:
    """Parse text columns declared ``timestamp`` or ``date`` (e.g. from SQLite or CSV)."""
    for name, column in columns.items():
        declared = (column or {}).get("type")
        if name not in table.column_names or not _is_text(table.schema.field(name).type):
            continue
        targets = {
            "timestamp": (pa.timestamp("us", tz="UTC"), pa.timestamp("us")),
            "date": (pa.date32(),),
        }.get(str(declared), ())
        for target in targets:
            try:
                parsed = pc.cast(table.column(name), target)
            except pa.ArrowInvalid:
                continue
            table = table.set_column(table.column_names.index(name), name, parsed)
            break
    return table


def check_schema(table: pa.Table, schema: Mapping[str, Any], address: Address) -> list[Diagnostic]:
    """Every declared column present, typed compatibly, non-null and within its values."""
    prefix = f"{address.config_key}.schema.columns"
    declared: Mapping[str, Any] = schema.get("columns") or {}
    problems: list[Diagnostic] = []

    def problem(column: str | None, summary: str, detail: str) -> None:
        key = f"{prefix}.{column}" if column else prefix
        problems.append(Diagnostic.error(summary, detail, key=key, address=str(address)))

    for name, spec in declared.items():
        spec = spec or {}
        if name not in table.column_names:
            found = ", ".join(table.column_names[:12])
            problem(
                name,
                f"column {name!r} is missing from {address}",
                f"The source has columns: {found}. Fix the source or the declaration.",
            )
            continue
        column, kind = table.column(name), table.schema.field(name).type
        want = spec.get("type")
        if want and not _compatible(str(want), kind):
            problem(
                name,
                f"column {name!r} has type {kind}, declared {want}",
                f"Found arrow type {kind} in the source; declare a matching type "
                f"({', '.join(COLUMN_TYPES)}) or fix the source.",
            )
        if spec.get("nullable", True) is False and column.null_count:
            problem(
                name,
                f"column {name!r} has {column.null_count} null value(s)",
                "It is declared nullable: false; fill the nulls or set nullable: true.",
            )
        allowed = spec.get("values")
        if allowed is not None and want == "category":
            unique = pc.unique(column.cast(pa.string()) if not _is_text(kind) else column)
            extra = sorted(
                str(v)
                for v in unique.to_pylist()
                if v is not None and str(v) not in {str(a) for a in allowed}
            )
            if extra:
                problem(
                    name,
                    f"column {name!r} has values outside its declared values",
                    f"Found {', '.join(map(repr, extra[:5]))}; declared values are "
                    f"{list(allowed)}. Add them to values or fix the data.",
                )
    if schema.get("strict"):
        undeclared = [c for c in table.column_names if c not in declared]
        if undeclared:
            problem(
                None,
                f"{address} has undeclared column(s): {', '.join(undeclared)}",
                "The schema is strict: declare these columns or set schema.strict: false.",
            )
    return problems


def check_freshness(
    table: pa.Table, freshness: Mapping[str, Any] | None, address: Address, now: datetime
) -> tuple[dict[str, Any], list[Diagnostic]]:
    """Newest value of ``freshness.column`` against ``max_age``; stale is a warning."""
    if not freshness:
        return {}, []
    column, max_age = freshness.get("column") or _time_column(table), freshness.get("max_age")
    key = f"{address.config_key}.freshness"
    limit = parse_duration(max_age)
    if limit is None:
        raise StepFailed(
            Diagnostic.error(
                f"invalid freshness.max_age {max_age!r}",
                "Write a duration such as 30d, 12h, 15m or 2w.",
                key=f"{key}.max_age",
                address=str(address),
            )
        )
    if column not in table.column_names or not (
        pa.types.is_timestamp(kind := table.schema.field(column).type) or pa.types.is_date(kind)
    ):
        raise StepFailed(
            Diagnostic.error(
                f"freshness column {column!r} is not a timestamp or date column of {address}",
                "Name a column of type timestamp or date in freshness.column.",
                key=f"{key}.column",
                address=str(address),
            )
        )
    latest = pc.max(table.column(column)).as_py()
    if isinstance(latest, date) and not isinstance(latest, datetime):
        latest = datetime(latest.year, latest.month, latest.day)
    if isinstance(latest, datetime) and latest.tzinfo is None:
        latest = latest.replace(tzinfo=UTC)
    stale = latest is None or now - latest > limit
    outputs = {
        "column": column,
        "max_age": str(max_age),
        "latest": latest.isoformat() if latest else None,
        "stale": stale,
    }
    if not stale:
        return outputs, []
    age = "no values" if latest is None else f"newest is {latest.isoformat()}"
    warning = Diagnostic.warning(
        f"{address} is stale: {column} {age}, older than max_age {max_age}",
        "Refresh the source, or raise freshness.max_age if this age is acceptable.",
        key=f"{key}.max_age",
        address=str(address),
    )
    return outputs, [warning]


def _time_column(table: pa.Table) -> str:
    """The first timestamp or date column: the default freshness column."""
    for field in table.schema:
        if pa.types.is_timestamp(field.type) or pa.types.is_date(field.type):
            return str(field.name)
    return ""


def validate_static(
    address: Address, config: Mapping[str, Any], context: ProviderContext
) -> list[Diagnostic]:
    """Checks that need no data: known kind, engine, format, dataset; paths exist."""
    out: list[Diagnostic] = []
    base = address.config_key

    def error(field: str, summary: str, detail: str) -> None:
        out.append(Diagnostic.error(summary, detail, key=f"{base}.{field}", address=str(address)))

    kind = config.get("kind", "file")
    engine = config.get("engine", "sqlite")
    if kind not in SOURCE_KINDS:
        error(
            "kind", f"unknown data source kind {kind!r}", f"Use one of: {', '.join(SOURCE_KINDS)}."
        )
    elif kind == "sklearn" and config.get("dataset") not in SKLEARN_DATASETS:
        error(
            "dataset",
            f"unknown scikit-learn dataset {config.get('dataset')!r}",
            f"Use one of: {', '.join(SKLEARN_DATASETS)}.",
        )
    elif kind == "sql" and engine not in SQL_ENGINES:
        error("engine", f"unknown sql engine {engine!r}", f"Use one of: {', '.join(SQL_ENGINES)}.")
    elif kind == "sql" and not config.get("query"):
        error("query", "a sql data source needs a query", "Set query to a SELECT statement.")
    elif kind == "sql" and engine == "postgresql" and not config.get("url"):
        error("url", "a postgresql source needs a url", "Set url, e.g. postgresql://host/db.")
    if kind == "file" and file_format(config) not in FILE_FORMATS:
        error(
            "format",
            f"unknown file format {config.get('format')!r}",
            f"Use one of: {', '.join(FILE_FORMATS)}.",
        )
    if kind == "file" or (kind == "sql" and engine in ("sqlite", "duckdb")):
        path = resolve_path(config, context)
        if not config.get("path") or not path.is_file():
            error(
                "path",
                f"{config.get('path')!r} does not exist",
                f"No file at {path}. Fix the path (relative to the project directory).",
            )
    for name, spec in (schema_of(config).get("columns") or {}).items():
        if (spec or {}).get("type", "string") not in COLUMN_TYPES:
            error(
                f"schema.columns.{name}.type",
                f"unknown column type {spec.get('type')!r}",
                f"Use one of: {', '.join(COLUMN_TYPES)}.",
            )
    freshness = config.get("freshness")
    if freshness and parse_duration(freshness.get("max_age")) is None:
        error(
            "freshness.max_age",
            f"invalid duration {freshness.get('max_age')!r}",
            "Write a duration such as 30d, 12h, 15m or 2w.",
        )
    return out
