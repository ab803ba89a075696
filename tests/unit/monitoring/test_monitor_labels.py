"""Delayed labels (mlform.monitoring.labels): from files, from the servers' label logs, and
joined to a window of logged predictions by request id."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mlform.monitoring.labels import (
    Joined,
    LabelForm,
    Labels,
    LabelsError,
    join,
    labels_from_endpoint_logs,
    labels_from_table,
)
from mlform.monitoring.window import Predictions, WindowSpec, read_window
from mlform.providers.base import ProviderContext
from mlform.providers.sources import load_source
from mlform.serving import prediction_log
from mlform.serving.prediction_log import (
    PredictionLog,
    labels_file_name,
    log_file_name,
    write_schema,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
CLASSES = ("benign", "malignant")
DEAD_PID = 5_000_001


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Clock]:
    fake = _Clock()
    monkeypatch.setattr(prediction_log, "time", fake)
    yield fake


def make_log(directory: Path, version: int = 1, task: str = "classification") -> PredictionLog:
    write_schema(
        directory,
        {
            "feature_names": ["a", "b"],
            "ref": f"model.diagnosis@v{version}",
            "classes": list(CLASSES) if task == "classification" else [],
            "model": "diagnosis",
            "version": version,
            "task": task,
        },
    )
    log = PredictionLog(
        directory, model="diagnosis", ref=f"model.diagnosis@v{version}", version=version
    )
    log.interval = 3600
    return log


def rename(path: Path | None, name: str) -> Path:
    assert path is not None
    target = path.with_name(name)
    os.replace(path, target)
    return target


def post_labels(
    directory: Path, clock: _Clock, batches: Sequence[tuple[float, list[tuple[str, Any]]]], pid: int
) -> Path:
    """``labels-<pid>.jsonl`` written by a PredictionLog: each batch at its time."""
    log = make_log(directory)
    log.start()
    try:
        for when, labels in batches:
            clock.now = when
            log.append_labels(labels)
            log._write()  # each batch its own write, in order
    finally:
        log.close()
    assert log.path is not None
    log.path.unlink()  # (no predictions were logged)
    return rename(log.labels_path, labels_file_name(pid))


# -- reading labels --------------------------------------------------------------------------


def test_labels_from_the_endpoint_logs_of_every_version(tmp_path: Path, clock: _Clock) -> None:
    root = tmp_path / "diagnosis"
    post_labels(
        root / "diagnosis-v1",
        clock,
        [(T0 + 10, [("r1", "benign"), ("r2", ["benign", "malignant"])]), (T0 + 30, [("r3", 1)])],
        pid=DEAD_PID,
    )
    second = post_labels(
        root / "diagnosis-v2",
        clock,
        [(T0 + 20, [("r1", "malignant")]), (T0 + 5, [("r4", 0)])],
        pid=DEAD_PID + 1,
    )
    labels = labels_from_endpoint_logs(root)
    assert isinstance(labels, Labels)
    # r1 was labelled twice: the later label (T0 + 20, in v2's log) wins
    assert dict(labels.by_request) == {
        "r1": "malignant",
        "r2": ["benign", "malignant"],
        "r3": 1,
        "r4": 0,
    }
    whole = second.read_bytes()
    with second.open("ab") as handle:  # a writer in the middle of its last line
        handle.write(b'{"id": "r9", "lab')
    assert len(labels_from_endpoint_logs(root)) == 4
    second.write_bytes(b"nonsense\n" + whole)
    with pytest.raises(LabelsError, match=rf"{second.name}, line 1"):
        labels_from_endpoint_logs(root)
    second.write_bytes(b'{"id": 7, "label": "benign"}\n' + whole)
    with pytest.raises(LabelsError, match=rf"{second.name}, line 1: not a label record"):
        labels_from_endpoint_logs(root)
    assert labels_from_endpoint_logs(tmp_path / "nowhere").by_request == {}


def test_labels_from_a_csv_source(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text(
        "request,outcome,note\nr1,benign,x\nr2,malignant,y\nr3,benign,\nr3,malignant,z\nr4,,w\n"
    )
    context = ProviderContext(project_dir=tmp_path, state_dir=tmp_path / ".mlform", stack="dev")
    table = load_source({"kind": "file", "path": "labels.csv", "format": "csv"}, context)
    labels = labels_from_table(table, key="request", column="outcome", source="outcomes")
    # an id on several rows: one label per row of the request, in table order
    assert dict(labels.by_request) == {
        "r1": "benign",
        "r2": "malignant",
        "r3": ["benign", "malignant"],
        "r4": "",  # an empty cell: no label (join leaves the row out)
    }
    with pytest.raises(LabelsError) as missing:
        labels_from_table(table, key="id", column="outcome", source="outcomes")
    message = str(missing.value)
    assert "'outcomes'" in message and "key column 'id'" in message
    assert "request, outcome, note" in message
    with pytest.raises(LabelsError, match="no label column 'target'"):
        labels_from_table(table, key="request", column="target", source="outcomes")


def test_numeric_keys_become_strings() -> None:
    table = pa.table({"id": [101, 102], "target": [0, 1]})
    labels = labels_from_table(table, key="id", column="target", source="s")
    assert dict(labels.by_request) == {"101": 0, "102": 1}


# -- normalising -----------------------------------------------------------------------------


def test_label_form_names_and_indices() -> None:
    form = LabelForm("classification", CLASSES)
    assert form("benign") == "benign" and form("malignant") == "malignant"
    assert form(0) == "benign" and form(1) == "malignant"
    assert form(1.0) == "malignant" and form("1") == "malignant"
    assert form(np.int64(0)) == "benign"
    assert form(None) is None and form("") is None and form(" ") is None
    for bad in ("Benign", 2, -1, 0.5, True, [0], {"a": 1}):
        with pytest.raises(ValueError, match="one of the classes 'benign', 'malignant'"):
            form(bad)
    numeric = LabelForm("classification", [1, 2])
    assert numeric(1) == "1" and numeric(2) == "2"  # a class name wins over an index
    assert numeric(0) == "1"  # index 0
    booleans = LabelForm("classification", [False, True])
    assert booleans(True) == "True" and booleans(0) == "False"
    no_names = LabelForm("classification", [])
    assert no_names(3) == "3" and no_names("2") == "2"
    regression = LabelForm("regression")
    assert regression(2) == 2.0 and regression("2.5") == 2.5 and regression(float("nan")) is None
    for bad in ("high", True, [1.0]):
        with pytest.raises(ValueError, match="a number"):
            regression(bad)


# -- joining ---------------------------------------------------------------------------------


def predictions(
    ids: Sequence[str],
    rows_in: Sequence[int],
    predicted: Sequence[Any],
    *,
    task: str = "classification",
) -> Predictions:
    n = len(ids)
    pred = np.empty(n, dtype=object)
    pred[:] = list(predicted)
    return Predictions(
        feature_names=("a",),
        task=task,
        classes=CLASSES if task == "classification" else (),
        request_ids=tuple(ids),
        row_in_request=np.asarray(rows_in, dtype=np.int64),
        times=T0 + np.arange(n, dtype=np.float64),
        inputs=np.zeros((n, 1)),
        predicted=pred if task == "classification" else np.asarray(predicted, dtype=np.float64),
        probabilities=np.tile([0.25, 0.75], (n, 1)) if task == "classification" else None,
        refs=("model.diagnosis@v1",) * n,
    )


def test_join_by_request_id_with_list_and_scalar_labels() -> None:
    window = predictions(
        ids=["one", "multi", "multi", "multi", "scalar2", "scalar2", "nolabel", "short", "short"],
        rows_in=[0, 0, 1, 2, 0, 1, 0, 0, 1],
        predicted=["benign"] * 9,
    )
    labels = Labels(
        {
            "one": "malignant",
            "multi": ["benign", None, 1],  # row 1 has no label yet; 1 is an index
            "scalar2": 0,  # a scalar is the label of every row of its request
            "short": ["benign"],  # rows past the list's end stay unlabelled
            "elsewhere": "benign",  # not in the window
        }
    )
    joined = join(window, labels)
    assert isinstance(joined, Joined)
    assert joined.y_true.tolist() == [
        "malignant",
        "benign",
        "malignant",
        "benign",
        "benign",
        "benign",
    ]
    assert joined.y_pred.tolist() == ["benign"] * 6
    assert joined.matched_rows == 6 and joined.window_rows == 9
    assert joined.coverage == pytest.approx(6 / 9)
    assert joined.probabilities is not None and joined.probabilities.shape == (6, 2)
    assert joined.classes == CLASSES and joined.task == "classification"


def test_class_names_and_indices_join_the_same() -> None:
    window = predictions(ids=["a", "b", "c"], rows_in=[0, 0, 0], predicted=["benign"] * 3)
    by_name = join(window, Labels({"a": "benign", "b": "malignant", "c": "malignant"}))
    by_index = join(window, Labels({"a": 0, "b": 1, "c": "1"}))
    assert (
        by_name.y_true.tolist() == by_index.y_true.tolist() == ["benign", "malignant", "malignant"]
    )
    with pytest.raises(LabelsError, match=r"request 'b'.*'Malignant'.*classes"):
        join(window, Labels({"a": "benign", "b": "Malignant"}))


def test_join_regression_and_empty() -> None:
    window = predictions(
        ids=["x", "y", "y"], rows_in=[0, 0, 1], predicted=[1.0, 2.0, 3.0], task="regression"
    )
    joined = join(window, Labels({"x": "1.5", "y": [2.5, float("nan")]}))
    assert joined.y_true.dtype == np.float64 and joined.y_true.tolist() == [1.5, 2.5]
    assert joined.y_pred.tolist() == [1.0, 2.0]
    assert joined.probabilities is None
    nothing = join(window, Labels({}))
    assert nothing.matched_rows == 0 and nothing.window_rows == 3
    assert nothing.y_true.shape == (0,) and nothing.y_pred.shape == (0,)


def test_join_a_logged_window_with_logged_labels(tmp_path: Path, clock: _Clock) -> None:
    directory = tmp_path / "diagnosis" / "diagnosis-v1"
    log = make_log(directory)
    log.start()
    try:
        clock.now = T0
        log.append("q1", np.array([[1, 2], [3, 4]], dtype=np.float32), ["benign", "benign"], None)
        clock.now = T0 + 1
        log.append("q2", np.array([[5, 6]], dtype=np.float32), ["malignant"], None)
        clock.now = T0 + 100
        log.append_labels([("q1", ["benign", "malignant"]), ("q2", 1)])
    finally:
        log.close()
    rename(log.path, log_file_name(DEAD_PID))
    rename(log.labels_path, labels_file_name(DEAD_PID))
    window = read_window(tmp_path / "diagnosis", WindowSpec(size=10), now=T0 + 200)
    joined = join(window, labels_from_endpoint_logs(tmp_path / "diagnosis"))
    assert joined.matched_rows == 3
    assert joined.y_true.tolist() == ["benign", "malignant", "malignant"]
    assert joined.y_pred.tolist() == ["benign", "benign", "malignant"]
