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

``probabilities`` is present for classifiers only; non-finite inputs are written as
``null``. The request path only appends a tuple to an in-memory queue
(:meth:`PredictionLog.append`); a background thread encodes and writes the queued records
every ``interval`` seconds (0.5 s) or as soon as ``max_buffered`` (1000) are waiting, and
:meth:`PredictionLog.close` writes everything still queued and fsyncs the file. Monitors
read the files with any JSON-lines reader (e.g. ``duckdb.read_json('DIR/*.jsonl')``).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy.typing as npt
import orjson

from mlform.state.atomic import write_atomic

__all__ = ["SCHEMA_FILE", "PredictionLog", "log_file_name", "write_schema"]

SCHEMA_FILE = "schema.json"
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def log_file_name(pid: int) -> str:
    return f"predictions-{pid}.jsonl"


def write_schema(directory: Path, schema: Mapping[str, Any]) -> Path:
    """Write ``DIR/schema.json`` (creating DIR); returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SCHEMA_FILE
    write_atomic(path, orjson.dumps(dict(schema), option=orjson.OPT_INDENT_2).decode() + "\n")
    return path


def _iso(seconds: float) -> str:
    stamp = datetime.fromtimestamp(seconds, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


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
        self.written = 0
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: IO[bytes] | None = None
        self._io_lock = threading.Lock()

    def start(self) -> None:
        """Open ``predictions-<pid>.jsonl`` and start the writer thread."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / log_file_name(os.getpid())
        self._file = self.path.open("ab")
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

    def close(self) -> None:
        """Write every queued record, fsync the file and stop the writer thread."""
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
