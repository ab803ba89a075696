"""Each declarative feature transform on a small Arrow table."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from mlform.providers.transforms import (
    TRANSFORM_OPS,
    TransformError,
    apply_transform,
    apply_transforms,
    check_transform,
    standardize,
)


@pytest.fixture
def table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array([1, 2, 3, 4], type=pa.int64()),
            "x": pa.array([1.0, None, 3.0, 7.0]),
            "size": pa.array([10, 20, 30, 40], type=pa.int64()),
            "colour": pa.array(["red", "blue", None, "light green"]),
        }
    )


def test_derive_appends_a_column(table: pa.Table) -> None:
    out = apply_transform(table, {"op": "derive", "column": "ratio", "expression": "size / id"})
    assert out.column_names == ["id", "x", "size", "colour", "ratio"]
    assert out.column("ratio").to_pylist() == [10.0, 10.0, 10.0, 10.0]


def test_derive_replaces_an_existing_column_in_place(table: pa.Table) -> None:
    out = apply_transform(table, {"op": "derive", "column": "size", "expression": "size * 2"})
    assert out.column_names == table.column_names
    assert out.column("size").to_pylist() == [20, 40, 60, 80]


def test_one_hot_uses_sorted_distinct_values_and_zero_for_null(table: pa.Table) -> None:
    out = apply_transform(table, {"op": "one_hot", "columns": ["colour"]})
    new = ["colour_blue", "colour_light_green", "colour_red"]
    assert out.column_names == [*table.column_names, *new]
    assert out.column("colour_red").to_pylist() == [1, 0, 0, 0]
    assert out.column("colour_blue").to_pylist() == [0, 1, 0, 0]
    assert out.column("colour_light_green").to_pylist() == [0, 0, 0, 1]
    assert out.schema.field("colour_red").type == pa.int8()


def test_drop_and_select(table: pa.Table) -> None:
    dropped = apply_transform(table, {"op": "drop", "columns": ["x", "colour"]})
    assert dropped.column_names == ["id", "size"]
    selected = apply_transform(table, {"op": "select", "columns": ["size", "id"]})
    assert selected.column_names == ["size", "id"]
    assert selected.column("size").to_pylist() == [10, 20, 30, 40]


def test_rename_keeps_position(table: pa.Table) -> None:
    out = apply_transform(table, {"op": "rename", "mapping": {"x": "measure", "id": "key"}})
    assert out.column_names == ["key", "measure", "size", "colour"]
    assert out.column("measure").to_pylist() == [1.0, None, 3.0, 7.0]


def test_fillna_named_columns(table: pa.Table) -> None:
    out = apply_transform(table, {"op": "fillna", "columns": ["x"], "value": 0})
    assert out.column("x").to_pylist() == [1.0, 0.0, 3.0, 7.0]
    assert out.column("colour").null_count == 1


def test_fillna_string_value_is_quoted() -> None:
    tbl = pa.table({"name": ["o'brien", None]})
    out = apply_transform(tbl, {"op": "fillna", "columns": ["name"], "value": "it's unknown"})
    assert out.column("name").to_pylist() == ["o'brien", "it's unknown"]


def test_filter_keeps_matching_rows_in_order(table: pa.Table) -> None:
    out = apply_transform(table, {"op": "filter", "expression": "size >= 20 AND id != 3"})
    assert out.column("id").to_pylist() == [2, 4]


def test_cast_with_mlform_type_names(table: pa.Table) -> None:
    out = apply_transform(table, {"op": "cast", "columns": ["size"], "type": "float64"})
    assert out.schema.field("size").type == pa.float64()
    out = apply_transform(table, {"op": "cast", "columns": ["id"], "type": "string"})
    assert out.column("id").to_pylist() == ["1", "2", "3", "4"]


def test_log1p(table: pa.Table) -> None:
    out = apply_transform(table, {"op": "log1p", "columns": ["x"]})
    values = out.column("x").to_pylist()
    assert values[0] == pytest.approx(math.log1p(1.0))
    assert values[1] is None
    assert values[3] == pytest.approx(math.log1p(7.0))


def test_apply_transforms_defers_standardize_and_runs_the_rest_in_order(
    table: pa.Table,
) -> None:
    ops = [
        {"op": "derive", "column": "double", "expression": "size * 2"},
        {"op": "standardize", "columns": ["double"]},
        {"op": "drop", "columns": ["size"]},
    ]
    result = apply_transforms(table, ops)
    assert result.table.column_names == ["id", "x", "colour", "double"]
    assert result.deferred == ((1, ("double",)),)


def test_standardize_uses_train_rows_only() -> None:
    tbl = pa.table({"v": pa.array([0.0, 2.0, 4.0, 100.0]), "k": [1, 2, 3, 4]})
    out, stats = standardize(tbl, ["v"], [0, 1, 2])
    assert stats == {"v": {"mean": pytest.approx(2.0), "std": pytest.approx(math.sqrt(8 / 3))}}
    scaled = out.column("v").to_pylist()
    assert scaled[:3] == pytest.approx([-1.2247449, 0.0, 1.2247449])
    assert scaled[3] == pytest.approx(98 / math.sqrt(8 / 3))
    assert out.column_names == ["v", "k"]


def test_standardize_constant_column_divides_by_one() -> None:
    out, stats = standardize(pa.table({"v": [5, 5, 5]}), ["v"], [0, 1, 2])
    assert stats["v"]["std"] == 1.0
    assert out.column("v").to_pylist() == [0.0, 0.0, 0.0]


def test_sql_error_names_the_transform_index(table: pa.Table) -> None:
    ops = [
        {"op": "drop", "columns": ["colour"]},
        {"op": "derive", "column": "y", "expression": "nope + 1"},
    ]
    with pytest.raises(TransformError) as caught:
        apply_transforms(table, ops)
    assert caught.value.index == 1
    assert "nope" in caught.value.detail


def test_unknown_op_and_missing_keys_are_reported() -> None:
    assert "unknown transform op 'pivot'" in (check_transform({"op": "pivot"}) or "")
    assert check_transform({"op": "derive", "column": "y"}) == "transform derive needs expression"
    assert check_transform({"op": "drop", "columns": ["a"]}) is None
    with pytest.raises(TransformError) as caught:
        apply_transforms(pa.table({"a": [1]}), [{"op": "one_hot"}])
    assert caught.value.index == 0
    assert set(TRANSFORM_OPS) >= {"derive", "one_hot", "standardize", "log1p"}
