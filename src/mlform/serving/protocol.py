"""The Open Inference Protocol (KServe V2) in JSON: decoding requests, encoding responses.

Pure functions, no I/O: the server hands a request body (bytes) to :func:`decode_request`
and gets back the model's input matrix (float32, ``(rows, n_features)``); it hands the
model's outputs to :func:`encode_outputs` and :func:`encode_response` and gets the response
document. Every problem with a request is a :class:`ProtocolError` carrying the HTTP status
and a message that says what was wrong and what was expected.

Two request layouts are accepted:

* one input named ``input-0`` with shape ``[rows, n_features]`` (or ``[n_features]``: one
  row), the columns in the model's feature order;
* one input per feature, named by the feature names, each with shape ``[rows]`` or
  ``[rows, 1]``.

``data`` is flat (row-major) or nested lists. The numeric datatypes (BOOL, INT*, UINT*,
FP16/32/64) become float32; BYTES elements are parsed with ``float()``. ``null`` becomes
NaN and is passed through to the model, as are the ``NaN``/``Infinity`` literals some
clients write. The binary tensor data extension (``Inference-Header-Content-Length`` and
``parameters.binary_data_size``) is accepted for inputs; responses are always JSON.

The outputs are ``predict`` (class labels for classifiers, values for regressors; shape
``[rows]``) and, for classifiers, ``probabilities`` (FP64, ``[rows, n_classes]``, columns in
the order of ``classes``).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

__all__ = [
    "INPUT_NAME",
    "PREDICT",
    "PROBABILITIES",
    "InferRequest",
    "ProtocolError",
    "Signature",
    "decode_request",
    "encode_outputs",
    "encode_response",
    "model_metadata",
    "new_request_id",
]

INPUT_NAME = "input-0"
PREDICT = "predict"
PROBABILITIES = "probabilities"

Array = npt.NDArray[Any]

_NUMERIC: dict[str, Any] = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
_DATATYPES = (*_NUMERIC, "BYTES")
_DATATYPE_LIST = ", ".join(_DATATYPES)


class ProtocolError(Exception):
    """A request the protocol rejects: ``status`` is the HTTP status, ``message`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _bad(message: str) -> ProtocolError:
    return ProtocolError(400, message)


class Signature:
    """What the protocol needs to know about a model: its features, task and classes."""

    def __init__(
        self,
        feature_names: Sequence[str],
        *,
        classification: bool,
        classes: Sequence[Any] = (),
        has_probabilities: bool | None = None,
    ) -> None:
        self.feature_names = tuple(str(n) for n in feature_names)
        if not self.feature_names:
            raise ValueError("a model signature needs at least one feature")
        self.n_features = len(self.feature_names)
        self.feature_index = {name: i for i, name in enumerate(self.feature_names)}
        self.classification = classification
        self.classes = tuple(classes) if classification else ()
        self.has_probabilities = (
            classification if has_probabilities is None else has_probabilities and classification
        )
        self.label_datatype, self._labels = _label_table(self.classes, classification)
        names = [PREDICT, PROBABILITIES] if self.has_probabilities else [PREDICT]
        self.output_names = tuple(names)
        self.feature_list = _short_list(self.feature_names)

    def labels(self, predicted: Array) -> Array | list[Any]:
        """The ``predict`` output: class labels for class ids, else the values as FP64."""
        if not self.classification:
            return np.ascontiguousarray(predicted, dtype=np.float64).reshape(-1)
        ids = np.asarray(predicted, dtype=np.int64).reshape(-1)
        if self._labels is None:
            return ids
        labels = self._labels[ids]
        return labels.tolist() if labels.dtype == object else labels

    def describe_inputs(self) -> str:
        return (
            f"one input named {INPUT_NAME!r} with shape [rows, {self.n_features}] (or "
            f"[{self.n_features}] for one row), or one input per feature, each with shape "
            f"[rows], named {self.feature_list}"
        )


def _label_table(classes: Sequence[Any], classification: bool) -> tuple[str, Array | None]:
    if not classification:
        return "FP64", None
    if not classes:
        return "INT64", None
    if all(isinstance(c, bool | np.bool_) for c in classes):
        return "BOOL", np.asarray(classes, dtype=np.bool_)
    if all(isinstance(c, int | np.integer) and not isinstance(c, bool) for c in classes):
        return "INT64", np.asarray(classes, dtype=np.int64)
    if all(isinstance(c, int | float | np.number) for c in classes):
        return "FP64", np.asarray(classes, dtype=np.float64)
    return "BYTES", np.asarray([str(c) for c in classes], dtype=object)


def _short_list(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A decoded inference request: its id (None when the client sent none), the model's
    input matrix (float32, ``(rows, n_features)``) and the requested outputs (None: all)."""

    id: str | None
    x: Array
    outputs: tuple[str, ...] | None


def new_request_id() -> str:
    return uuid.uuid4().hex


# -- decoding ----------------------------------------------------------------------------


def decode_request(
    body: bytes, signature: Signature, *, header_length: int | None = None
) -> InferRequest:
    """Decode and validate an infer request body into the model's input matrix.

    ``header_length`` is the ``Inference-Header-Content-Length`` header of the binary tensor
    data extension: the JSON document is the body's first ``header_length`` bytes and the
    inputs' binary data follows it.
    """
    binary = b""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise _bad(
                f"Inference-Header-Content-Length is {header_length} but the body has "
                f"{len(body)} bytes: it must be the length of the JSON part of the body"
            )
        body, binary = body[:header_length], body[header_length:]
    document = _parse_json(body)
    if not isinstance(document, dict):
        raise _bad(
            f"the request body must be a JSON object with 'inputs', not a JSON "
            f"{_json_kind(document)}"
        )
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _bad(f"'id' must be a string, not a JSON {_json_kind(request_id)}")
    inputs = document.get("inputs")
    if inputs is None:
        raise _bad(
            "the request has no 'inputs': expected "
            '{"inputs": [{"name": ..., "shape": ..., "datatype": ..., "data": [...]}]} with '
            + signature.describe_inputs()
        )
    if not isinstance(inputs, list) or not inputs:
        raise _bad(
            "'inputs' must be a non-empty list of input tensors; send "
            + signature.describe_inputs()
        )
    tensors = _Tensors(binary)
    if len(inputs) == 1 and _name_of(inputs[0], 0) not in signature.feature_index:
        x = _matrix_input(inputs[0], signature, tensors)
    else:
        x = _per_feature_inputs(inputs, signature, tensors)
    tensors.check_consumed()
    outputs = _requested_outputs(document.get("outputs"), signature)
    return InferRequest(request_id, x, outputs)


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        raise _bad("the request body is empty: expected a JSON object with 'inputs'")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error = str(exc)
    # Some clients (json.dumps of NaN) write NaN/Infinity literals, which are not JSON.
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise _bad(f"the request body is not valid JSON ({error})") from None


def _brief(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _name_of(tensor: Any, index: int) -> str:
    if not isinstance(tensor, dict):
        raise _bad(
            f"inputs[{index}] must be an object with name, shape, datatype and data, not a "
            f"JSON {_json_kind(tensor)}"
        )
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"inputs[{index}] has no 'name' (a non-empty string)")
    return name


class _Tensors:
    """Reads the binary data of inputs that use the binary tensor data extension."""

    def __init__(self, binary: bytes) -> None:
        self.binary = binary
        self.offset = 0

    def take(self, name: str, size: Any) -> bytes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise _bad(f"input {name!r}: parameters.binary_data_size must be an integer >= 0")
        end = self.offset + size
        if end > len(self.binary):
            raise _bad(
                f"input {name!r}: binary_data_size {size} goes past the end of the body "
                f"({len(self.binary) - self.offset} bytes of binary data left)"
            )
        chunk = self.binary[self.offset : end]
        self.offset = end
        return chunk

    def check_consumed(self) -> None:
        if self.offset != len(self.binary):
            raise _bad(
                f"the body has {len(self.binary) - self.offset} bytes of binary data that no "
                "input claims (check parameters.binary_data_size and "
                "Inference-Header-Content-Length)"
            )


def _shape_of(tensor: Mapping[str, Any], name: str) -> list[int]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in shape
    ):
        raise _bad(f"input {name!r}: 'shape' must be a list of integers, got {_brief(shape)}")
    if any(d < 0 for d in shape):
        raise _bad(f"input {name!r}: 'shape' {_brief(shape)} has a negative dimension")
    return shape


def _values(tensor: Mapping[str, Any], name: str, shape: list[int], tensors: _Tensors) -> Array:
    """The tensor's elements as a flat float32 array, checked against its shape."""
    datatype = tensor.get("datatype")
    if datatype not in _DATATYPES:
        raise _bad(
            f"input {name!r}: unsupported datatype {datatype!r:.40}; use one of {_DATATYPE_LIST}"
        )
    expected = math.prod(shape)
    parameters = tensor.get("parameters")
    binary_size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if binary_size is not None:
        flat = _binary_values(tensors.take(name, binary_size), datatype, name, expected)
    else:
        if "data" not in tensor:
            raise _bad(f"input {name!r} has no 'data'")
        flat = _json_values(tensor["data"], datatype, name)
    if flat.size != expected:
        raise _bad(
            f"input {name!r}: 'data' holds {flat.size} values but shape {shape} needs "
            f"{expected} (the product of the shape)"
        )
    return flat


def _json_values(data: Any, datatype: str, name: str) -> Array:
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        return _bytes_values(_flatten(data, name), name)
    try:
        with np.errstate(all="ignore"):
            array = np.asarray(data, dtype=np.float32)
    except (ValueError, TypeError, OverflowError):
        raise _bad(
            f"input {name!r}: 'data' must be numbers for datatype {datatype}, as a flat list "
            "(row-major) or nested lists of equal lengths"
        ) from None
    return array.reshape(-1)


def _flatten(data: list[Any], name: str) -> list[Any]:
    flat: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if len(stack) > 32:
                    raise _bad(f"input {name!r}: 'data' is nested too deeply")
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _bytes_values(items: Sequence[Any], name: str) -> Array:
    out = np.empty(len(items), dtype=np.float32)
    for i, item in enumerate(items):
        try:
            text = item.decode() if isinstance(item, bytes) else item
            if isinstance(text, bool) or not isinstance(text, str | int | float):
                raise TypeError
            out[i] = float(text)
        except (ValueError, TypeError, OverflowError, UnicodeDecodeError):
            raise _bad(
                f"input {name!r}: BYTES element {i} ({item!r:.40}) is not a number; BYTES "
                'inputs must hold numbers written as strings, e.g. "1.5"'
            ) from None
    return out


def _binary_values(chunk: bytes, datatype: str, name: str, expected: int) -> Array:
    if datatype == "BYTES":
        items: list[bytes] = []
        offset = 0
        while offset < len(chunk):
            if offset + 4 > len(chunk):
                raise _bad(f"input {name!r}: truncated BYTES element length in binary data")
            size = int.from_bytes(chunk[offset : offset + 4], "little")
            offset += 4
            if offset + size > len(chunk):
                raise _bad(f"input {name!r}: truncated BYTES element in binary data")
            items.append(chunk[offset : offset + size])
            offset += size
        return _bytes_values(items, name)
    dtype = np.dtype(_NUMERIC[datatype]).newbyteorder("<")
    if len(chunk) != expected * dtype.itemsize:
        raise _bad(
            f"input {name!r}: binary data has {len(chunk)} bytes but {expected} {datatype} "
            f"values need {expected * dtype.itemsize}"
        )
    with np.errstate(all="ignore"):
        return np.frombuffer(chunk, dtype=dtype).astype(np.float32)


def _matrix_input(tensor: Any, signature: Signature, tensors: _Tensors) -> Array:
    name = _name_of(tensor, 0)
    n = signature.n_features
    if name != INPUT_NAME:
        raise _bad(f"unknown input {name!r}: send {signature.describe_inputs()}")
    shape = _shape_of(tensor, name)
    if len(shape) == 1:
        rows, columns = 1, shape[0]
    elif len(shape) == 2:
        rows, columns = shape
    else:
        raise _bad(
            f"input {name!r}: shape {_brief(shape)} has {len(shape)} dimensions; expected "
            f"[rows, {n}] or [{n}]"
        )
    if columns != n:
        raise _bad(
            f"input {name!r}: shape {shape} has {columns} features per row but the model "
            f"takes {n} ({signature.feature_list})"
        )
    if rows == 0:
        raise _bad(f"input {name!r}: shape {shape} has no rows; send at least one row")
    flat = _values(tensor, name, shape, tensors)
    return flat.reshape(rows, n)


def _per_feature_inputs(inputs: list[Any], signature: Signature, tensors: _Tensors) -> Array:
    columns: dict[str, Array] = {}
    rows: int | None = None
    for index, tensor in enumerate(inputs):
        name = _name_of(tensor, index)
        if name not in signature.feature_index:
            raise _bad(f"unknown input {name!r}: send {signature.describe_inputs()}")
        if name in columns:
            raise _bad(f"input {name!r} is given more than once")
        shape = _shape_of(tensor, name)
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise _bad(
                f"input {name!r}: shape {_brief(shape)} is not [rows] or [rows, 1]; one input per "
                "feature holds one column"
            )
        if rows is None:
            rows = shape[0]
        elif shape[0] != rows:
            raise _bad(
                f"input {name!r} has {shape[0]} rows but {next(iter(columns))!r} has {rows}; "
                "every feature input needs the same number of rows"
            )
        columns[name] = _values(tensor, name, shape, tensors)
    missing = [n for n in signature.feature_names if n not in columns]
    if missing:
        raise _bad(
            f"the model takes {signature.n_features} features but {len(missing)} are missing "
            f"({_short_list(missing)}); send one input per feature, named "
            f"{signature.feature_list}, or one input {INPUT_NAME!r} with shape "
            f"[rows, {signature.n_features}]"
        )
    if not rows:
        raise _bad("the feature inputs have no rows; send at least one row")
    x = np.empty((rows, signature.n_features), dtype=np.float32)
    for name, column in columns.items():
        x[:, signature.feature_index[name]] = column
    return x


def _requested_outputs(value: Any, signature: Signature) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _bad('\'outputs\' must be a list of objects like {"name": "predict"}')
    names: list[str] = []
    for index, item in enumerate(value):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise _bad(f"outputs[{index}] must be an object with a 'name' (a string)")
        if name not in signature.output_names:
            raise _bad(
                f"unknown output {name!r}: this model's outputs are "
                f"{', '.join(signature.output_names)}"
            )
        if name not in names:
            names.append(name)
    return tuple(names) if names else None


# -- encoding ----------------------------------------------------------------------------


def encode_outputs(
    signature: Signature,
    predicted: Array,
    probabilities: Array | None,
    requested: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The response's ``outputs``: ``predict`` and (classifiers) ``probabilities``.

    ``predicted`` holds class ids (classifiers) or values; ``requested`` limits and orders
    the outputs (None: all). Data is flat and row-major, as numpy arrays or lists (encode
    with ``orjson.OPT_SERIALIZE_NUMPY``).
    """
    rows = int(np.shape(predicted)[0])
    outputs: list[dict[str, Any]] = []
    for name in requested or signature.output_names:
        if name == PREDICT:
            outputs.append(
                {
                    "name": PREDICT,
                    "datatype": signature.label_datatype,
                    "shape": [rows],
                    "data": signature.labels(predicted),
                }
            )
        elif name == PROBABILITIES and probabilities is not None:
            proba = np.ascontiguousarray(probabilities, dtype=np.float64)
            outputs.append(
                {
                    "name": PROBABILITIES,
                    "datatype": "FP64",
                    "shape": [rows, int(proba.shape[1])],
                    "data": proba.reshape(-1),
                }
            )
    return outputs


def encode_response(
    *, model_name: str, model_version: str, request_id: str, outputs: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "model_name": model_name,
        "model_version": model_version,
        "id": request_id,
        "outputs": outputs,
    }


def model_metadata(
    signature: Signature,
    *,
    name: str,
    version: str,
    platform: str,
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The model metadata document of ``GET /v2/models/{name}``."""
    outputs: list[dict[str, Any]] = [
        {"name": PREDICT, "datatype": signature.label_datatype, "shape": [-1]}
    ]
    if signature.has_probabilities:
        outputs.append(
            {
                "name": PROBABILITIES,
                "datatype": "FP64",
                "shape": [-1, max(len(signature.classes), 1)],
            }
        )
    return {
        "name": name,
        "versions": [version],
        "platform": platform,
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, signature.n_features]}],
        "outputs": outputs,
        "parameters": {"feature_names": list(signature.feature_names), **(parameters or {})},
    }
