"""A buffered log of the predictions a server makes, one JSON line per request.

Layout of the directory given to ``mlform serve --prediction-log DIR``::

    DIR/schema.json                {"feature_names": [...], "ref", "classes", "model",
                                    "version", "task"}, written once when the server starts
    DIR/predictions-<pid>.jsonl    one file per worker process, one line per successful
                                   infer request:
        {"id": "…", "time": "2026-01-31T12:00:00.123Z", "model": "diagnosis",
         "ref": "model.diagnosis@v2", "version": 2,
         "inputs": [[row floats]…],
         "outputs": {"predict": [labels…], "probabilities": [[…]…]}}

    DIR/labels-<pid>.jsonl         delayed ground truth posted to the server
                                   (``POST /v2/models/{name}/labels``), one line per
                                   accepted label, created with the first one:
        {"id": "…", "label": "benign" | ["benign", "malignant", …], "time": "…"}

``probabilities`` is present for classifiers only; non-finite inputs are written as
``null``. ``id`` is the V2 request's ``id`` (the client's, else one the server made up and
answered with); a label is a value for each row of that request (a list, in row order) or
one value, stored as the client sent it (:mod:`mlform.monitoring.labels` reads and joins
them). The request path only appends a tuple to an in-memory queue
(:meth:`PredictionLog.append`, :meth:`PredictionLog.append_labels`); a background thread
encodes and writes the queued records every ``interval`` seconds (0.5 s) or as soon as
``max_buffered`` (1000) are waiting, and :meth:`PredictionLog.close` writes everything
still queued and fsyncs the files. Monitors read the files with
:mod:`mlform.monitoring.window` (or any JSON-lines reader, e.g.
``duckdb.read_json('DIR/predictions-*.jsonl')``).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy.typing as npt
import orjson

from mlform.state.atomic import write_atomic

__all__ = ["SCHEMA_FILE", "PredictionLog", "labels_file_name", "log_file_name", "write_schema"]

SCHEMA_FILE = "schema.json"
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def log_file_name(pid: int) -> str:
    return f"predictions-{pid}.jsonl"


def labels_file_name(pid: int) -> str:
    return f"labels-{pid}.jsonl"


def write_schema(directory: Path, schema: Mapping[str, Any]) -> Path:
    """Write ``DIR/schema.json`` (creating DIR); returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SCHEMA_FILE
    write_atomic(path, orjson.dumps(dict(schema), option=orjson.OPT_INDENT_2).decode() + "\n")
    return path


def _iso(seconds: float) -> str:
    stamp = datetime.fromtimestamp(seconds, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


class PredictionLog:
    """The prediction log of one worker process (start it after forking)."""

    def __init__(
        self,
        directory: Path,
        *,
        model: str,
        ref: str,
        version: int,
        interval: float = 0.5,
        max_buffered: int = 1000,
    ) -> None:
        self.directory = Path(directory)
        self.model, self.ref, self.version = model, ref, version
        self.interval = interval
        self.max_buffered = max_buffered
        self.path: Path | None = None
        self.labels_path: Path | None = None  # set when the first label is written
        self.written = 0
        self.labels_written = 0
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._labels: collections.deque[tuple[str, Any, float]] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: IO[bytes] | None = None
        self._labels_file: IO[bytes] | None = None
        self._io_lock = threading.Lock()

    def start(self) -> None:
        """Open ``predictions-<pid>.jsonl`` and start the writer thread."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / log_file_name(os.getpid())
        self._file = self.path.open("ab")
        if self._file.tell() and not _ends_with_newline(self.path):
            # An earlier process with the same pid died mid-line: end its torn line so that
            # readers see it as one bad line, not as the start of ours.
            self._file.write(b"\n")
        self._thread = threading.Thread(target=self._run, name="mlform-prediction-log", daemon=True)
        self._thread.start()

    def append(
        self,
        request_id: str,
        inputs: npt.NDArray[Any],
        predict: Any,
        probabilities: npt.NDArray[Any] | None,
    ) -> None:
        """Queue one request's record (cheap: the writer thread encodes it)."""
        queue = self._queue
        queue.append((request_id, time.time(), inputs, predict, probabilities))
        if len(queue) >= self.max_buffered:
            self._wake.set()

    def append_labels(self, labels: Sequence[tuple[str, Any]]) -> None:
        """Queue ``(request id, label)`` pairs for ``labels-<pid>.jsonl`` (cheap, as above)."""
        stamp = time.time()
        queue = self._labels
        queue.extend((request_id, label, stamp) for request_id, label in labels)
        if len(queue) >= self.max_buffered:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self._write()

    def _write(self) -> None:
        with self._io_lock:
            if self._file is None:
                return
            queue = self._queue
            chunks: list[bytes] = []
            while True:
                try:
                    request_id, stamp, inputs, predict, probabilities = queue.popleft()
                except IndexError:
                    break
                outputs: dict[str, Any] = {"predict": predict}
                if probabilities is not None:
                    outputs["probabilities"] = probabilities
                record = {
                    "id": request_id,
                    "time": _iso(stamp),
                    "model": self.model,
                    "ref": self.ref,
                    "version": self.version,
                    "inputs": inputs,
                    "outputs": outputs,
                }
                chunks.append(orjson.dumps(record, option=_OPTIONS))
            if chunks:
                self._file.write(b"".join(chunks))
                self._file.flush()
                self.written += len(chunks)
            self._write_labels()

    def _write_labels(self) -> None:
        queue = self._labels
        if not queue:
            return
        chunks: list[bytes] = []
        while True:
            try:
                request_id, label, stamp = queue.popleft()
            except IndexError:
                break
            record = {"id": request_id, "label": label, "time": _iso(stamp)}
            chunks.append(orjson.dumps(record, option=_OPTIONS))
        if self._labels_file is None:
            self.labels_path = self.directory / labels_file_name(os.getpid())
            self._labels_file = self.labels_path.open("ab")
        self._labels_file.write(b"".join(chunks))
        self._labels_file.flush()
        self.labels_written += len(chunks)

    def close(self) -> None:
        """Write every queued record, fsync the files and stop the writer thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._write()
        with self._io_lock:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                self._file = None
            if self._labels_file is not None:
                self._labels_file.flush()
                os.fsync(self._labels_file.fileno())
                self._labels_file.close()
                self._labels_file = None
