"""The V2 JSON protocol of ``mlform serve``: decoding requests and encoding responses."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import orjson
import pytest

from mlform.serving.protocol import (
    INPUT_NAME,
    ProtocolError,
    Signature,
    decode_request,
    encode_outputs,
    encode_response,
    model_metadata,
    new_request_id,
)

FEATURES = ("radius", "texture", "area")
CLASSIFIER = Signature(FEATURES, classification=True, classes=("malignant", "benign"))
REGRESSOR = Signature(FEATURES, classification=False)


def _body(inputs: Any, **extra: Any) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def _matrix(data: Any, shape: Any, datatype: str = "FP32", name: str = INPUT_NAME) -> bytes:
    return _body([{"name": name, "shape": shape, "datatype": datatype, "data": data}])


def _error(body: bytes, signature: Signature = CLASSIFIER, **kwargs: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_request(body, signature, **kwargs)
    return info.value


# -- the input matrix ------------------------------------------------------------------------


def test_flat_data_in_row_major_order() -> None:
    request = decode_request(_matrix([1, 2, 3, 4, 5, 6], [2, 3]), CLASSIFIER)
    assert request.x.dtype == np.float32
    np.testing.assert_array_equal(request.x, [[1, 2, 3], [4, 5, 6]])
    assert request.id is None
    assert request.outputs is None


def test_nested_data_is_flattened() -> None:
    request = decode_request(_matrix([[1, 2, 3], [4, 5, 6]], [2, 3]), CLASSIFIER)
    np.testing.assert_array_equal(request.x, [[1, 2, 3], [4, 5, 6]])


def test_one_dimensional_shape_is_one_row() -> None:
    request = decode_request(_matrix([1.5, 2.5, 3.5], [3]), CLASSIFIER)
    assert request.x.shape == (1, 3)


def test_request_id_is_kept() -> None:
    body = _body([{"name": INPUT_NAME, "shape": [3], "datatype": "FP64", "data": [1, 2, 3]}])
    document = json.loads(body)
    document["id"] = "req-7"
    assert decode_request(json.dumps(document).encode(), CLASSIFIER).id == "req-7"


@pytest.mark.parametrize(
    "datatype",
    ["INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP64"],
)
def test_numeric_datatypes_become_float32(datatype: str) -> None:
    request = decode_request(_matrix([1, 2, 3], [1, 3], datatype), CLASSIFIER)
    assert request.x.dtype == np.float32
    np.testing.assert_array_equal(request.x, [[1, 2, 3]])


def test_bool_datatype() -> None:
    request = decode_request(_matrix([True, False, True], [1, 3], "BOOL"), CLASSIFIER)
    np.testing.assert_array_equal(request.x, [[1, 0, 1]])


def test_bytes_datatype_parses_numbers() -> None:
    request = decode_request(_matrix(["1.5", "2", "-3e2"], [1, 3], "BYTES"), CLASSIFIER)
    np.testing.assert_array_equal(request.x, [[1.5, 2, -300]])


def test_bytes_that_are_not_numbers_name_the_input() -> None:
    error = _error(_matrix(["1.5", "abc", "2"], [1, 3], "BYTES"))
    assert error.status == 400
    assert "input-0" in error.message and "'abc'" in error.message


def test_null_and_nan_pass_through_as_nan() -> None:
    request = decode_request(_matrix([None, 1, 2], [1, 3]), CLASSIFIER)
    assert math.isnan(request.x[0, 0])
    literal = b'{"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP32", ' + (
        b'"data": [NaN, Infinity, 1]}]}'
    )
    request = decode_request(literal, CLASSIFIER)
    assert math.isnan(request.x[0, 0]) and math.isinf(request.x[0, 1])


def test_values_beyond_float32_become_infinite_without_warnings() -> None:
    request = decode_request(_matrix([1e300, -1e300, 0], [1, 3], "FP64"), CLASSIFIER)
    assert request.x[0, 0] == np.inf and request.x[0, 1] == -np.inf


def test_one_input_per_feature_in_any_order() -> None:
    inputs = [
        {"name": "area", "shape": [2], "datatype": "FP32", "data": [3, 6]},
        {"name": "radius", "shape": [2, 1], "datatype": "INT32", "data": [[1], [4]]},
        {"name": "texture", "shape": [2], "datatype": "BYTES", "data": ["2", "5"]},
    ]
    request = decode_request(_body(inputs), CLASSIFIER)
    np.testing.assert_array_equal(request.x, [[1, 2, 3], [4, 5, 6]])


def test_per_feature_inputs_missing_a_feature() -> None:
    inputs = [
        {"name": "area", "shape": [1], "datatype": "FP32", "data": [3]},
        {"name": "radius", "shape": [1], "datatype": "FP32", "data": [1]},
    ]
    error = _error(_body(inputs))
    assert error.status == 400 and "texture" in error.message and "missing" in error.message


def test_per_feature_inputs_with_different_rows() -> None:
    inputs = [
        {"name": "radius", "shape": [2], "datatype": "FP32", "data": [1, 2]},
        {"name": "texture", "shape": [1], "datatype": "FP32", "data": [1]},
        {"name": "area", "shape": [2], "datatype": "FP32", "data": [1, 2]},
    ]
    assert "rows" in _error(_body(inputs)).message


def test_per_feature_input_given_twice() -> None:
    inputs = [
        {"name": "radius", "shape": [1], "datatype": "FP32", "data": [1]},
        {"name": "radius", "shape": [1], "datatype": "FP32", "data": [1]},
    ]
    assert "more than once" in _error(_body(inputs)).message


def test_per_feature_input_with_two_columns() -> None:
    inputs = [{"name": "radius", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]
    assert "[rows, 1]" in _error(_body(inputs)).message


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[1, 2, 3]", "JSON object"),
        (b'"text"', "JSON object"),
        (b"{}", "no 'inputs'"),
        (b'{"inputs": []}', "non-empty list"),
        (b'{"inputs": {"name": "input-0"}}', "non-empty list"),
        (b'{"inputs": [42]}', "must be an object"),
        (b'{"inputs": [{"shape": [3]}]}', "no 'name'"),
        (b'{"id": 5, "inputs": []}', "'id' must be a string"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
    ],
)
def test_malformed_requests(body: bytes, expected: str) -> None:
    error = _error(body)
    assert error.status == 400
    assert expected in error.message


def test_data_length_must_match_shape() -> None:
    error = _error(_matrix([1, 2, 3, 4], [2, 3]))
    assert "4 values" in error.message and "needs 6" in error.message


def test_huge_shape_with_tiny_data_is_rejected_without_allocating() -> None:
    error = _error(_matrix([1, 2, 3], [10**12, 3]))
    assert error.status == 400 and "needs 3000000000000" in error.message


def test_float_shape_is_rejected() -> None:
    error = _error(_matrix([1, 2, 3], [1e12, 3]))
    assert "list of integers" in error.message


@pytest.mark.parametrize("shape", [[-1, 3], [1, -3]])
def test_negative_dimensions(shape: list[int]) -> None:
    assert "negative" in _error(_matrix([1, 2, 3], shape)).message


@pytest.mark.parametrize("shape", ["3", [1.5, 3], [True, 3], None, [[1], 3]])
def test_non_integer_shapes(shape: Any) -> None:
    assert "list of integers" in _error(_matrix([1, 2, 3], shape)).message


def test_zero_rows() -> None:
    assert "no rows" in _error(_matrix([], [0, 3])).message


def test_three_dimensional_shape() -> None:
    assert "3 dimensions" in _error(_matrix([1, 2, 3], [1, 1, 3])).message


def test_wrong_number_of_features_names_them() -> None:
    error = _error(_matrix([1, 2, 3, 4], [1, 4]))
    assert error.status == 400
    assert "4 features" in error.message and "takes 3" in error.message
    assert "radius, texture, area" in error.message


@pytest.mark.parametrize("datatype", ["BF16", "STRING", "fp32", None, 7])
def test_unsupported_datatype(datatype: Any) -> None:
    error = _error(_matrix([1, 2, 3], [1, 3], datatype))
    assert "unsupported datatype" in error.message and "FP32" in error.message


def test_unknown_input_name() -> None:
    error = _error(_matrix([1, 2, 3], [1, 3], name="features"))
    assert "unknown input 'features'" in error.message and "input-0" in error.message


def test_ragged_nested_data() -> None:
    error = _error(_matrix([[1, 2, 3], [4, 5]], [2, 3]))
    assert "nested lists of equal lengths" in error.message


def test_non_numeric_data_for_a_numeric_datatype() -> None:
    assert "must be numbers" in _error(_matrix([1, {"a": 1}, 3], [1, 3])).message
    assert "must be numbers" in _error(_matrix([1, "abc", 3], [1, 3])).message


def test_missing_data() -> None:
    body = _body([{"name": INPUT_NAME, "shape": [1, 3], "datatype": "FP32"}])
    assert "no 'data'" in _error(body).message


def test_deeply_nested_bytes_data() -> None:
    data: Any = ["1"]
    for _ in range(40):
        data = [data]
    body = _body([{"name": INPUT_NAME, "shape": [1, 3], "datatype": "BYTES", "data": data}])
    assert "nested too deeply" in _error(body).message


# -- requested outputs -------------------------------------------------------------------------


def test_outputs_filter() -> None:
    body = _matrix([1, 2, 3], [3])
    document = json.loads(body)
    document["outputs"] = [{"name": "probabilities"}]
    request = decode_request(json.dumps(document).encode(), CLASSIFIER)
    assert request.outputs == ("probabilities",)


def test_unknown_output() -> None:
    document = json.loads(_matrix([1, 2, 3], [3]))
    document["outputs"] = [{"name": "probabilities"}]
    error = _error(json.dumps(document).encode(), REGRESSOR)
    assert "unknown output 'probabilities'" in error.message and "predict" in error.message


def test_malformed_outputs() -> None:
    document = json.loads(_matrix([1, 2, 3], [3]))
    document["outputs"] = "predict"
    assert "'outputs' must be a list" in _error(json.dumps(document).encode()).message
    document["outputs"] = [{"nom": "predict"}]
    assert "outputs[0]" in _error(json.dumps(document).encode()).message


# -- binary tensor data extension ---------------------------------------------------------------


def test_binary_input_data() -> None:
    values = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": INPUT_NAME,
                    "shape": [2, 3],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": values.nbytes},
                }
            ]
        }
    )
    request = decode_request(header + values.tobytes(), CLASSIFIER, header_length=len(header))
    np.testing.assert_array_equal(request.x, values)


def test_binary_bytes_input_data() -> None:
    items = [b"1.5", b"2", b"3"]
    blob = b"".join(struct.pack("<I", len(i)) + i for i in items)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": INPUT_NAME,
                    "shape": [1, 3],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(blob)},
                }
            ]
        }
    )
    request = decode_request(header + blob, CLASSIFIER, header_length=len(header))
    np.testing.assert_array_equal(request.x, [[1.5, 2, 3]])


def test_binary_data_errors() -> None:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": INPUT_NAME,
                    "shape": [1, 3],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 12},
                }
            ]
        }
    )
    assert "goes past the end" in _error(header + b"\0" * 4, header_length=len(header)).message
    assert "no input claims" in _error(header + b"\0" * 16, header_length=len(header)).message
    assert "Inference-Header-Content-Length" in _error(header, header_length=10**6).message


# -- encoding ----------------------------------------------------------------------------------


def test_classifier_outputs_map_class_ids_to_labels() -> None:
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    outputs = encode_outputs(CLASSIFIER, np.array([0, 1]), proba)
    assert [o["name"] for o in outputs] == ["predict", "probabilities"]
    predict, probabilities = outputs
    assert predict == {
        "name": "predict",
        "datatype": "BYTES",
        "shape": [2],
        "data": ["malignant", "benign"],
    }
    assert probabilities["datatype"] == "FP64" and probabilities["shape"] == [2, 2]
    response = encode_response(
        model_name="cancer", model_version="2", request_id="r1", outputs=outputs
    )
    decoded = orjson.loads(orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY))
    assert decoded["outputs"][1]["data"] == [0.9, 0.1, 0.2, 0.8]
    assert decoded["model_name"] == "cancer" and decoded["model_version"] == "2"
    assert decoded["id"] == "r1"


@pytest.mark.parametrize(
    ("classes", "datatype", "expected"),
    [
        ((3, 7), "INT64", [7, 3]),
        ((0.5, 1.5), "FP64", [1.5, 0.5]),
        ((False, True), "BOOL", [True, False]),
        ((), "INT64", [1, 0]),
    ],
)
def test_numeric_class_labels(classes: tuple[Any, ...], datatype: str, expected: list[Any]) -> None:
    signature = Signature(FEATURES, classification=True, classes=classes)
    (predict,) = encode_outputs(signature, np.array([1, 0]), None, ["predict"])
    assert predict["datatype"] == datatype
    data = orjson.loads(orjson.dumps(predict["data"], option=orjson.OPT_SERIALIZE_NUMPY))
    assert data == expected


def test_regression_outputs() -> None:
    outputs = encode_outputs(REGRESSOR, np.array([1.5, -2.0]), None)
    assert len(outputs) == 1
    assert outputs[0]["datatype"] == "FP64" and outputs[0]["shape"] == [2]
    np.testing.assert_array_equal(outputs[0]["data"], [1.5, -2.0])


def test_requested_outputs_are_honoured_in_order() -> None:
    proba = np.array([[0.9, 0.1]])
    outputs = encode_outputs(CLASSIFIER, np.array([0]), proba, ["probabilities"])
    assert [o["name"] for o in outputs] == ["probabilities"]
    outputs = encode_outputs(CLASSIFIER, np.array([0]), proba, ["probabilities", "predict"])
    assert [o["name"] for o in outputs] == ["probabilities", "predict"]


def test_model_metadata() -> None:
    document = model_metadata(
        CLASSIFIER, name="cancer", version="2", platform="sklearn", parameters={"ref": "x"}
    )
    assert document["name"] == "cancer" and document["versions"] == ["2"]
    assert document["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 3]}]
    assert [o["name"] for o in document["outputs"]] == ["predict", "probabilities"]
    assert document["outputs"][1]["shape"] == [-1, 2]
    assert document["parameters"] == {"feature_names": list(FEATURES), "ref": "x"}
    regression = model_metadata(REGRESSOR, name="r", version="1", platform="pytorch")
    assert [o["name"] for o in regression["outputs"]] == ["predict"]


def test_new_request_ids_are_unique_hex() -> None:
    ids = {new_request_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_signature_needs_features() -> None:
    with pytest.raises(ValueError, match="at least one feature"):
        Signature((), classification=False)
