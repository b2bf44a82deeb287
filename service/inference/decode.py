"""Open Inference Protocol (KServe v2) inference requests, with Triton's binary extension.

See :mod:`focal_eval.service.inference.datatypes` for the wire format. Decoding notes:

- Binary inputs are zero-copy views of the body (``np.frombuffer``): read-only, and unaligned
  when the JSON header length is not a multiple of the item size (numpy and onnxruntime accept
  both).
- JSON ``data`` may be flat or nested; it must hold exactly ``prod(shape)`` elements, read in
  row-major order. Integer datatypes take JSON integers in range, float datatypes JSON numbers
  that stay finite in the target precision, BOOL takes ``true``/``false``. numpy's type
  inference decides: a list mixing booleans with numbers is read as numbers.
- Every protocol problem raises :class:`~focal_eval.service.core.errors.RequestError` with status
  400, its message starting with the field at fault. A binary size is checked against the shape
  and the body before any view is made; a shape is never allocated, only compared with the data.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from focal_eval.service.core.errors import bad_request, cut, show
from focal_eval.service.http.body import OVERLONG, Body
from focal_eval.service.inference.datatypes import (
    DTYPES,
    HEADER_LENGTH,
    KINDS,
    UNSUPPORTED,
    InferRequest,
    RequestedOutput,
)

_NOT_JSON_WHITESPACE = re.compile(rb"[^ \t\n\r]")


def check_request_start(body: Body) -> None:
    """Refuse (400) a decoded body whose first bytes show it is no v2 inference request.

    A v2 request, JSON alone or followed by binary tensor data, begins with a JSON object
    (after any JSON whitespace). Checked while a compressed body inflates, on the first
    piece inflated (up to a megabyte), so that a ``Content-Encoding`` bomb of anything else
    is refused there, not at the body limit; a piece of whitespace alone passes.

    Example:
        >>> check_request_start(b' {"inputs": []}')
        >>> try:
        ...     check_request_start(bytes(8))
        ... except Exception as error:
        ...     print(error.status_code, error)
        400 body: not a v2 inference request (it does not begin with a JSON object)
    """
    first = _NOT_JSON_WHITESPACE.search(body)
    if first is not None and first.group() != b"{":
        raise bad_request("body: not a v2 inference request (it does not begin with a JSON object)")


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request(f"{where}: expected a JSON object, got {show(value)}")
    return value


def _parameters(holder: dict[str, Any], where: str) -> dict[str, Any]:
    value = holder.get("parameters")
    return {} if value is None else _object(value, where)


def _name(holder: dict[str, Any], where: str) -> str:
    name = holder.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request(f"{where}.name: expected a non-empty string, got {show(name)}")
    return name


def _shape(holder: dict[str, Any], where: str) -> list[int]:
    shape = holder.get("shape")
    if not isinstance(shape, list) or not all(type(dim) is int and dim >= 0 for dim in shape):
        raise bad_request(
            f"{where}.shape: expected a list of non-negative integers, got {show(shape)}"
        )
    return shape


def _datatype(holder: dict[str, Any], where: str) -> str:
    datatype = holder.get("datatype")
    if isinstance(datatype, str) and datatype in DTYPES:
        return datatype
    if isinstance(datatype, str) and datatype in UNSUPPORTED:
        raise bad_request(f"{where}.datatype: {UNSUPPORTED[datatype]}")
    raise bad_request(
        f"{where}.datatype: expected one of {', '.join(DTYPES)}, got {show(datatype)}"
    )


def _reshape(array: npt.NDArray[Any], shape: list[int], label: str) -> npt.NDArray[Any]:
    try:
        return array.reshape(shape)
    except ValueError:  # over 64 dimensions, or a zero-size shape too large for numpy
        raise bad_request(f"{label}: shape {shape} cannot be represented") from None


def _from_binary(
    body: memoryview, start: int, size: int, shape: list[int], datatype: str, label: str
) -> npt.NDArray[Any]:
    dtype = DTYPES[datatype]
    expected = math.prod(shape) * dtype.itemsize
    if size != expected:
        raise bad_request(
            f"{label}: binary_data_size {size} does not match shape {shape} of {datatype} "
            f"({expected} bytes expected)"
        )
    if start + size > len(body):
        raise bad_request(
            f"{label}: binary_data_size {size} overruns the body: "
            f"{len(body) - start} bytes of binary data remain at offset {start}"
        )
    chunk = body[start : start + size]
    if datatype == "BOOL" and size and int(np.frombuffer(chunk, np.uint8).max()) > 1:
        raise bad_request(f"{label}: BOOL binary data must be bytes 0 or 1")
    return _reshape(np.frombuffer(chunk, dtype), shape, label)


def _convert(array: npt.NDArray[Any], datatype: str, label: str) -> npt.NDArray[Any]:
    """Cast numpy's inference of JSON data to ``datatype``, refusing lossy casts."""
    dtype, kind = DTYPES[datatype], array.dtype.kind
    if array.size == 0:
        return array.astype(dtype)
    allowed = {"b": "b", "f": "iuf"}.get(dtype.kind, "iu")
    if kind not in allowed:
        wanted = {"b": "true/false", "f": "numbers"}.get(dtype.kind, "integers")
        got = KINDS.get(kind, "null or non-numeric values")
        raise bad_request(f"{label}: data must hold {wanted} for {datatype}, got {got}")
    if dtype.kind == "f":
        with np.errstate(over="ignore"):
            converted = array.astype(dtype, copy=False)
        if dtype.itemsize < 8 and not np.isfinite(converted).all():
            raise bad_request(f"{label}: data has values out of range for {datatype}")
        return converted
    if dtype.kind == "b":
        return array
    info = np.iinfo(dtype)
    low, high = int(array.min()), int(array.max())
    if low < info.min or high > info.max:
        bad = low if low < info.min else high
        raise bad_request(f"{label}: data value {bad} is out of range for {datatype}")
    return array.astype(dtype, copy=False)


def _from_json(data: object, shape: list[int], datatype: str, label: str) -> npt.NDArray[Any]:
    if not isinstance(data, list):
        raise bad_request(f"{label}: data must be a list, got {show(data)}")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise bad_request(
            f"{label}: data must be a flat or regularly nested list of numbers"
        ) from None
    count = math.prod(shape)
    if array.size != count:
        raise bad_request(
            f"{label}: data has {array.size} elements but shape {shape} needs {count}"
        )
    return _reshape(_convert(array, datatype, label), shape, label)


def _decode_inputs(
    doc: dict[str, Any], body: memoryview, header_end: int | None
) -> dict[str, npt.NDArray[Any]]:
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list):
        raise bad_request(f"inputs: expected a list of input tensors, got {show(raw_inputs)}")
    decoded: dict[str, npt.NDArray[Any]] = {}
    first_index: dict[str, int] = {}
    offset = len(body) if header_end is None else header_end
    for i, raw in enumerate(raw_inputs):
        where = f"inputs[{i}]"
        tensor = _object(raw, where)
        name = _name(tensor, where)
        if name in first_index:
            first = first_index[name]
            raise bad_request(
                f"{where}.name: duplicate input name {show(name)} (also inputs[{first}])"
            )
        first_index[name] = i
        shape, datatype = _shape(tensor, where), _datatype(tensor, where)
        parameters = _parameters(tensor, f"{where}.parameters")
        if "shared_memory_region" in parameters:
            raise bad_request(
                f"{where}.parameters.shared_memory_region: shared memory is not supported"
            )
        size, data = parameters.get("binary_data_size"), tensor.get("data")
        label = f"{where} ({cut(name)})"
        if size is None and data is None:
            raise bad_request(
                f"{label}: no tensor data; expected data or parameters.binary_data_size"
            )
        if size is not None and data is not None:
            raise bad_request(f"{label}: give either data or parameters.binary_data_size, not both")
        if data is not None:
            decoded[name] = _from_json(data, shape, datatype, label)
            continue
        if type(size) is not int or size < 0:
            got = show(size)
            raise bad_request(
                f"{where}.parameters.binary_data_size: expected an integer >= 0, got {got}"
            )
        if header_end is None and size:
            raise bad_request(
                f"{label}: binary_data_size {size} given but no {HEADER_LENGTH} header"
            )
        decoded[name] = _from_binary(body, offset, size, shape, datatype, label)
        offset += size
    if offset != len(body):
        declared, present = offset - (header_end or 0), len(body) - (header_end or 0)
        raise bad_request(
            f"body: {present} bytes follow the JSON header but the inputs' binary_data_size "
            f"add up to {declared}"
        )
    return decoded


def _requested_outputs(doc: dict[str, Any], default: bool) -> tuple[RequestedOutput, ...] | None:
    raw_outputs = doc.get("outputs")
    if raw_outputs is None:
        return None
    if not isinstance(raw_outputs, list):
        raise bad_request(f"outputs: expected a list of requested outputs, got {show(raw_outputs)}")
    requested: list[RequestedOutput] = []
    for j, raw in enumerate(raw_outputs):
        where = f"outputs[{j}]"
        item = _object(raw, where)
        name, parameters = _name(item, where), _parameters(item, f"{where}.parameters")
        if any(r.name == name for r in requested):
            raise bad_request(f"{where}.name: output {show(name)} is requested twice")
        for unsupported in ("classification", "shared_memory_region"):
            if unsupported in parameters:
                raise bad_request(f"{where}.parameters.{unsupported}: not supported")
        binary = parameters.get("binary_data", default)
        if not isinstance(binary, bool):
            raise bad_request(
                f"{where}.parameters.binary_data: expected true or false, got {show(binary)}"
            )
        requested.append(RequestedOutput(name, binary))
    return tuple(requested) or None


def decode_infer_request(body: Body, header_length: int | None) -> InferRequest:
    """Decode a v2 inference request body, JSON or JSON followed by binary tensor data.

    Args:
        body: The whole (decompressed) HTTP request body.
        header_length: The parsed ``Inference-Header-Content-Length`` header (see
            :func:`parse_header_length`); None when absent, then the whole body is JSON.

    Returns:
        The request with every input decoded to an array of its declared datatype and shape.
        Binary inputs are read-only views of ``body``.

    Raises:
        RequestError: 400 for any malformed, inconsistent or unsupported request.
    """
    view = memoryview(body)
    if header_length is not None and header_length > len(body):
        shown = str(header_length) if header_length < OVERLONG else "a number of over 30 digits"
        raise bad_request(f"{HEADER_LENGTH}: {shown} exceeds the body size ({len(body)} bytes)")
    try:
        doc = orjson.loads(view if header_length is None else view[:header_length])
    except orjson.JSONDecodeError as exc:
        where = "body" if header_length is None else f"body[:{header_length}] (JSON header)"
        raise bad_request(f"{where}: malformed JSON ({exc})") from None
    doc = _object(doc, "body")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad_request(f"id: expected a string, got {show(request_id)}")
    parameters = _parameters(doc, "parameters")
    binary_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise bad_request(
            f"parameters.binary_data_output: expected true or false, got {show(binary_default)}"
        )
    return InferRequest(
        id=request_id,
        inputs=_decode_inputs(doc, view, header_length),
        parameters=parameters,
        outputs=_requested_outputs(doc, binary_default),
        binary_outputs_default=binary_default,
    )
