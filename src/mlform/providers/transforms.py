"""Declarative feature transforms, run as DuckDB SQL over Arrow tables.

Each op is a mapping with an ``op`` key (the YAML of ``features.NAME.transforms``):

=============  ===========================================  ==============================
op             keys                                          effect
=============  ===========================================  ==============================
derive         column, expression (DuckDB SQL expression)    add or replace a column
one_hot        columns                                       ``COL_VALUE`` 0/1 columns over
                                                             the sorted distinct values
drop           columns                                       remove columns
select         columns                                       keep only these, in this order
rename         mapping {old: new}                            rename columns in place
fillna         columns (default: all), value                 replace nulls
filter         expression                                    keep rows where it is true
cast           columns, type                                 mlform or DuckDB type name
log1p          columns                                       ``ln(1 + x)``
standardize    columns                                       ``(x - mean) / std`` with the
                                                             train split's statistics
=============  ===========================================  ==============================

Column order is deterministic: new columns are appended, existing ones keep their place.
``standardize`` needs the train split, which exists only after every other op has run,
so :func:`apply_transforms` defers it and :func:`standardize` applies it afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from mlform.providers.sources import normalise_name

__all__ = [
    "TRANSFORM_OPS",
    "TransformError",
    "TransformedTable",
    "apply_transform",
    "apply_transforms",
    "check_transform",
    "standardize",
]

REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "derive": ("column", "expression"),
    "one_hot": ("columns",),
    "drop": ("columns",),
    "select": ("columns",),
    "rename": ("mapping",),
    "fillna": ("value",),
    "filter": ("expression",),
    "cast": ("columns", "type"),
    "log1p": ("columns",),
    "standardize": ("columns",),
}
TRANSFORM_OPS = tuple(REQUIRED_KEYS)

_TYPES = {
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "string": "VARCHAR",
    "category": "VARCHAR",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
}


class TransformError(Exception):
    """A transform could not run; ``index`` is its position in the list."""

    def __init__(self, index: int, summary: str, detail: str) -> None:
        super().__init__(summary)
        self.index = index
        self.summary = summary
        self.detail = detail


@dataclass(frozen=True, slots=True)
class TransformedTable:
    table: pa.Table
    # (index, columns) of the standardize ops, to apply once the train split is known.
    deferred: tuple[tuple[int, tuple[str, ...]], ...] = field(default=())


def check_transform(op: Mapping[str, Any]) -> str | None:
    """A static problem with one op (unknown op, missing key), or None."""
    name = op.get("op")
    if name not in REQUIRED_KEYS:
        return f"unknown transform op {name!r}; use one of: {', '.join(TRANSFORM_OPS)}"
    missing = [key for key in REQUIRED_KEYS[name] if op.get(key) in (None, "", [], {})]
    if missing:
        return f"transform {name} needs {', '.join(missing)}"
    return None


def apply_transforms(table: pa.Table, ops: Sequence[Mapping[str, Any]]) -> TransformedTable:
    """Run every op but ``standardize`` in order; return the table and the deferred ops."""
    deferred: list[tuple[int, tuple[str, ...]]] = []
    for index, op in enumerate(ops):
        problem = check_transform(op)
        if problem:
            raise TransformError(index, problem, "Fix the transform's keys.")
        if op["op"] == "standardize":
            deferred.append((index, tuple(str(c) for c in op["columns"])))
            continue
        try:
            table = apply_transform(table, op)
        except duckdb.Error as error:
            raise TransformError(
                index,
                f"transform {op['op']} failed",
                f"DuckDB said: {error}",
            ) from error
    return TransformedTable(table, tuple(deferred))


def apply_transform(table: pa.Table, op: Mapping[str, Any]) -> pa.Table:
    """Run one op (not ``standardize``) on ``table``; raises duckdb.Error on bad SQL."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("__input", table)
        return con.sql(_select(con, table, op)).to_arrow_table()
    finally:
        con.close()


def _select(con: duckdb.DuckDBPyConnection, table: pa.Table, op: Mapping[str, Any]) -> str:
    name = op["op"]
    columns = [str(c) for c in op.get("columns") or ()]
    if name == "derive":
        column, expression = str(op["column"]), op["expression"]
        if column in table.column_names:
            return f"SELECT * REPLACE (({expression}) AS {_ident(column)}) FROM __input"
        return f"SELECT *, ({expression}) AS {_ident(column)} FROM __input"
    if name == "one_hot":
        return f"SELECT *, {', '.join(_one_hot(con, columns))} FROM __input"
    if name == "drop":
        return f"SELECT * EXCLUDE ({', '.join(map(_ident, columns))}) FROM __input"
    if name == "select":
        return f"SELECT {', '.join(map(_ident, columns))} FROM __input"
    if name == "rename":
        pairs = ", ".join(f"{_ident(str(a))} AS {_ident(str(b))}" for a, b in op["mapping"].items())
        return f"SELECT * RENAME ({pairs}) FROM __input"
    if name == "filter":
        return f"SELECT * FROM __input WHERE ({op['expression']})"
    if name == "fillna":
        value = _literal(op["value"])
        targets = columns or list(table.column_names)
        return _replace(targets, lambda c: f"COALESCE({c}, {value})")
    if name == "cast":
        sql_type = _TYPES.get(str(op["type"]), str(op["type"]))
        return _replace(columns, lambda c: f"CAST({c} AS {sql_type})")
    if name == "log1p":
        return _replace(columns, lambda c: f"ln(1 + CAST({c} AS DOUBLE))")
    raise ValueError(f"not a SQL transform: {name!r}")


def _replace(columns: Sequence[str], expression: Any) -> str:
    items = ", ".join(f"{expression(_ident(c))} AS {_ident(c)}" for c in columns)
    return f"SELECT * REPLACE ({items}) FROM __input"


def _one_hot(con: duckdb.DuckDBPyConnection, columns: Sequence[str]) -> list[str]:
    items: list[str] = []
    for column in columns:
        query = (
            f"SELECT DISTINCT {_ident(column)} FROM __input "
            f"WHERE {_ident(column)} IS NOT NULL ORDER BY 1"
        )
        for (value,) in con.sql(query).fetchall():
            new = f"{column}_{normalise_name(str(value))}"
            test = f"{_ident(column)} = {_literal(value)}"
            items.append(f"COALESCE(CAST({test} AS TINYINT), 0) AS {_ident(new)}")
    return items


def standardize(
    table: pa.Table, columns: Sequence[str], train_rows: Sequence[int] | np.ndarray[Any, Any]
) -> tuple[pa.Table, dict[str, dict[str, float]]]:
    """``(x - mean) / std`` per column, mean and std (ddof 0) from ``train_rows`` only."""
    stats: dict[str, dict[str, float]] = {}
    rows = np.asarray(train_rows, dtype=np.int64)
    for column in columns:
        if column not in table.column_names:
            raise KeyError(column)
        values = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
        train = values[rows]
        mean = float(np.nanmean(train)) if train.size else 0.0
        std = float(np.nanstd(train)) if train.size else 1.0
        std = std if std > 0 and np.isfinite(std) else 1.0
        scaled = pa.array((values - mean) / std, type=pa.float64(), from_pandas=True)
        table = table.set_column(table.column_names.index(column), column, scaled)
        stats[column] = {"mean": mean, "std": std}
    return table, stats


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"
