"""Delayed ground truth for logged predictions: reading labels and joining them by request id.

Labels arrive after the predictions, keyed by the V2 request's ``id`` (the one the client
sent, else the one the server made up and answered with), in one of two ways:

* posted to a model server, ``POST /v2/models/{name}/labels`` with
  ``{"labels": [{"id": "<request id>", "label": <value or [values, one per row]>}, ...]}``;
  the server appends them to ``labels-<pid>.jsonl`` next to its predictions, and
  :func:`labels_from_endpoint_logs` reads those of every version directory of a deployment
  (a label posted to any version's server counts; for an id labelled twice the later
  label wins);
* a data source (a monitor's ``labels: {source, column, key}``) loaded as a table:
  :func:`labels_from_table`. An id on one row gets that row's label; an id on several rows
  gets the list of their labels, in table order, one per row of the request.

A label is a value for each row of its request: a list (in row order), or one value, which
is the label of every row of the request (a one-row request, usually; for several rows
with different labels send a list). ``null`` (a missing value) and an empty string (an
empty CSV cell) leave a row unlabelled.

Label values are normalised to the form of the logged predictions
(:class:`mlform.monitoring.window.Predictions`, ``predicted``) by :class:`LabelForm`:

* classifiers: the server logs ``predict`` as the model's class labels (``classes`` of the
  trained model; the class ids when it has none). A label may be a class name
  (``"benign"``; also ``1`` for a class ``1``, ``true`` for a class ``True``) or a class
  index into ``classes`` (``0``, ``1``, also ``"1"`` and ``1.0``); a value that is a class
  name is taken as one, so for classes ``[1, 2]`` the label ``1`` is the class ``1``. Labels
  become class names as strings, like ``predicted`` and ``classes``. Anything else is a
  :class:`LabelsError` naming the value, its request and the classes.
* regressors: numbers (or numeric strings) become float64; NaN leaves the row unlabelled.

:func:`join` pairs each row of a window with its label: :class:`Joined` holds the labelled
rows only, and how many rows the window had (coverage = ``matched_rows / window_rows``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from mlform.monitoring.window import LABELS_GLOB, Predictions, WindowError, parse_lines
from mlform.serving.routes import json_kind

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "Joined",
    "LabelForm",
    "Labels",
    "LabelsError",
    "join",
    "labels_from_endpoint_logs",
    "labels_from_table",
]

Array = npt.NDArray[Any]

_LABEL_LINE = 'a label record {"id": "<request id>", "label": ..., "time": "..."}'


class LabelsError(Exception):
    """Labels cannot be read or do not fit the model: the message says which and why."""


@dataclass(frozen=True, slots=True)
class Labels:
    """Ground truth by request id: a label, or a list of labels (one per row of the request)."""

    by_request: Mapping[str, Any]

    def __len__(self) -> int:
        return len(self.by_request)


@dataclass(frozen=True, slots=True)
class Joined:
    """The labelled rows of a window: truth, prediction and probabilities, row for row."""

    y_true: Array  # class names (object, str) for classifiers, float64 for regressors
    y_pred: Array  # the same form, from Predictions.predicted
    probabilities: Array | None  # (matched rows, classes) or None
    classes: tuple[str, ...]
    task: str
    matched_rows: int
    window_rows: int  # rows in the window (matched or not): coverage = matched/window

    @property
    def coverage(self) -> float:
        """The share of the window's rows that have a label (0 for an empty window)."""
        return self.matched_rows / self.window_rows if self.window_rows else 0.0


# -- normalising label values ----------------------------------------------------------------


class LabelForm:
    """Turns a label as given into the form of the logged predictions (see the module docs):
    a class name (str) for classifiers, a float for regressors, None for a missing label.
    A value that fits neither raises ValueError saying what is expected."""

    def __init__(self, task: str, classes: Sequence[Any] = ()) -> None:
        self.task = task
        self.regression = task == "regression"
        self.names = () if self.regression else tuple(str(c) for c in classes)
        self._index = {name: i for i, name in enumerate(self.names)}
        self._cache: dict[tuple[type, Any], str] = {}

    def expected(self) -> str:
        """What a label of this model may be, for messages."""
        if self.regression:
            return "a number"
        if not self.names:
            return "a class id (an integer >= 0)"
        shown = ", ".join(repr(n) for n in self.names[:12])
        more = f", … ({len(self.names)} in all)" if len(self.names) > 12 else ""
        return f"one of the classes {shown}{more} or a class index 0 to {len(self.names) - 1}"

    def __call__(self, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # missing (an empty CSV cell reads as "")
        if self.regression:
            return self._number(value)
        if isinstance(value, str | int | float | np.generic) and not isinstance(value, bytes):
            key = (type(value), value)
            try:
                return self._cache[key]
            except KeyError:
                pass
            except TypeError:  # unhashable numpy values
                return self._class(value)
            name = self._class(value)
            if len(self._cache) < 10_000:
                self._cache[key] = name
            return name
        raise ValueError(f"a label is {self.expected()}, not {json_kind(value)}")

    def _number(self, value: Any) -> float | None:
        if isinstance(value, bool | np.bool_) or not isinstance(
            value, int | float | str | np.number
        ):
            raise ValueError(f"a label of a regression model is a number, not {json_kind(value)}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"a label of a regression model is a number, not {value!r}") from None
        return None if math.isnan(number) else number

    def _class(self, value: Any) -> str:
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and math.isnan(value):
            raise ValueError(f"a label is {self.expected()}, not NaN")
        text = value if isinstance(value, str) else str(value)
        if text in self._index:
            return text
        index: int | None = None
        if isinstance(value, bool):
            index = None
        elif isinstance(value, int):
            index = value
        elif isinstance(value, float) and value.is_integer():
            index = int(value)
        elif isinstance(value, str) and value.strip().isdigit():
            index = int(value.strip())
        if index is not None and index >= 0:
            if not self.names:
                return str(index)
            if index < len(self.names):
                return self.names[index]
        raise ValueError(f"the label {value!r} is not {self.expected()}")


# -- reading labels --------------------------------------------------------------------------


def labels_from_endpoint_logs(deployment_dir: Path) -> Labels:
    """The labels posted to the servers of a deployment: every ``labels-*.jsonl`` of every
    version directory under ``deployment_dir``; for an id labelled more than once the
    label with the latest ``time`` wins. A torn last line is ignored; any other bad line is
    a :class:`LabelsError` naming the file and line."""
    entries: list[tuple[str, int, str, Any]] = []  # (time, order, id, label)
    root = Path(deployment_dir)
    if not root.is_dir():
        return Labels({})
    for path in sorted(root.glob(f"*/{LABELS_GLOB}")):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise LabelsError(f"cannot read {path}: {exc.strerror or exc}") from None
        end = data.rfind(b"\n") + 1  # a last line without a newline is being written
        try:
            records = parse_lines(path, data[:end], 0, last=True, what=_LABEL_LINE)
        except WindowError as exc:
            raise LabelsError(str(exc)) from None
        for index, record in enumerate(records):
            if (
                not isinstance(record, dict)
                or not isinstance(record.get("id"), str)
                or "label" not in record
            ):
                raise LabelsError(
                    f"{path}, line {index + 1}: not {_LABEL_LINE}: {str(record)[:200]}"
                )
            entries.append(
                (str(record.get("time") or ""), len(entries), record["id"], record["label"])
            )
    entries.sort()  # ISO times of one format sort as text; ties keep file order
    return Labels({request_id: label for _, _, request_id, label in entries})


def labels_from_table(table: pa.Table, *, key: str, column: str, source: str) -> Labels:
    """The labels of a data source loaded as a table (``mlform.providers.sources``):
    ``key`` holds the request id, ``column`` the label. An id on several rows gets the list
    of their labels (table order: one per row of the request); null labels are kept as
    None (unlabelled rows) and rows with a null id are left out."""
    missing = [name for name in (key, column) if name not in table.column_names]
    if missing:
        what = " and ".join(
            f"no {'key' if name == key else 'label'} column {name!r}" for name in missing
        )
        have = ", ".join(table.column_names) or "none"
        raise LabelsError(
            f"the labels source {source!r} has {what}; its columns: {have} (set the "
            "monitor's labels.key and labels.column)"
        )
    ids = table.column(key).to_pylist()
    values = table.column(column).to_pylist()
    by_request: dict[str, Any] = {}
    repeated: set[str] = set()
    for request_id, label in zip(ids, values, strict=True):
        if request_id is None:
            continue
        rid = request_id if isinstance(request_id, str) else str(request_id)
        if rid not in by_request:
            by_request[rid] = label
        elif rid in repeated:
            by_request[rid].append(label)
        else:
            by_request[rid] = [by_request[rid], label]
            repeated.add(rid)
    return Labels(by_request)


# -- joining ---------------------------------------------------------------------------------


def join(predictions: Predictions, labels: Labels) -> Joined:
    """The rows of ``predictions`` whose request has a label, with the label.

    A list label gives row ``k`` of its request the list's ``k``-th value (rows past the
    end of the list stay unlabelled); a single value is the label of every row of its
    request; None leaves a row unlabelled. Labels are normalised by :class:`LabelForm`; one
    that fits neither the classes nor the class indices is a :class:`LabelsError`.
    """
    form = LabelForm(predictions.task, predictions.classes)
    by_request = labels.by_request
    matched: list[int] = []
    truth: list[Any] = []
    rows_in = predictions.row_in_request.tolist()
    for i, request_id in enumerate(predictions.request_ids):
        label = by_request.get(request_id)
        if label is None:
            continue
        if isinstance(label, list | tuple):
            k = rows_in[i]
            if k >= len(label):
                continue
            label = label[k]
        try:
            value = form(label)
        except ValueError as exc:
            raise LabelsError(f"request {request_id!r}: {exc}") from None
        if value is None:
            continue
        matched.append(i)
        truth.append(value)
    index = np.asarray(matched, dtype=np.int64)
    y_true: Array
    if form.regression:
        y_true = np.asarray(truth, dtype=np.float64)
    else:
        y_true = np.empty(len(truth), dtype=object)
        y_true[:] = truth
    probabilities = predictions.probabilities
    return Joined(
        y_true=y_true,
        y_pred=predictions.predicted[index],
        probabilities=None if probabilities is None else probabilities[index],
        classes=predictions.classes,
        task=predictions.task,
        matched_rows=len(matched),
        window_rows=predictions.rows,
    )
