"""tritonclient's own request builder and response parser, for the v2 codec and route tests.

Request bodies come from ``InferenceServerClient.generate_request_body`` and responses are read
with ``InferResult.from_response_body``: the bytes tritonclient sends and reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tritonclient.http as triton
from tritonclient.utils import np_to_triton_dtype

from focal_eval.service.inference.datatypes import HEADER_LENGTH, datatype_of
from focal_eval.service.inference.encode import encode_infer_response
from tests.service._inputs import extremes
from tests.service.reference import MANIFEST, METRICS, PER_SAMPLE, STATISTICS

HEADER = "Inference-Header-Content-Length"
INFER = "/v2/models/focal-eval/infer"
OUTPUTS = (*PER_SAMPLE, *STATISTICS, *METRICS)
MANIFEST_DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64"}
DATATYPES: dict[str, type[np.generic]] = {
    "FP32": np.float32,
    "FP64": np.float64,
    "FP16": np.float16,
    "INT64": np.int64,
    "INT32": np.int32,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
}
# a valid 3 x 3 batch, for requests that differ from it in one field
LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [0.0, 1.0, 0.0]], np.float32)
LABELS = np.array([0, 2, 1])


# --- the codec: bodies in, bodies out --------------------------------------------------------


def sample(datatype: str, shape: tuple[int, ...] = (3, 4)) -> np.ndarray:
    """Values that exercise a v2 ``datatype`` (:func:`tests.service._inputs.extremes`)."""
    return extremes(DATATYPES[datatype], shape)


def request_body(
    arrays: dict[str, np.ndarray], binary: bool | dict[str, bool] = True, **kwargs: Any
) -> tuple[bytes, int | None]:
    """A request body built by tritonclient itself, and its JSON header's length."""
    inputs = []
    for name, array in arrays.items():
        as_binary = binary if isinstance(binary, bool) else binary[name]
        tensor = triton.InferInput(name, list(array.shape), datatype_of(array))
        inputs.append(tensor.set_data_from_numpy(array, binary_data=as_binary))
    body, header_length = triton.InferenceServerClient.generate_request_body(inputs, **kwargs)
    return body, header_length


def encoded(*args: Any) -> tuple[bytes, dict[str, str]]:
    """encode_infer_response's pieces joined into one body; Content-Length checked and dropped."""
    pieces, headers = encode_infer_response(*args)
    body = b"".join(pieces)
    if "Content-Length" in headers:
        assert int(headers.pop("Content-Length")) == len(body)
    return body, headers


def parse_response(body: bytes, headers: dict[str, str]) -> Any:
    """Parse a response the way tritonclient does, header read from our extra headers."""
    length = headers.get(HEADER_LENGTH)
    return triton.InferResult.from_response_body(
        body, verbose=False, header_length=None if length is None else int(length)
    )


def assert_identical(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected, strict=True)


# --- the routes: requests over HTTP ----------------------------------------------------------


def infer_body(
    arrays: dict[str, np.ndarray], binary: bool = True, outputs: tuple[str, ...] | None = OUTPUTS
) -> tuple[bytes, dict[str, str]]:
    """A request built by tritonclient: inputs as binary or JSON, outputs asked for alike."""
    inputs = []
    for name, array in arrays.items():
        tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        inputs.append(tensor.set_data_from_numpy(array, binary_data=binary))
    requested = None
    if outputs is not None:
        requested = [triton.InferRequestedOutput(name, binary_data=binary) for name in outputs]
    body, header_length = triton.InferenceServerClient.generate_request_body(
        inputs, outputs=requested
    )
    return body, {} if header_length is None else {HEADER: str(header_length)}


def parse(response: Any) -> Any:
    """The response read by tritonclient."""
    assert response.status_code == 200, response.text
    length = response.headers.get(HEADER)
    return triton.InferResult.from_response_body(
        response.content, header_length=None if length is None else int(length)
    )


def assert_outputs_equal_eager(result: Any, want: dict[str, np.ndarray]) -> None:
    expected_types = {e["name"]: MANIFEST_DATATYPES[e["dtype"]] for e in MANIFEST["outputs"]}
    for name in OUTPUTS:
        got = result.as_numpy(name)
        assert got is not None, f"output {name} missing"
        assert result.get_output(name)["datatype"] == expected_types[name], name
        assert got.shape == want[name].shape, name
        if want[name].dtype.kind in "iu":
            np.testing.assert_array_equal(got, want[name], err_msg=name)
        else:
            np.testing.assert_allclose(got, want[name], rtol=1e-4, atol=1e-5, err_msg=name)


def tensor(name: str, array: Any, datatype: str | None = None) -> dict[str, Any]:
    """A JSON input tensor of ``array`` (its datatype, unless given)."""
    array = np.asarray(array)
    return {
        "name": name,
        "shape": list(array.shape),
        "datatype": datatype or np_to_triton_dtype(array.dtype),
        "data": array.reshape(-1).tolist(),
    }


def request(*inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A JSON inference request of ``inputs``."""
    return {"inputs": list(inputs), **extra}
