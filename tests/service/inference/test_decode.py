"""v2 inference requests: tritonclient's bodies decode exactly, malformed ones are a 400."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from hypothesis import given, settings
from hypothesis import strategies as st

from focal_eval.service.core.errors import RequestError
from focal_eval.service.inference.datatypes import InferRequest, RequestedOutput, datatype_of
from focal_eval.service.inference.decode import decode_infer_request
from tests.service.inference._triton import DATATYPES, assert_identical, request_body, sample


def assert_bad_request(body: bytes, header_length: int | None, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        decode_infer_request(body, header_length)
    assert caught.value.status_code == 400
    assert message in caught.value.message


# --- requests built by tritonclient ------------------------------------------------------


@pytest.mark.parametrize(
    "binary", [pytest.param(True, id="binary"), pytest.param(False, id="json")]
)
@pytest.mark.parametrize("datatype", [pytest.param(name, id=name) for name in DATATYPES])
def test_input_roundtrips_through_tritonclient_body(datatype: str, binary: bool) -> None:
    array = sample(datatype)
    body, header_length = request_body({"x": array}, binary=binary)
    assert (header_length is not None) is binary
    request = decode_infer_request(body, header_length)
    assert list(request.inputs) == ["x"]
    assert_identical(request.inputs["x"], array)


def test_binary_and_json_inputs_mix_in_input_order() -> None:
    arrays = {"a": sample("FP32"), "b": sample("INT64"), "c": sample("BOOL"), "d": sample("FP16")}
    binary = {"a": True, "b": False, "c": True, "d": True}
    request = decode_infer_request(*request_body(arrays, binary=binary))
    assert list(request.inputs) == list(arrays)
    for name, array in arrays.items():
        assert_identical(request.inputs[name], array)


def test_binary_input_is_a_read_only_view_of_the_body() -> None:
    array = np.arange(100_000 * 10, dtype=np.float32).reshape(100_000, 10)
    body, header_length = request_body({"logits": array})
    decoded = decode_infer_request(body, header_length).inputs["logits"]
    assert np.shares_memory(decoded, np.frombuffer(body, dtype=np.uint8))
    assert not decoded.flags.writeable
    assert_identical(decoded, array)


def test_empty_binary_input_decodes_to_its_shape() -> None:
    array = np.zeros((0, 10), dtype=np.float32)
    request = decode_infer_request(*request_body({"x": array}))
    assert_identical(request.inputs["x"], array)


def test_no_requested_outputs_means_all_outputs_as_binary() -> None:
    body, header_length = request_body({"x": sample("FP32")}, request_id="req-7")
    request = decode_infer_request(body, header_length)
    assert request.id == "req-7"
    assert request.outputs is None
    assert request.binary_outputs_default is True
    assert request.parameters == {"binary_data_output": True}


def test_requested_outputs_keep_order_and_binary_flags() -> None:
    outputs = [triton.InferRequestedOutput("loss", binary_data=False)]
    outputs.append(triton.InferRequestedOutput("probs", binary_data=True))
    body, header_length = request_body(
        {"x": sample("FP32")}, outputs=outputs, parameters={"gamma": 2.0}
    )
    request = decode_infer_request(body, header_length)
    assert request.id is None
    assert request.outputs == (RequestedOutput("loss", False), RequestedOutput("probs", True))
    assert request.binary_outputs_default is False
    assert request.parameters == {"gamma": 2.0}


def test_tritonclient_json_nan_is_rejected_as_malformed_json() -> None:
    # tritonclient writes the non-JSON token NaN (rapidjson's default); orjson refuses it.
    body, header_length = request_body({"x": np.array([np.nan], np.float32)}, binary=False)
    assert b"NaN" in body
    assert_bad_request(body, header_length, "body: malformed JSON")


# --- hand-written JSON requests ------------------------------------------------------------


def json_request(*inputs: object, **fields: Any) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **fields})


@pytest.mark.parametrize(
    ("data", "shape"),
    [
        pytest.param([1, 2.5, 3, 4, 5, 6], [2, 3], id="flat"),
        pytest.param([[1, 2.5, 3], [4, 5, 6]], [2, 3], id="nested"),
        pytest.param([[1, 2.5], [3, 4], [5, 6]], [2, 3], id="nested-other-layout"),
    ],
)
def test_json_data_flat_or_nested_is_read_row_major(data: list[Any], shape: list[int]) -> None:
    tensor = {"name": "x", "shape": shape, "datatype": "FP32", "data": data}
    decoded = decode_infer_request(json_request(tensor), None).inputs["x"]
    expected = np.array([[1, 2.5, 3], [4, 5, 6]], dtype=np.float32)
    assert_identical(decoded, expected)


def test_json_bool_and_scalar_inputs_decode() -> None:
    mask = {"name": "mask", "shape": [2], "datatype": "BOOL", "data": [True, False]}
    scalar = {"name": "gamma", "shape": [], "datatype": "FP64", "data": [2]}
    request = decode_infer_request(json_request(mask, scalar), None)
    assert_identical(request.inputs["mask"], np.array([True, False]))
    assert_identical(request.inputs["gamma"], np.array(2.0))


def test_empty_outputs_list_means_all_outputs() -> None:
    tensor = {"name": "x", "shape": [1], "datatype": "INT8", "data": [-128]}
    body = json_request(tensor, outputs=[], parameters={"binary_data_output": False})
    request = decode_infer_request(body, None)
    assert request.outputs is None
    assert request.binary_outputs_default is False


def test_output_binary_flag_defaults_to_binary_data_output() -> None:
    tensor = {"name": "x", "shape": [1], "datatype": "INT8", "data": [1]}
    outputs = [{"name": "loss"}, {"name": "probs", "parameters": {"binary_data": False}}]
    body = json_request(tensor, outputs=outputs, parameters={"binary_data_output": True})
    request = decode_infer_request(body, None)
    assert request.outputs == (RequestedOutput("loss", True), RequestedOutput("probs", False))


# --- malformed requests --------------------------------------------------------------------

X = {"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]}


def with_x(**changes: Any) -> dict[str, Any]:
    return {key: value for key, value in {**X, **changes}.items() if value is not None}


BAD_JSON_REQUESTS = [
    pytest.param(b"{", "body: malformed JSON", id="truncated-json"),
    pytest.param(b'{"inputs": "\xff"}', "body: malformed JSON", id="invalid-utf8"),
    pytest.param(b"[1, 2]", "body: expected a JSON object, got [1,2]", id="body-not-object"),
    pytest.param(json_request(X, id=5), "id: expected a string, got 5", id="id-not-string"),
    pytest.param(
        json_request(X, parameters=[1]),
        "parameters: expected a JSON object, got [1]",
        id="parameters-not-object",
    ),
    pytest.param(
        json_request(X, parameters={"binary_data_output": 1}),
        "parameters.binary_data_output: expected true or false, got 1",
        id="binary-data-output-not-bool",
    ),
    pytest.param(b"{}", "inputs: expected a list of input tensors, got null", id="no-inputs"),
    pytest.param(
        b'{"inputs": {"x": 1}}', "inputs: expected a list of input tensors", id="inputs-not-list"
    ),
    pytest.param(
        json_request(7), "inputs[0]: expected a JSON object, got 7", id="input-not-object"
    ),
    pytest.param(
        json_request(with_x(name=None)),
        "inputs[0].name: expected a non-empty string, got null",
        id="name-missing",
    ),
    pytest.param(
        json_request(with_x(name="")),
        "inputs[0].name: expected a non-empty string",
        id="name-empty",
    ),
    pytest.param(
        json_request(X, with_x(name="y"), with_x()),
        'inputs[2].name: duplicate input name "x" (also inputs[0])',
        id="duplicate-input",
    ),
    pytest.param(
        json_request(X, with_x(name="y", shape=[2, -1])),
        "inputs[1].shape: expected a list of non-negative integers, got [2,-1]",
        id="shape-negative",
    ),
    pytest.param(
        json_request(with_x(shape=[2.0])),
        "inputs[0].shape: expected a list of non-negative integers, got [2.0]",
        id="shape-float",
    ),
    pytest.param(
        json_request(with_x(shape=[True, 2])),
        "inputs[0].shape: expected a list of non-negative integers, got [true,2]",
        id="shape-bool",
    ),
    pytest.param(
        json_request(with_x(shape="2")),
        'inputs[0].shape: expected a list of non-negative integers, got "2"',
        id="shape-string",
    ),
    pytest.param(
        json_request(with_x(datatype="FP8")),
        "inputs[0].datatype: expected one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, "
        'INT32, INT64, FP16, FP32, FP64, got "FP8"',
        id="datatype-unknown",
    ),
    pytest.param(
        json_request(with_x(datatype=None)),
        "inputs[0].datatype: expected one of BOOL",
        id="datatype-missing",
    ),
    pytest.param(
        json_request(with_x(datatype="BYTES", data=["a", "b"])),
        "inputs[0].datatype: BYTES tensors are not supported by this model",
        id="datatype-bytes",
    ),
    pytest.param(
        json_request(with_x(datatype="BF16")),
        "inputs[0].datatype: BF16 is not supported",
        id="datatype-bf16",
    ),
    pytest.param(
        json_request(with_x(data=None)),
        "inputs[0] (x): no tensor data; expected data or parameters.binary_data_size",
        id="no-data",
    ),
    pytest.param(
        json_request(with_x(parameters={"binary_data_size": 8})),
        "inputs[0] (x): give either data or parameters.binary_data_size, not both",
        id="data-and-binary",
    ),
    pytest.param(
        json_request(with_x(parameters="binary")),
        'inputs[0].parameters: expected a JSON object, got "binary"',
        id="input-parameters-not-object",
    ),
    pytest.param(
        json_request(with_x(data=None, parameters={"shared_memory_region": "r"})),
        "inputs[0].parameters.shared_memory_region: shared memory is not supported",
        id="shared-memory-input",
    ),
    pytest.param(
        json_request(with_x(data=None, parameters={"binary_data_size": -8})),
        "inputs[0].parameters.binary_data_size: expected an integer >= 0, got -8",
        id="binary-size-negative",
    ),
    pytest.param(
        json_request(with_x(data=None, parameters={"binary_data_size": True})),
        "inputs[0].parameters.binary_data_size: expected an integer >= 0, got true",
        id="binary-size-bool",
    ),
    pytest.param(
        json_request(with_x(data=None, parameters={"binary_data_size": 8})),
        "inputs[0] (x): binary_data_size 8 given but no Inference-Header-Content-Length header",
        id="binary-without-header",
    ),
    pytest.param(
        json_request(with_x(data=5)), "inputs[0] (x): data must be a list, got 5", id="data-scalar"
    ),
    pytest.param(
        json_request(with_x(shape=[2, 3], data=[1, 2, 3, 4, 5])),
        "inputs[0] (x): data has 5 elements but shape [2, 3] needs 6",
        id="data-count-mismatch",
    ),
    pytest.param(
        json_request(with_x(shape=[10**6, 10**6], data=[1])),
        "inputs[0] (x): data has 1 elements but shape [1000000, 1000000] needs 1000000000000",
        id="data-huge-shape",
    ),
    pytest.param(
        json_request(with_x(data=["1", "2"])),
        "inputs[0] (x): data must hold numbers for FP32, got strings",
        id="data-strings",
    ),
    pytest.param(
        json_request(with_x(data=[1.0, None])),
        "inputs[0] (x): data must hold numbers for FP32, got null or non-numeric values",
        id="data-null",
    ),
    pytest.param(
        json_request(with_x(data=[{"v": 1}, {"v": 2}])),
        "inputs[0] (x): data must hold numbers for FP32, got null or non-numeric values",
        id="data-objects",
    ),
    pytest.param(
        json_request(with_x(shape=[3], data=[[1, 2], [3]])),
        "inputs[0] (x): data must be a flat or regularly nested list of numbers",
        id="data-ragged",
    ),
    pytest.param(
        json_request(with_x(data=[True, False])),
        "inputs[0] (x): data must hold numbers for FP32, got booleans",
        id="data-bools-for-float",
    ),
    pytest.param(
        json_request(with_x(datatype="INT64", data=[1.0, 2.0])),
        "inputs[0] (x): data must hold integers for INT64, got floats",
        id="data-floats-for-int",
    ),
    pytest.param(
        json_request(with_x(datatype="BOOL", data=[1, 0])),
        "inputs[0] (x): data must hold true/false for BOOL, got integers",
        id="data-ints-for-bool",
    ),
    pytest.param(
        json_request(with_x(datatype="INT8", data=[1, 300])),
        "inputs[0] (x): data value 300 is out of range for INT8",
        id="data-int8-overflow",
    ),
    pytest.param(
        json_request(with_x(datatype="UINT8", data=[-1, 2])),
        "inputs[0] (x): data value -1 is out of range for UINT8",
        id="data-uint8-negative",
    ),
    pytest.param(
        json_request(with_x(datatype="FP16", data=[1.0, 1e6])),
        "inputs[0] (x): data has values out of range for FP16",
        id="data-fp16-overflow",
    ),
    pytest.param(
        json_request(with_x(data=[1e300, 0.0])),
        "inputs[0] (x): data has values out of range for FP32",
        id="data-fp32-overflow",
    ),
    pytest.param(
        json_request(with_x(shape=[1] * 65, data=[1.0])),
        "inputs[0] (x): shape [1, 1, 1",
        id="shape-over-64-dims",
    ),
    pytest.param(
        json_request(X, outputs={"name": "y"}),
        'outputs: expected a list of requested outputs, got {"name":"y"}',
        id="outputs-not-list",
    ),
    pytest.param(
        json_request(X, outputs=["y"]),
        'outputs[0]: expected a JSON object, got "y"',
        id="output-not-object",
    ),
    pytest.param(
        json_request(X, outputs=[{"name": 3}]),
        "outputs[0].name: expected a non-empty string, got 3",
        id="output-name-not-string",
    ),
    pytest.param(
        json_request(X, outputs=[{"name": "y"}, {"name": "y"}]),
        'outputs[1].name: output "y" is requested twice',
        id="output-duplicate",
    ),
    pytest.param(
        json_request(X, outputs=[{"name": "y", "parameters": {"binary_data": "yes"}}]),
        'outputs[0].parameters.binary_data: expected true or false, got "yes"',
        id="output-binary-not-bool",
    ),
    pytest.param(
        json_request(X, outputs=[{"name": "y", "parameters": {"classification": 3}}]),
        "outputs[0].parameters.classification: not supported",
        id="output-classification",
    ),
    pytest.param(
        json_request(X, outputs=[{"name": "y", "parameters": {"shared_memory_region": "r"}}]),
        "outputs[0].parameters.shared_memory_region: not supported",
        id="output-shared-memory",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_JSON_REQUESTS)
def test_malformed_json_request_is_400(body: bytes, message: str) -> None:
    assert_bad_request(body, None, message)


def binary_request(tensor: dict[str, Any], blob: bytes) -> tuple[bytes, int]:
    header = json_request(tensor)
    return header + blob, len(header)


LOGITS = {"name": "logits", "shape": [10, 10], "datatype": "FP32"}


@pytest.mark.parametrize(
    ("tensor", "blob", "message"),
    [
        pytest.param(
            {**LOGITS, "parameters": {"binary_data_size": 399}},
            bytes(399),
            "inputs[0] (logits): binary_data_size 399 does not match shape [10, 10] of FP32 "
            "(400 bytes expected)",
            id="size-does-not-match-shape",
        ),
        pytest.param(
            {**LOGITS, "parameters": {"binary_data_size": 400}},
            bytes(100),
            "inputs[0] (logits): binary_data_size 400 overruns the body: 100 bytes of binary "
            "data remain at offset",
            id="size-overruns-body",
        ),
        pytest.param(
            {**LOGITS, "shape": [10**9, 10**9], "parameters": {"binary_data_size": 4 * 10**18}},
            bytes(16),
            "inputs[0] (logits): binary_data_size 4000000000000000000 overruns the body: 16 bytes",
            id="huge-shape-overruns-body",
        ),
        pytest.param(
            {**LOGITS, "parameters": {"binary_data_size": 400}},
            bytes(412),
            "body: 412 bytes follow the JSON header but the inputs' binary_data_size add up to 400",
            id="trailing-bytes",
        ),
        pytest.param(
            {**LOGITS, "data": [0.0] * 100},
            bytes(4),
            "body: 4 bytes follow the JSON header but the inputs' binary_data_size add up to 0",
            id="bytes-after-json-only-inputs",
        ),
        pytest.param(
            {
                "name": "mask",
                "shape": [2],
                "datatype": "BOOL",
                "parameters": {"binary_data_size": 2},
            },
            b"\x01\x02",
            "inputs[0] (mask): BOOL binary data must be bytes 0 or 1",
            id="bool-byte-not-0-or-1",
        ),
        pytest.param(
            {**LOGITS, "shape": [0, 2**63], "parameters": {"binary_data_size": 0}},
            b"",
            "inputs[0] (logits): shape [0, 9223372036854775808] cannot be represented",
            id="zero-size-shape-too-large",
        ),
    ],
)
def test_malformed_binary_request_is_400(tensor: dict[str, Any], blob: bytes, message: str) -> None:
    assert_bad_request(*binary_request(tensor, blob), message)


def test_header_length_past_the_body_is_400() -> None:
    body, _ = binary_request({**LOGITS, "parameters": {"binary_data_size": 400}}, bytes(400))
    message = f"Inference-Header-Content-Length: {len(body) + 1} exceeds the body size ({len(body)}"
    assert_bad_request(body, len(body) + 1, message)


def test_header_length_cutting_the_json_is_400() -> None:
    assert_bad_request(json_request(X), 5, "body[:5] (JSON header): malformed JSON")


# --- properties ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children)
    ),
    max_leaves=12,
)
input_tensors = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["x", "y", ""]) | json_values,
        "shape": st.lists(st.integers(min_value=-1, max_value=4), max_size=3) | json_values,
        "datatype": st.sampled_from([*DATATYPES, "UINT16", "BYTES", "BF16", "X"]) | json_values,
        "data": st.lists(json_values, max_size=6) | json_values,
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_size": st.integers(-1, 40) | json_values}
        )
        | json_values,
    },
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=3) | json_values,
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_output": st.booleans() | json_values}
        )
        | json_values,
        "inputs": st.lists(input_tensors | json_values, max_size=3) | json_values,
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["y", "z"]) | json_values},
                optional={"parameters": json_values},
            ),
            max_size=2,
        )
        | json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(doc=requests, tail=st.binary(max_size=48), with_header=st.booleans())
def test_arbitrary_request_decodes_or_raises_request_error_400(
    doc: dict[str, Any], tail: bytes, with_header: bool
) -> None:
    header = orjson.dumps(doc)
    body, header_length = (header + tail, len(header)) if with_header else (header, None)
    try:
        outcome: object = decode_infer_request(body, header_length)
    except RequestError as error:
        outcome = error.status_code
    assert isinstance(outcome, InferRequest) or outcome == 400


numbers = (
    st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
)
tensor_data = st.recursive(
    numbers | st.none() | st.text(max_size=2), lambda children: st.lists(children, max_size=4)
)
tensors = st.fixed_dictionaries(
    {
        "name": st.just("x"),
        "shape": st.lists(st.integers(min_value=0, max_value=4), max_size=3),
        "datatype": st.sampled_from([*DATATYPES, "INT8", "UINT16", "UINT64"]),
    }
).flatmap(
    lambda tensor: st.one_of(
        st.fixed_dictionaries({**{k: st.just(v) for k, v in tensor.items()}, "data": tensor_data}),
        st.fixed_dictionaries(
            {
                **{k: st.just(v) for k, v in tensor.items()},
                "parameters": st.fixed_dictionaries(
                    {"binary_data_size": st.integers(min_value=0, max_value=80)}
                ),
            }
        ),
    )
)


@settings(max_examples=300, deadline=None)
@given(tensor=tensors, tail=st.binary(max_size=80), with_header=st.booleans())
def test_arbitrary_tensor_decodes_or_raises_request_error_400(
    tensor: dict[str, Any], tail: bytes, with_header: bool
) -> None:
    header = json_request(tensor)
    body, header_length = (header + tail, len(header)) if with_header else (header, None)
    try:
        outcome: object = decode_infer_request(body, header_length)
    except RequestError as error:
        outcome = error.status_code
    if isinstance(outcome, InferRequest):
        decoded = outcome.inputs["x"]
        assert decoded.shape == tuple(tensor["shape"])
        assert datatype_of(decoded) == tensor["datatype"]
    else:
        assert outcome == 400
