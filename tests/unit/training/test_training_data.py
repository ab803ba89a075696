"""The data loader: which columns become inputs, label mapping, and its errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlform.providers.base import StepFailed
from mlform.training.data import load_training_data


def _outputs(tmp_path: Path, table: pa.Table, **extra: Any) -> dict[str, Any]:
    splits = {}
    for part in ("train", "test"):
        path = tmp_path / f"{part}.parquet"
        pq.write_table(table, path)
        splits[part] = str(path)
    return {
        "splits": splits,
        "label": "y",
        "entity": ["id"],
        "sensitive": ["sex"],
        **extra,
    }


def _table(**columns: Any) -> pa.Table:
    base: dict[str, Any] = {
        "id": [10, 11, 12, 13],
        "a": [1.0, 2.0, None, 4.0],
        "b": [1, 0, 1, 0],
        "flag": [True, False, True, True],
        "sex": ["F", "M", "F", "M"],
        "age": [30, 40, 50, 60],
        "y": ["yes", "no", "yes", "maybe"],
    }
    base.update(columns)
    return pa.table(base)


def test_inputs_drop_label_entity_sensitive_and_excluded(tmp_path: Path) -> None:
    data = load_training_data(
        _outputs(tmp_path, _table()), task="classification", exclude_columns=["age"]
    )
    assert data.feature_names == ("a", "b", "flag")
    assert data.train.x.dtype == np.float32
    assert np.isnan(data.train.x[2, 0])  # nulls become NaN
    assert data.train.x[:, 2].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert data.train.sensitive["sex"].tolist() == ["F", "M", "F", "M"]
    assert data.train.ids is not None and data.train.ids.tolist() == [10, 11, 12, 13]
    assert data.validation is None


def test_classes_are_sorted_original_values(tmp_path: Path) -> None:
    data = load_training_data(_outputs(tmp_path, _table()), task="classification")
    assert data.classes == ("maybe", "no", "yes")
    assert data.train.y.tolist() == [2, 1, 2, 0]
    assert data.train.y.dtype == np.int64


def test_regression_targets_are_float64(tmp_path: Path) -> None:
    table = _table(y=[1.5, 2.5, 3.5, 4.5])
    data = load_training_data(_outputs(tmp_path, table), task="regression")
    assert data.classes == ()
    assert data.train.y.dtype == np.float64


def test_non_numeric_input_names_the_column(tmp_path: Path) -> None:
    table = _table(region=["n", "s", "e", "w"])
    with pytest.raises(StepFailed) as failed:
        load_training_data(
            _outputs(tmp_path, table),
            task="classification",
            source="features.dx",
            address="model.m",
        )
    diagnostic = failed.value.diagnostic
    assert "input column 'region' of features.dx is not numeric" in diagnostic.summary
    assert "one_hot" in diagnostic.detail and "exclude_columns" in diagnostic.detail


def test_missing_split_names_the_feature_set(tmp_path: Path) -> None:
    outputs = _outputs(tmp_path, _table())
    del outputs["splits"]["test"]
    with pytest.raises(StepFailed) as failed:
        load_training_data(outputs, task="classification", source="features.dx")
    assert failed.value.diagnostic.summary == "features.dx has no 'test' split"
    assert failed.value.diagnostic.key == "features.dx.split"


def test_missing_split_file(tmp_path: Path) -> None:
    outputs = _outputs(tmp_path, _table())
    Path(outputs["splits"]["train"]).unlink()
    with pytest.raises(StepFailed, match=r"the 'train' split of features\.dx is missing"):
        load_training_data(outputs, task="classification", source="features.dx")


@pytest.mark.parametrize(("label", "message"), [(None, "has no label"), ("z", "is not a column")])
def test_label_problems(tmp_path: Path, label: str | None, message: str) -> None:
    outputs = {**_outputs(tmp_path, _table()), "label": label}
    with pytest.raises(StepFailed, match=message) as failed:
        load_training_data(outputs, task="classification", source="features.dx")
    assert failed.value.diagnostic.key == "features.dx.label"


def test_unknown_excluded_column(tmp_path: Path) -> None:
    with pytest.raises(StepFailed) as failed:
        load_training_data(
            _outputs(tmp_path, _table()),
            task="classification",
            exclude_columns=["agee"],
            address="model.m",
        )
    assert "['agee']" in failed.value.diagnostic.summary
    assert failed.value.diagnostic.key == "models.m.exclude_columns"


def test_text_label_for_regression(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match="not numeric but the task is regression"):
        load_training_data(_outputs(tmp_path, _table()), task="regression")


def test_single_class(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match="single class"):
        load_training_data(_outputs(tmp_path, _table(y=["a"] * 4)), task="classification")


def test_validation_split_is_loaded(tmp_path: Path) -> None:
    outputs = _outputs(tmp_path, _table())
    outputs["splits"]["validation"] = outputs["splits"]["test"]
    data = load_training_data(outputs, task="classification")
    assert data.validation is not None and data.validation.x.shape == (4, 4)
