"""Reading windows of logged predictions (mlform.monitoring.window).

The logs are written with the server's own :class:`PredictionLog` (its clock replaced, so
that each request gets a chosen time) and then named as another worker's file, so the
format read here is the one the server writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlform.monitoring import window as window_module
from mlform.monitoring.window import (
    Predictions,
    WindowError,
    WindowSpec,
    read_window,
    retention_prune,
)
from mlform.serving import prediction_log
from mlform.serving.prediction_log import PredictionLog, log_file_name, write_schema

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
FEATURES = ("a", "b")
CLASSES = ("benign", "malignant")
DEAD_PID = 5_000_001  # above Linux's largest pid: never a running process

# (request id, time, rows of inputs)
Request = tuple[str, float, Sequence[Sequence[float]]]


class _Clock:
    """Stands in for the prediction log's ``time`` module."""

    def __init__(self) -> None:
        self.now = T0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Clock]:
    fake = _Clock()
    monkeypatch.setattr(prediction_log, "time", fake)
    yield fake


def version_dir(
    root: Path,
    version: int,
    *,
    features: Sequence[str] = FEATURES,
    task: str = "classification",
    classes: Sequence[Any] = CLASSES,
) -> Path:
    directory = root / f"diagnosis-v{version}"
    write_schema(
        directory,
        {
            "feature_names": list(features),
            "ref": f"model.diagnosis@v{version}",
            "classes": list(classes) if task == "classification" else [],
            "model": "diagnosis",
            "version": version,
            "task": task,
        },
    )
    return directory


def write_log(
    directory: Path,
    clock: _Clock,
    requests: Sequence[Request],
    *,
    pid: int = DEAD_PID,
    predict: Callable[[int, int], Any] | None = None,
    probabilities: bool = True,
) -> Path:
    """``predictions-<pid>.jsonl`` in ``directory`` holding ``requests``, written by a
    PredictionLog; row ``j`` of request ``i`` predicts ``predict(i, j)`` (default: the
    classes in turn)."""
    schema = json.loads((directory / "schema.json").read_text())
    classes = schema["classes"]
    log = PredictionLog(
        directory,
        model="diagnosis",
        ref=schema["ref"],
        version=schema["version"],
        interval=3600,
        max_buffered=1_000_000,
    )
    log.start()
    try:
        for i, (request_id, when, rows) in enumerate(requests):
            clock.now = when
            x = np.asarray(rows, dtype=np.float32)
            n = x.shape[0]
            if predict is not None:
                labels = [predict(i, j) for j in range(n)]
            else:
                labels = [classes[(i + j) % len(classes)] for j in range(n)]
            proba = None
            if probabilities and classes:
                proba = np.tile(np.linspace(0.1, 0.9, len(classes)), (n, 1))
            log.append(request_id, x, labels, proba)
    finally:
        log.close()
    assert log.path is not None
    target = directory / log_file_name(pid)
    os.replace(log.path, target)
    return target


def one_row(i: int) -> list[list[float]]:
    return [[float(i), float(-i)]]


# -- window specs ----------------------------------------------------------------------------


def test_window_spec_from_config() -> None:
    assert WindowSpec.from_config({"size": 500}) == WindowSpec(size=500)
    assert WindowSpec.from_config({"duration": "10m"}) == WindowSpec(duration_s=600.0)
    assert WindowSpec.from_config({"size": None, "duration": "2h"}).duration_s == 7200.0
    with pytest.raises(ValueError, match="exactly one"):
        WindowSpec.from_config({"size": 5, "duration": "1m"})
    with pytest.raises(ValueError, match="size"):
        WindowSpec.from_config({})
    with pytest.raises(ValueError, match="not a duration"):
        WindowSpec.from_config({"duration": "soon"})
    with pytest.raises(ValueError, match=">= 1"):
        WindowSpec(size=0)


# -- windows -------------------------------------------------------------------------------


@pytest.fixture
def deployment(tmp_path: Path, clock: _Clock) -> Path:
    """v1 (one worker) served r0-r3, then v2 (two workers) r4-r9 interleaved; r5 has 3 rows.

    Times: r<i> at T0 + 10 i seconds.
    """
    root = tmp_path / "predictions" / "diagnosis"
    v1 = version_dir(root, 1)
    write_log(v1, clock, [(f"r{i}", T0 + 10 * i, one_row(i)) for i in range(4)])
    v2 = version_dir(root, 2)
    rows = {i: one_row(i) for i in range(4, 10)}
    rows[5] = [[5.0, 0.0], [5.0, 1.0], [5.0, 2.0]]
    write_log(v2, clock, [(f"r{i}", T0 + 10 * i, rows[i]) for i in (4, 6, 8)], pid=DEAD_PID)
    write_log(v2, clock, [(f"r{i}", T0 + 10 * i, rows[i]) for i in (5, 7, 9)], pid=DEAD_PID + 1)
    return root


def test_duration_window_across_versions_and_workers(deployment: Path) -> None:
    window = read_window(deployment, WindowSpec(duration_s=1000), now=T0 + 1000)
    assert window.rows == 12
    assert window.request_ids == tuple(f"r{i}" for i in (0, 1, 2, 3, 4, 5, 5, 5, 6, 7, 8, 9))
    assert window.row_in_request.tolist() == [0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0]
    assert np.all(np.diff(window.times) >= 0)
    assert window.times[0] == pytest.approx(T0)
    assert window.feature_names == FEATURES and window.task == "classification"
    assert window.classes == CLASSES
    assert window.inputs.shape == (12, 2) and window.inputs.dtype == np.float64
    np.testing.assert_array_equal(window.inputs[5:8], [[5, 0], [5, 1], [5, 2]])
    assert window.refs[0] == "model.diagnosis@v1" and window.refs[-1] == "model.diagnosis@v2"
    assert set(window.predicted.tolist()) <= set(CLASSES)
    assert window.probabilities is not None and window.probabilities.shape == (12, 2)
    assert window.skipped == ()

    # the last 35 s: r7 (T0+70), r8, r9 (T0+90); the start is inclusive
    recent = read_window(deployment, WindowSpec(duration_s=30), now=T0 + 100)
    assert recent.request_ids == ("r7", "r8", "r9")
    # rows logged after `now` are not in the window
    past = read_window(deployment, WindowSpec(duration_s=25), now=T0 + 55)
    assert past.request_ids == ("r3", "r4", "r5", "r5", "r5")


def test_count_window_is_the_newest_rows(deployment: Path) -> None:
    newest = read_window(deployment, WindowSpec(size=4), now=T0 + 1000)
    assert newest.request_ids == ("r6", "r7", "r8", "r9")
    # a window may cut a request: the last two of r5's three rows
    cut = read_window(deployment, WindowSpec(size=6), now=T0 + 1000)
    assert cut.request_ids == ("r5", "r5", "r6", "r7", "r8", "r9")
    assert cut.row_in_request.tolist() == [1, 2, 0, 0, 0, 0]
    np.testing.assert_array_equal(cut.inputs[:2], [[5, 1], [5, 2]])
    everything = read_window(deployment, WindowSpec(size=100), now=T0 + 1000)
    assert everything.rows == 12
    # since: only what was logged after a rollback at T0 + 60
    after = read_window(deployment, WindowSpec(size=100), now=T0 + 1000, since=T0 + 60)
    assert after.request_ids == ("r7", "r8", "r9")


def test_empty_and_missing_directories(tmp_path: Path, clock: _Clock) -> None:
    missing = read_window(tmp_path / "nowhere", WindowSpec(size=10))
    assert missing.rows == 0 and missing.inputs.shape == (0, 0)
    root = tmp_path / "dep"
    version_dir(root, 1)
    empty = read_window(root, WindowSpec(duration_s=60))
    assert isinstance(empty, Predictions)
    assert empty.rows == 0 and empty.feature_names == FEATURES
    assert empty.inputs.shape == (0, 2) and empty.probabilities is None
    write_log(root / "diagnosis-v1", clock, [("old", T0, one_row(1))])
    assert read_window(root, WindowSpec(duration_s=60), now=T0 + 3600).rows == 0


def test_torn_and_unparsable_last_lines_are_ignored(tmp_path: Path, clock: _Clock) -> None:
    root = tmp_path / "dep"
    directory = version_dir(root, 1)
    path = write_log(directory, clock, [(f"r{i}", T0 + i, one_row(i)) for i in range(3)])
    whole = path.read_bytes()
    with path.open("ab") as handle:  # a writer in the middle of a line
        handle.write(whole.splitlines(keepends=True)[0][:25])
    window = read_window(root, WindowSpec(size=10), now=T0 + 10)
    assert window.request_ids == ("r0", "r1", "r2")
    path.write_bytes(whole + b'{"id": "r3", "time": \n')  # a last line that does not parse
    assert read_window(root, WindowSpec(duration_s=60), now=T0 + 10).rows == 3


def test_a_corrupt_line_in_the_middle_is_an_error(tmp_path: Path, clock: _Clock) -> None:
    root = tmp_path / "dep"
    directory = version_dir(root, 1)
    path = write_log(directory, clock, [(f"r{i}", T0 + i, one_row(i)) for i in range(4)])
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + b"not json at all\n" + b"".join(lines[1:]))
    with pytest.raises(WindowError, match=rf"{path.name}, line 2: not valid JSON"):
        read_window(root, WindowSpec(size=10), now=T0 + 10)
    # valid JSON that is not a prediction record is named too
    path.write_bytes(lines[0] + lines[1] + b'{"id": "x"}\n' + b"".join(lines[2:]))
    with pytest.raises(WindowError, match=rf"{path.name}, line 3: not a prediction record"):
        read_window(root, WindowSpec(duration_s=60), now=T0 + 10)


def test_versions_with_other_features_are_skipped(tmp_path: Path, clock: _Clock) -> None:
    root = tmp_path / "dep"
    old = version_dir(root, 1, features=("a", "b", "c"))
    write_log(old, clock, [("old", T0 + 1, [[1.0, 2.0, 3.0]])])
    new = version_dir(root, 2)
    write_log(new, clock, [("new", T0 + 2, one_row(2))])
    window = read_window(root, WindowSpec(size=10), now=T0 + 10)
    assert window.request_ids == ("new",)
    assert window.feature_names == FEATURES
    assert window.skipped == ("diagnosis-v1",)


def test_nulls_regressors_and_numeric_classes(tmp_path: Path, clock: _Clock) -> None:
    regression = version_dir(tmp_path / "reg", 1, task="regression", classes=())
    write_log(
        regression,
        clock,
        [("q0", T0, [[np.nan, 1.0], [2.0, 3.0]])],
        predict=lambda _i, j: 1.5 * (j + 1),
    )
    window = read_window(tmp_path / "reg", WindowSpec(size=10), now=T0 + 1)
    assert window.task == "regression" and window.classes == ()
    assert np.isnan(window.inputs[0, 0]) and window.inputs[1, 1] == 3.0
    assert window.predicted.dtype == np.float64 and window.predicted.tolist() == [1.5, 3.0]
    assert window.probabilities is None

    numeric = version_dir(tmp_path / "num", 1, classes=[0, 1])
    write_log(numeric, clock, [("n0", T0, [[1.0, 2.0], [3.0, 4.0]])], predict=lambda _i, j: j)
    window = read_window(tmp_path / "num", WindowSpec(size=10), now=T0 + 1)
    assert window.classes == ("0", "1")
    assert window.predicted.tolist() == ["0", "1"]  # class names as strings, like classes


def test_many_blocks_give_the_same_window(
    tmp_path: Path, clock: _Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "dep"
    directory = version_dir(root, 1)
    rng = np.random.default_rng(3)
    requests = [
        (f"r{i}", T0 + i * 0.5, rng.normal(size=(1 + i % 3, 2)).tolist()) for i in range(400)
    ]
    write_log(directory, clock, requests[0::2])
    write_log(directory, clock, requests[1::2], pid=DEAD_PID + 1)
    specs = [
        WindowSpec(size=1),
        WindowSpec(size=37),
        WindowSpec(size=500),
        WindowSpec(size=5000),
        WindowSpec(duration_s=30),
        WindowSpec(duration_s=1000),
    ]
    expected = [read_window(root, spec, now=T0 + 200) for spec in specs]
    monkeypatch.setattr(window_module, "_FIRST_BLOCK_BYTES", 300)
    monkeypatch.setattr(window_module, "_BLOCK_BYTES", 1000)  # many lines span blocks
    for spec, want in zip(specs, expected, strict=True):
        got = read_window(root, spec, now=T0 + 200)
        assert got.request_ids == want.request_ids, spec
        np.testing.assert_array_equal(got.inputs, want.inputs)
        np.testing.assert_array_equal(got.row_in_request, want.row_in_request)
        np.testing.assert_array_equal(got.times, want.times)
    assert expected[3].rows == sum(len(rows) for _, _, rows in requests)
    assert expected[0].request_ids == ("r399",)


def test_arrow_and_python_parsing_agree(
    tmp_path: Path, clock: _Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks are parsed by Arrow's JSON reader, with the Python (orjson) parser as the
    fallback that also names bad lines: both must read the same window."""
    fast = window_module._arrow_chunk
    cases: list[tuple[str, list[Any], Callable[[int, int], Any] | None]] = [
        ("classification", list(CLASSES), None),
        ("classification", [3, 5, 7], None),
        ("classification", [False, True], lambda i, j: (i + j) % 2 == 1),
        ("regression", [], lambda i, j: i * 0.25 - j),
    ]
    for n, (task, classes, predict) in enumerate(cases):
        root = tmp_path / f"dep-{n}"
        directory = version_dir(root, 1, classes=classes, task=task)
        rows = [[1.0, np.nan], [2.5, 3.0]]
        requests = [(f"r{i}", T0 + i, rows[: 1 + i % 2]) for i in range(20)]
        write_log(directory, clock, requests, predict=predict)
        calls: list[bool] = []

        def counting(data: bytes, version: Any, fast: Any = fast, calls: Any = calls) -> Any:
            result = fast(data, version)
            calls.append(result is not None)
            return result

        monkeypatch.setattr(window_module, "_arrow_chunk", counting)
        by_arrow = read_window(root, WindowSpec(size=100), now=T0 + 100)
        assert calls and all(calls)
        monkeypatch.setattr(window_module, "_arrow_chunk", lambda _data, _version: None)
        by_python = read_window(root, WindowSpec(size=100), now=T0 + 100)
        assert by_arrow.rows == by_python.rows == 30
        assert by_arrow.request_ids == by_python.request_ids
        assert by_arrow.refs == by_python.refs
        for field in ("row_in_request", "times", "inputs", "predicted", "probabilities"):
            np.testing.assert_array_equal(
                getattr(by_arrow, field), getattr(by_python, field), err_msg=field
            )
        assert by_arrow.predicted.dtype == by_python.predicted.dtype
        if task == "classification":
            assert set(by_arrow.predicted.tolist()) <= {str(c) for c in classes}


def test_pruned_files_are_never_opened(tmp_path: Path, clock: _Clock) -> None:
    """Files older than a duration window's start, and for a count window files older
    than the rows already in hand, are skipped: a broken one there goes unnoticed."""
    root = tmp_path / "dep"
    directory = version_dir(root, 1)
    write_log(directory, clock, [(f"r{i}", T0 + 100 + i, one_row(i)) for i in range(5)])
    broken = directory / log_file_name(DEAD_PID + 7)
    broken.write_bytes(b"garbage\n" * 3)
    os.utime(broken, (T0 + 10, T0 + 10))
    assert read_window(root, WindowSpec(duration_s=50), now=T0 + 110).rows == 5
    assert read_window(root, WindowSpec(size=3), now=T0 + 110).rows == 3
    with pytest.raises(WindowError, match="line 1"):
        read_window(root, WindowSpec(size=10), now=T0 + 110)


# -- retention -------------------------------------------------------------------------------


def test_retention_prune_deletes_old_files_only(tmp_path: Path, clock: _Clock) -> None:
    root = tmp_path / "dep"
    directory = version_dir(root, 1)
    day = 86_400.0
    old = write_log(directory, clock, [("a", T0, one_row(1))], pid=DEAD_PID)
    recent = write_log(directory, clock, [("b", T0 + 9 * day, one_row(2))], pid=DEAD_PID + 1)
    touched = write_log(directory, clock, [("c", T0, one_row(3))], pid=DEAD_PID + 2)
    late_line = write_log(directory, clock, [("d", T0 + 9 * day, one_row(4))], pid=DEAD_PID + 3)
    live = write_log(directory, clock, [("e", T0, one_row(5))], pid=os.getpid())
    labels = directory / "labels-5000001.jsonl"
    labels.write_text('{"id": "a", "label": "benign", "time": "2026-01-01T00:00:00.000Z"}\n')
    for path in (old, recent, late_line, live, labels):
        os.utime(path, (T0 + 60, T0 + 60))
    os.utime(recent, (T0 + 9 * day, T0 + 9 * day))
    os.utime(touched, (T0 + 9 * day, T0 + 9 * day))  # written to lately: kept
    # late_line: an old mtime, but its newest line is within the retention: kept
    deleted = retention_prune(root, 7 * day, now=T0 + 10 * day)
    assert deleted == 2
    assert not old.exists() and not labels.exists()
    assert recent.exists() and touched.exists() and late_line.exists() and live.exists()
    assert (directory / "schema.json").exists()
    assert retention_prune(root, 7 * day, now=T0 + 10 * day) == 0
    assert retention_prune(tmp_path / "nowhere", 1.0) == 0
