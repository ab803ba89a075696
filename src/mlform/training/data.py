"""Loading a built feature set (the ``features`` provider's outputs) into :class:`TrainingData`.

Inputs are every column except the label, the entity keys, the sensitive columns and the
model's ``exclude_columns``; they must be numeric (booleans count) and become float32, nulls
becoming NaN. Sensitive columns keep their raw values in ``Split.sensitive`` (for fairness),
the entity key its values in ``Split.ids`` (several keys: one tuple per row). Classification
labels become int64 class ids indexing ``TrainingData.classes``, the sorted label values seen
in any split.

Problems raise :class:`~mlform.providers.base.StepFailed` whose diagnostic names the feature
set (``source``, e.g. ``features.diagnosis``) and the key to fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mlform.diagnostics import Diagnostic
from mlform.providers.base import StepFailed
from mlform.training.types import Array, Split, Task, TrainingData

__all__ = ["load_training_data"]

_PARTS = ("train", "test", "validation")


def load_training_data(
    features_outputs: Mapping[str, Any],
    *,
    task: Task,
    exclude_columns: Sequence[str] = (),
    source: str = "the feature set",
    address: str | None = None,
) -> TrainingData:
    """Read the split Parquet files named in ``features_outputs`` into arrays for training.

    ``source`` names the feature set in messages (``features.NAME``); ``address`` is the model
    being trained, attached to the diagnostics.
    """
    fail = _Failure(source, address)
    label = features_outputs.get("label")
    if not label:
        raise fail(
            "label",
            f"{source} has no label",
            f"Set label: in {source} to the column the model should predict.",
        )
    tables = _read_splits(features_outputs, fail)
    columns = tables["train"].column_names
    if label not in columns:
        raise fail("label", f"label {label!r} is not a column of {source}", _columns(columns))
    for part, table in tables.items():
        if table.column_names != columns:
            raise fail(
                "splits",
                f"split {part!r} of {source} has different columns from 'train'",
                "Apply the feature set again so that every split is written from one table.",
            )
    entity = _as_list(features_outputs.get("entity"))
    sensitive = _as_list(features_outputs.get("sensitive"))
    unknown = [c for c in exclude_columns if c not in columns]
    if unknown:
        raise fail(
            None,
            f"exclude_columns names {unknown} which {source} does not have",
            f"Remove them from the model's exclude_columns. {_columns(columns)}",
        )
    dropped = {label, *entity, *sensitive, *exclude_columns}
    inputs = [c for c in columns if c not in dropped]
    if not inputs:
        raise fail(None, f"{source} leaves no input columns", "Exclude fewer columns.")
    _check_numeric(tables["train"].schema, inputs, source, fail)
    labels = {part: _label_values(table, label) for part, table in tables.items()}
    classes: tuple[Any, ...] = ()
    if task == "classification":
        classes = _classes(labels.values(), label, source, fail)
    elif not all(np.issubdtype(v.dtype, np.number) for v in labels.values()):
        raise fail(
            "label",
            f"label {label!r} of {source} is not numeric but the task is regression",
            "Use task: classification, or a numeric label.",
        )

    def split(part: str) -> Split:
        table = tables[part]
        return Split(
            x=_matrix(table, inputs),
            y=_targets(labels[part], classes, task),
            sensitive={c: _raw(table.column(c)) for c in sensitive if c in table.column_names},
            ids=_ids(table, entity),
        )

    return TrainingData(
        task=task,
        feature_names=tuple(inputs),
        label=str(label),
        train=split("train"),
        test=split("test"),
        validation=split("validation") if "validation" in tables else None,
        classes=classes,
    )


class _Failure:
    def __init__(self, source: str, address: str | None) -> None:
        self.source, self.address = source, address

    def __call__(self, field: str | None, summary: str, detail: str) -> StepFailed:
        """``field`` is a key under the feature set; None points at the model's exclude_columns."""
        key: str | None = None
        if field and self.source.startswith("features."):
            key = f"{self.source}.{field}"
        elif field is None and self.address and self.address.startswith("model."):
            key = f"models.{self.address.removeprefix('model.')}.exclude_columns"
        prefix = f"{self.address}: " if self.address else ""
        return StepFailed(Diagnostic.error(prefix + summary, detail, key=key, address=self.address))


def _read_splits(outputs: Mapping[str, Any], fail: _Failure) -> dict[str, pa.Table]:
    splits = dict(outputs.get("splits") or {})
    tables: dict[str, pa.Table] = {}
    for part in _PARTS:
        path = splits.get(part)
        if path is None:
            if part == "validation":
                continue
            raise fail(
                "split",
                f"{fail.source} has no {part!r} split",
                f"Apply {fail.source} again; its outputs should list a {part} Parquet file.",
            )
        if not Path(str(path)).is_file():
            raise fail(
                "split",
                f"the {part!r} split of {fail.source} is missing: {path}",
                f"Apply {fail.source} again to rebuild its offline store.",
            )
        tables[part] = pq.read_table(str(path))
    return tables


def _check_numeric(schema: pa.Schema, inputs: list[str], source: str, fail: _Failure) -> None:
    for name in inputs:
        kind = schema.field(name).type
        if not (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
        ):
            raise fail(
                "transforms",
                f"input column {name!r} of {source} is not numeric ({kind})",
                f"Add a one_hot transform for {name!r} to {source}, or list it in the model's "
                "exclude_columns.",
            )


def _matrix(table: pa.Table, inputs: list[str]) -> Array:
    out = np.empty((table.num_rows, len(inputs)), dtype=np.float32)
    for index, name in enumerate(inputs):
        column = table.column(name)
        if pa.types.is_boolean(column.type):
            column = column.cast(pa.int8())
        out[:, index] = column.to_numpy(zero_copy_only=False)  # nulls become NaN
    return out


def _label_values(table: pa.Table, label: str) -> Array:
    return np.asarray(table.column(label).to_numpy(zero_copy_only=False))


def _classes(values: Any, label: str, source: str, fail: _Failure) -> tuple[Any, ...]:
    try:
        unique = np.unique(np.concatenate([np.asarray(v) for v in values]))
    except TypeError as error:
        raise fail(
            "label", f"label {label!r} of {source} mixes types", f"numpy said: {error}"
        ) from error
    if len(unique) < 2:
        raise fail(
            "label",
            f"label {label!r} of {source} has a single class",
            "Classification needs at least two classes among the labelled rows.",
        )
    return tuple(unique.tolist())


def _targets(values: Array, classes: tuple[Any, ...], task: Task) -> Array:
    if task == "regression":
        return np.ascontiguousarray(values, dtype=np.float64)
    return np.searchsorted(np.asarray(classes), values).astype(np.int64)


def _raw(column: pa.ChunkedArray) -> Array:
    return np.asarray(column.to_numpy(zero_copy_only=False))


def _ids(table: pa.Table, entity: list[str]) -> Array | None:
    present = [c for c in entity if c in table.column_names]
    if not present:
        return None
    if len(present) == 1:
        return _raw(table.column(present[0]))
    rows = zip(*(table.column(c).to_pylist() for c in present), strict=True)
    out = np.empty(table.num_rows, dtype=object)
    out[:] = list(rows)
    return out


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


def _columns(columns: list[str]) -> str:
    return f"Columns are: {', '.join(columns)}."
