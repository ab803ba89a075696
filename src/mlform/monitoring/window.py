"""Reading a window of a deployment's logged predictions: what monitors look at.

A deployment's model servers log every successful infer request
(:mod:`mlform.serving.prediction_log`) under ``<state dir>/predictions/<deployment>/``, one
directory per model version that served (``<model>-v<N>/``), each holding ``schema.json``
and one ``predictions-<pid>.jsonl`` per worker process. :func:`read_window` reads them all
into one :class:`Predictions`, one entry per *row* (a request may carry many rows), ordered
by the time the request was logged, and keeps the rows of the window:

* ``WindowSpec(size=N)``: the newest N rows;
* ``WindowSpec(duration_s=D)``: the rows logged at or after ``now - D``;

leaving out rows logged after ``now`` (it defaults to the current time, so that only
matters when replaying a monitor at a time in the past) and, with ``since``, rows logged at
or before ``since`` (e.g. the time of a rollback).

Which versions count. The *newest* version directory is the one with the highest registry
version in its ``schema.json`` (then the most recently written ``schema.json``); it gives
the window its ``feature_names``, ``task`` and ``classes``. A version directory whose
schema differs from it in any of these is skipped (its rows would not line up column for
column); :attr:`Predictions.skipped` names the skipped directories. A directory without
``schema.json`` is skipped too.

What the fields hold. ``inputs`` are float64 with NaN where the log has ``null``.
``predicted`` holds the ``predict`` output: float64 for regressors; for classifiers an
object array of class names as strings, which is exactly what the server logged for models
with string classes (the usual case) and ``str()`` of the logged value otherwise (classes
``0``/``1`` are logged as numbers and read as ``"0"``/``"1"``), so that ``predicted`` and
``classes`` (the schema's classes, as strings) always compare equal. ``probabilities`` has
one column per class in the order of ``classes``; it is None for regressors, and when any
row in the window was logged without probabilities.

Torn and corrupt lines. A writer may be in the middle of writing a file's last line: an
incomplete final line (no newline) and an unparsable final line are ignored. Any other
line that is not a prediction record is a :class:`WindowError` naming the file and line.

Speed. Each file is read from its end, in blocks (256 KiB, then 4 times larger each time,
up to 4 MiB). A block's lines are parsed by Arrow's JSON reader (C++, on several threads,
no Python object per value) straight into NumPy arrays; a block it cannot read as
prediction records is parsed again with ``orjson``, which finds and names the bad line
(or drops a torn last one). Reading stops as soon as the rest of the file cannot be in the
window: the lines of one file are in time order (each worker appends its requests as it
stamps them). Files whose modification time (never
earlier than their newest line) is before the window's start are not opened; for a count
window the files are read newest first, and once N rows are in hand a file, or the rest of
one, that is older than the N-th newest of them is not read.

:func:`retention_prune` deletes whole log files (predictions and labels) whose newest line
is older than a retention period.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import orjson

if TYPE_CHECKING:  # pyarrow is imported when a window is read (model servers never do)
    import pyarrow as pa

__all__ = [
    "LABELS_GLOB",
    "PREDICTIONS_GLOB",
    "Predictions",
    "WindowError",
    "WindowSpec",
    "parse_lines",
    "read_window",
    "retention_prune",
]

Array = npt.NDArray[Any]

SCHEMA_FILE = "schema.json"  # as mlform.serving.prediction_log writes it
PREDICTIONS_GLOB = "predictions-*.jsonl"
LABELS_GLOB = "labels-*.jsonl"
_FIRST_BLOCK_BYTES = 256 * 1024  # the last block of a file; each earlier one 4 times larger
_BLOCK_BYTES = 4 * 1024 * 1024  # up to this
_VERSION_SUFFIX = re.compile(r"-v(\d+)$")
_PID_IN_NAME = re.compile(r"-(\d+)\.jsonl$")


class WindowError(Exception):
    """The prediction log cannot be read: the message names the file and line."""


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A monitor's window: the last ``size`` rows, or the rows of the last ``duration_s``."""

    size: int | None = None  # the last N rows
    duration_s: float | None = None  # rows logged in the last duration_s seconds

    def __post_init__(self) -> None:
        if (self.size is None) == (self.duration_s is None):
            raise ValueError("a window has exactly one of size (rows) or duration_s (seconds)")
        if self.size is not None and (isinstance(self.size, bool) or self.size < 1):
            raise ValueError(f"a window's size is a number of rows >= 1, not {self.size!r}")
        if self.duration_s is not None and not (
            math.isfinite(self.duration_s) and self.duration_s > 0
        ):
            raise ValueError(f"a window's duration must be positive, not {self.duration_s!r}")

    @classmethod
    def from_config(cls, window: Mapping[str, Any]) -> WindowSpec:
        """``{"size": 500}`` or ``{"duration": "10m"}`` (a monitor's ``window``)."""
        size, duration = window.get("size"), window.get("duration")
        if size is not None and duration is not None:
            raise ValueError("a window has exactly one of size (rows) or duration (e.g. 10m)")
        if size is not None:
            return cls(size=int(size))
        if duration is not None:
            if isinstance(duration, str):
                from mlform.spec.base import parse_duration  # (keeps the servers' imports lean)

                return cls(duration_s=parse_duration(duration))
            return cls(duration_s=float(duration))
        raise ValueError("a window needs size (rows) or duration (e.g. 10m)")


@dataclass(frozen=True, slots=True)
class Predictions:
    """The rows of a window of logged predictions, oldest first (see the module docs)."""

    feature_names: tuple[str, ...]
    task: str  # from schema.json
    classes: tuple[str, ...]  # class names for classifiers (schema.json), () for regressors
    request_ids: tuple[str, ...]  # one per ROW (a request's id repeated for its rows)
    row_in_request: Array  # int: index of the row within its request
    times: Array  # float epoch seconds per row
    inputs: Array  # (rows, features) float64, NaN for null
    predicted: Array  # class names (object, str) for classifiers, float64 for regressors
    probabilities: Array | None  # (rows, classes) or None
    refs: tuple[str, ...]  # per row: "model.diagnosis@v2"
    skipped: tuple[str, ...] = ()  # version directories left out (schema differs)

    @property
    def rows(self) -> int:
        return len(self.request_ids)


# -- schemas ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Version:
    directory: Path
    feature_names: tuple[str, ...]
    task: str
    classes: tuple[str, ...]
    number: int
    written: float  # schema.json's mtime
    raw_classes: tuple[Any, ...] = ()  # as in schema.json (the values the server logs)

    def same_shape(self, other: _Version) -> bool:
        return (self.feature_names, self.task, self.classes) == (
            other.feature_names,
            other.task,
            other.classes,
        )


def _read_schema(directory: Path) -> _Version | None:
    path = directory / SCHEMA_FILE
    try:
        raw = path.read_bytes()
        written = path.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise WindowError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        schema = orjson.loads(raw)
        if not isinstance(schema, dict):
            raise TypeError("not a JSON object")
        features = tuple(str(n) for n in schema["feature_names"])
        task = str(schema.get("task") or "classification")
        logged = tuple(schema.get("classes") or ()) if task != "regression" else ()
        classes = tuple(str(c) for c in logged)
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise WindowError(
            f"{path} is not a prediction log schema ({exc}); it should hold "
            '{"feature_names": [...], "task", "classes", ...}'
        ) from None
    number = schema.get("version")
    if not isinstance(number, int) or isinstance(number, bool):
        match = _VERSION_SUFFIX.search(directory.name)
        number = int(match.group(1)) if match else 0
    return _Version(directory, features, task, classes, number, written, logged)


def _versions(deployment_dir: Path) -> tuple[_Version | None, list[_Version], list[str]]:
    """(newest, the versions that match it, the names of those skipped)."""
    try:
        directories = sorted(p for p in Path(deployment_dir).iterdir() if p.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return None, [], []
    found: list[_Version] = []
    skipped: list[str] = []
    for directory in directories:
        version = _read_schema(directory)
        if version is None:
            if any(directory.glob(PREDICTIONS_GLOB)):
                skipped.append(directory.name)
            continue
        found.append(version)
    if not found:
        return None, [], skipped
    newest = max(found, key=lambda v: (v.number, v.written))
    kept = [v for v in found if v.same_shape(newest)]
    skipped += [v.directory.name for v in found if not v.same_shape(newest)]
    return newest, kept, sorted(skipped)


# -- reading files backwards -----------------------------------------------------------------


def _complete_end(handle: IO[bytes], size: int) -> int:
    """The offset just past the file's last newline (0 when it has none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        handle.seek(start)
        found = handle.read(pos - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        pos = start
    return 0


def _blocks_backwards(handle: IO[bytes], end: int) -> Iterator[tuple[int, bytes]]:
    """``(offset, whole lines)`` of the file up to ``end``, the last block first."""
    pos = end
    carry = b""  # the end of a line that starts before the block read last
    block = min(_FIRST_BLOCK_BYTES, _BLOCK_BYTES)
    while pos > 0:
        start = max(0, pos - block)
        block = min(block * 4, _BLOCK_BYTES)
        handle.seek(start)
        data = handle.read(pos - start) + carry
        pos = start
        if start > 0:
            cut = data.find(b"\n") + 1
            if cut == 0:  # one line longer than a block: read on
                carry = data
                continue
            carry, data = data[:cut], data[cut:]
            start += cut
        else:
            carry = b""
        if data:
            yield start, data


def _line_number(path: Path, offset: int, index: int) -> int:
    """The 1-based number of the ``index``-th line after byte ``offset`` of ``path``."""
    count = 0
    with path.open("rb") as handle:
        remaining = offset
        while remaining > 0:
            chunk = handle.read(min(remaining, _BLOCK_BYTES))
            if not chunk:
                break
            count += chunk.count(b"\n")
            remaining -= len(chunk)
    return count + index + 1


def parse_lines(path: Path, data: bytes, offset: int, *, last: bool, what: str) -> list[Any]:
    """The JSON values of ``data`` (whole lines of ``path`` starting at byte ``offset``).

    ``last``: ``data`` ends with the file's last line, which is dropped when it does not
    parse (a writer may be in the middle of it). Any other line that does not parse is a
    :class:`WindowError` naming the file and line; ``what`` says what a line should be.
    """
    body = data[:-1] if data.endswith(b"\n") else data
    if not body:
        return []
    try:
        values = orjson.loads(b"[" + body.replace(b"\n", b",") + b"]")
    except orjson.JSONDecodeError:
        pass
    else:
        if isinstance(values, list):
            return values
    lines = body.split(b"\n")
    parsed: list[Any] = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            parsed.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            if last and index == len(lines) - 1:
                continue
            number = _line_number(path, offset, index)
            raise WindowError(
                f"{path}, line {number}: not valid JSON ({exc}); each line should be {what}"
            ) from None
    return parsed


# -- records to arrays -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Chunk:
    times: Array
    ids: Array  # object
    row_in_request: Array
    inputs: Array
    predicted: Array
    probabilities: Array | None
    refs: Array  # object

    @property
    def rows(self) -> int:
        return int(self.times.shape[0])

    def take(self, index: Array) -> _Chunk:
        return _Chunk(
            self.times[index],
            self.ids[index],
            self.row_in_request[index],
            self.inputs[index],
            self.predicted[index],
            None if self.probabilities is None else self.probabilities[index],
            self.refs[index],
        )


_RECORD = (
    'a prediction record {"id", "time", "ref", "inputs": [[...]], "outputs": {"predict": [...]}}'
)


def _record_times(records: list[Any]) -> Array:
    """Epoch seconds of each record's ``time`` ("2026-01-31T12:00:00.123Z")."""
    stamps = [r["time"] for r in records]
    try:
        if all(s.endswith("Z") for s in stamps):
            parsed = np.array([s[:-1] for s in stamps], dtype="datetime64[ms]")
            return parsed.astype(np.int64) / 1000.0
    except ValueError:
        pass
    return np.array([datetime.fromisoformat(s).timestamp() for s in stamps], dtype=np.float64)


def _chunk(records: list[Any], version: _Version) -> tuple[_Chunk, Array]:
    """(the rows of ``records`` as arrays, each record's time)."""
    n_features = len(version.feature_names)
    inputs_of = [r["inputs"] for r in records]
    outputs = [r["outputs"] for r in records]
    counts = np.fromiter((len(x) for x in inputs_of), dtype=np.int64, count=len(records))
    predicts = [o["predict"] for o in outputs]
    predicted_counts = np.fromiter((len(p) for p in predicts), dtype=np.int64, count=len(records))
    if not np.array_equal(counts, predicted_counts):
        raise ValueError("a record has a different number of inputs and predictions")
    total = int(counts.sum())
    rows = [row for rows in inputs_of for row in rows]
    inputs = np.array(rows, dtype=np.float64) if rows else np.empty((0, n_features))
    if inputs.ndim != 2 or inputs.shape[1] != n_features:
        raise ValueError(f"a row does not have the schema's {n_features} features")
    flat = [p for predict in predicts for p in predict]
    predicted: Array
    if version.task == "regression":
        predicted = np.array(flat, dtype=np.float64)
    else:
        predicted = np.empty(total, dtype=object)
        predicted[:] = [p if type(p) is str else str(p) for p in flat]
    probabilities: Array | None = None
    if version.task != "regression" and all("probabilities" in o for o in outputs):
        proba = [row for o in outputs for row in o["probabilities"]]
        probabilities = np.array(proba, dtype=np.float64) if proba else np.empty((0, 0))
        if probabilities.ndim != 2 or probabilities.shape[0] != total:
            raise ValueError("the probabilities do not have one row per input row")
    starts = np.cumsum(counts) - counts
    ids = np.empty(len(records), dtype=object)
    ids[:] = [str(r["id"]) for r in records]
    refs = np.empty(len(records), dtype=object)
    refs[:] = [str(r["ref"]) for r in records]
    record_times = _record_times(records)
    chunk = _Chunk(
        times=np.repeat(record_times, counts),
        ids=np.repeat(ids, counts),
        row_in_request=np.arange(total, dtype=np.int64) - np.repeat(starts, counts),
        inputs=inputs,
        predicted=predicted,
        probabilities=probabilities,
        refs=np.repeat(refs, counts),
    )
    return chunk, record_times


def _checked_chunk(
    records: list[Any], version: _Version, path: Path, offset: int
) -> tuple[_Chunk, Array]:
    """(the rows, each record's time); a WindowError names the first bad line."""
    try:
        return _chunk(records, version)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        pass
    for index, record in enumerate(records):  # find the culprit to name its line
        try:
            _chunk([record], version)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            number = _line_number(path, offset, index)
            raise WindowError(
                f"{path}, line {number}: not a prediction record of {version.directory.name} "
                f"({type(exc).__name__}: {exc}); each line should be {_RECORD}"
            ) from None
    raise WindowError(f"{path}: its records do not fit together; each line should be {_RECORD}")


def _predict_type(version: _Version) -> pa.DataType:
    """The Arrow type of the logged ``predict`` values (the server's label datatype)."""
    import pyarrow as pa

    if version.task == "regression":
        return pa.float64()
    raw = version.raw_classes
    if not raw:
        return pa.int64()
    if all(isinstance(c, bool) for c in raw):
        return pa.bool_()
    if all(isinstance(c, int) and not isinstance(c, bool) for c in raw):
        return pa.int64()
    if all(isinstance(c, int | float) and not isinstance(c, bool) for c in raw):
        return pa.float64()
    return pa.string()


def _arrow_schema(version: _Version) -> pa.Schema:
    import pyarrow as pa

    matrix = pa.list_(pa.list_(pa.float64()))
    outputs = pa.struct([("predict", pa.list_(_predict_type(version))), ("probabilities", matrix)])
    return pa.schema(
        [
            ("id", pa.string()),
            ("time", pa.string()),
            ("ref", pa.string()),
            ("inputs", matrix),
            ("outputs", outputs),
        ]
    )


def _arrow_chunk(data: bytes, version: _Version) -> tuple[_Chunk, Array] | None:
    """:func:`_chunk` of whole lines with Arrow's JSON reader (several times faster than
    Python objects); None when anything is off (then the slow path finds and names it)."""
    import pyarrow as pa
    import pyarrow.json as pa_json

    try:
        table = pa_json.read_json(
            io.BytesIO(data),
            read_options=pa_json.ReadOptions(use_threads=True, block_size=1 << 20),
            parse_options=pa_json.ParseOptions(
                explicit_schema=_arrow_schema(version), unexpected_field_behavior="ignore"
            ),
        )
        return _from_arrow(table, version)
    except (pa.ArrowException, ValueError, TypeError, IndexError):
        return None


def _from_arrow(table: pa.Table, version: _Version) -> tuple[_Chunk, Array] | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    n_features = len(version.feature_names)
    if table.num_rows == 0:
        return None
    outputs = table.column("outputs")
    predict = pc.struct_field(outputs, "predict")
    inputs = table.column("inputs")
    required = (table.column("id"), table.column("time"), table.column("ref"), inputs, predict)
    if outputs.null_count or any(c.null_count for c in required):
        return None
    counts = pc.list_value_length(inputs).to_numpy().astype(np.int64)
    if not np.array_equal(counts, pc.list_value_length(predict).to_numpy()):
        return None
    rows = pc.list_flatten(inputs)
    widths = pc.list_value_length(rows)
    total = len(rows)
    if rows.null_count or (
        total and pc.min_max(widths).as_py() != {"min": n_features, "max": n_features}
    ):
        return None
    x = pc.list_flatten(rows).to_numpy().astype(np.float64, copy=False).reshape(total, n_features)
    stamps = pc.utf8_slice_codeunits(table.column("time"), 0, 23).cast(pa.timestamp("ms"))
    if not pc.all(pc.ends_with(table.column("time"), "Z")).as_py():
        return None
    record_times = stamps.to_numpy().astype("datetime64[ms]").astype(np.int64) / 1000.0
    values = pc.list_flatten(predict)
    predicted: Array
    if version.task == "regression":
        predicted = values.to_numpy().astype(np.float64, copy=False)
    else:
        position = pc.index_in(values, value_set=pa.array(version.raw_classes, values.type))
        if position.null_count:  # a value that is not a class: the slow path str()s it
            return None
        names = np.empty(len(version.classes), dtype=object)
        names[:] = version.classes
        predicted = names[position.to_numpy()]
    probabilities: Array | None = None
    proba = pc.struct_field(outputs, "probabilities")
    if version.task != "regression" and proba.null_count == 0:
        proba_rows = pc.list_flatten(proba)
        if len(proba_rows) != total:
            return None
        widths = pc.list_value_length(proba_rows)
        if total:
            bounds = pc.min_max(widths).as_py()
            if bounds["min"] != bounds["max"] or proba_rows.null_count:
                return None
            width = int(bounds["min"])
        else:
            width = 0
        probabilities = (
            pc.list_flatten(proba_rows)
            .to_numpy()
            .astype(np.float64, copy=False)
            .reshape(total, width)
        )
    starts = np.cumsum(counts) - counts
    chunk = _Chunk(
        times=np.repeat(record_times, counts),
        ids=np.repeat(table.column("id").to_numpy(), counts),
        row_in_request=np.arange(total, dtype=np.int64) - np.repeat(starts, counts),
        inputs=x,
        predicted=predicted,
        probabilities=probabilities,
        refs=np.repeat(table.column("ref").to_numpy(), counts),
    )
    return chunk, record_times


@dataclass(slots=True)
class _Bounds:
    since: float  # rows after this (exclusive)
    start: float  # rows at or after this
    end: float  # rows at or before this

    @property
    def lowest(self) -> float:
        return max(self.since, self.start)

    def mask(self, times: Array) -> Array:
        keep: Array = (times >= self.start) & (times <= self.end)
        if self.since > -math.inf:
            keep &= times > self.since
        return keep


def _read_file(
    path: Path, version: _Version, bounds: _Bounds, need: int | None, cutoff: float
) -> list[_Chunk]:
    """The rows of ``path`` in ``bounds``, reading from the end; stops once the rest is
    older than the window's start or than ``cutoff``, or ``need`` rows are in hand."""
    chunks: list[_Chunk] = []
    rows = 0
    try:
        handle = path.open("rb")
    except FileNotFoundError:  # pruned meanwhile
        return chunks
    with handle:
        size = handle.seek(0, os.SEEK_END)
        end = _complete_end(handle, size)
        last = True
        for offset, data in _blocks_backwards(handle, end):
            parsed = _arrow_chunk(data, version)
            if parsed is None:
                records = parse_lines(path, data, offset, last=last, what=_RECORD)
                if not records:
                    last = False
                    continue
                parsed = _checked_chunk(records, version, path, offset)
            last = False
            chunk, record_times = parsed
            keep = bounds.mask(chunk.times)
            if not keep.all():
                chunk = chunk.take(np.flatnonzero(keep))
            if chunk.rows:
                chunks.append(chunk)
                rows += chunk.rows
            oldest = float(record_times.min())
            if oldest < bounds.lowest or oldest < cutoff:
                break
            if need is not None and rows >= need:
                break
    chunks.reverse()
    return chunks


def _gather(parts: list[Array], position: Array | None, rows: int) -> Array:
    """The rows of ``parts`` (stacked) in window order: row ``i`` of the stack goes to
    ``position[i]`` (-1: left out), in one pass; None: the stack as it is."""
    if position is None:
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
    out = np.empty((rows, *parts[0].shape[1:]), dtype=parts[0].dtype)
    offset = 0
    for part in parts:
        where = position[offset : offset + part.shape[0]]
        offset += part.shape[0]
        keep = where >= 0
        if keep.all():
            out[where] = part
        elif keep.any():
            out[where[keep]] = part[keep]
    return out


def _assemble(chunks: list[_Chunk], need: int | None) -> _Chunk:
    """The rows of ``chunks`` ordered by time (stable), the newest ``need`` of them."""
    times = np.concatenate([c.times for c in chunks])
    total = times.shape[0]
    order = np.argsort(times, kind="stable")
    if need is not None and total > need:
        order = order[-need:]
    position: Array | None = None
    if order.shape[0] != total or np.any(order != np.arange(total)):
        position = np.full(total, -1, dtype=np.int64)
        position[order] = np.arange(order.shape[0])
    rows = order.shape[0]
    probabilities = [c.probabilities for c in chunks if c.probabilities is not None]
    return _Chunk(
        times=times[order] if position is not None else times,
        ids=_gather([c.ids for c in chunks], position, rows),
        row_in_request=_gather([c.row_in_request for c in chunks], position, rows),
        inputs=_gather([c.inputs for c in chunks], position, rows),
        predicted=_gather([c.predicted for c in chunks], position, rows),
        probabilities=(
            _gather(probabilities, position, rows) if len(probabilities) == len(chunks) else None
        ),
        refs=_gather([c.refs for c in chunks], position, rows),
    )


def _empty(version: _Version | None, skipped: list[str]) -> Predictions:
    features = version.feature_names if version is not None else ()
    task = version.task if version is not None else "classification"
    classes = version.classes if version is not None else ()
    return Predictions(
        feature_names=features,
        task=task,
        classes=classes,
        request_ids=(),
        row_in_request=np.empty(0, dtype=np.int64),
        times=np.empty(0, dtype=np.float64),
        inputs=np.empty((0, len(features)), dtype=np.float64),
        predicted=np.empty(0, dtype=np.float64 if task == "regression" else object),
        probabilities=None,
        refs=(),
        skipped=tuple(skipped),
    )


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return -math.inf


def read_window(
    deployment_dir: Path,
    window: WindowSpec,
    *,
    now: float | None = None,
    since: float | None = None,
) -> Predictions:
    """The window of the predictions logged under ``deployment_dir``
    (``<state dir>/predictions/<deployment>``); see the module docs. No directory, or no
    rows in the window: a :class:`Predictions` with 0 rows."""
    now = time.time() if now is None else float(now)
    newest, versions, skipped = _versions(Path(deployment_dir))
    if newest is None:
        return _empty(None, skipped)
    bounds = _Bounds(
        since=-math.inf if since is None else float(since),
        start=-math.inf if window.duration_s is None else now - window.duration_s,
        end=now,
    )
    files = [
        (_mtime(path), path, version)
        for version in versions
        for path in version.directory.glob(PREDICTIONS_GLOB)
    ]
    files.sort(key=lambda f: (f[0], str(f[1])), reverse=True)  # newest first
    need = window.size
    chunks: list[_Chunk] = []
    cutoff = -math.inf  # for a count window: the need-th newest time read so far
    for mtime, path, version in files:
        if mtime < bounds.lowest or mtime < cutoff:
            continue
        found = _read_file(path, version, bounds, need, cutoff)
        chunks += found
        if need is not None and found:
            times = np.concatenate([c.times for c in chunks])
            if times.shape[0] >= need:
                cutoff = float(np.partition(times, times.shape[0] - need)[times.shape[0] - need])
    chunks = [c for c in chunks if c.rows]
    if not chunks:
        return _empty(newest, skipped)
    rows = _assemble(chunks, need)
    return Predictions(
        feature_names=newest.feature_names,
        task=newest.task,
        classes=newest.classes,
        request_ids=tuple(rows.ids.tolist()),
        row_in_request=rows.row_in_request,
        times=rows.times,
        inputs=rows.inputs,
        predicted=rows.predicted,
        probabilities=rows.probabilities,
        refs=tuple(rows.refs.tolist()),
        skipped=tuple(skipped),
    )


# -- retention -------------------------------------------------------------------------------


def _newest_line_time(path: Path) -> float | None:
    """The ``time`` of the file's last complete line, None when it has none or no time."""
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        end = _complete_end(handle, size)
        if end == 0:
            return None
        start = end - 1
        while start > 0:
            begin = max(0, start - 65536)
            handle.seek(begin)
            found = handle.read(start - begin).rfind(b"\n")
            if found >= 0:
                start = begin + found + 1
                break
            start = begin
        handle.seek(start)
        line = handle.read(end - start)
    try:
        record = orjson.loads(line)
        return float(_record_times([record])[0])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def _writer_alive(path: Path) -> bool:
    """Whether the process named in ``predictions-<pid>.jsonl`` still runs (this host)."""
    match = _PID_IN_NAME.search(path.name)
    if match is None:
        return False
    pid = int(match.group(1))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (another user's), or cannot tell: keep
    return True


def retention_prune(deployment_dir: Path, retention_s: float, *, now: float | None = None) -> int:
    """Delete the prediction and label log files under ``deployment_dir`` whose newest line
    is older than ``retention_s``; returns how many were deleted.

    Kept: files written to within the retention (by modification time), files whose newest
    line is within it, and files of a process that is still running (the pid in the file
    name), which may still append to them. ``schema.json`` and the directories stay.
    """
    if retention_s < 0:
        raise ValueError(f"the retention must be >= 0 seconds, not {retention_s!r}")
    now = time.time() if now is None else float(now)
    oldest_kept = now - retention_s
    deleted = 0
    root = Path(deployment_dir)
    if not root.is_dir():
        return 0
    for pattern in (PREDICTIONS_GLOB, LABELS_GLOB):
        for path in sorted(root.glob(f"*/{pattern}")):
            if _mtime(path) >= oldest_kept or _writer_alive(path):
                continue
            newest = _newest_line_time(path)
            if newest is not None and newest >= oldest_kept:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                deleted += 1
    return deleted
