"""Open Inference Protocol (KServe v2): its datatypes and request types.

The REST codec is :mod:`focal_eval.service.inference.decode` (requests) and
:mod:`focal_eval.service.inference.encode` (responses), pure functions from HTTP bodies to numpy
arrays and back, so that ``tritonclient.http`` works unchanged against the service. A body is a JSON
object, optionally followed by raw tensor bytes: the ``Inference-Header-Content-Length`` header
gives the length of the JSON part, and each binary tensor carries ``parameters.binary_data_size``.
Binary blobs follow the JSON in tensor order, little-endian, row-major, BOOL as one byte 0 or 1.
Every protocol problem is a 400 whose message starts with the field at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

HEADER_LENGTH = "Inference-Header-Content-Length"

DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(code)
    for name, code in (
        ("BOOL", "?"),
        ("UINT8", "<u1"),
        ("UINT16", "<u2"),
        ("UINT32", "<u4"),
        ("UINT64", "<u8"),
        ("INT8", "<i1"),
        ("INT16", "<i2"),
        ("INT32", "<i4"),
        ("INT64", "<i8"),
        ("FP16", "<f2"),
        ("FP32", "<f4"),
        ("FP64", "<f8"),
    )
}
DATATYPES = {(dtype.kind, dtype.itemsize): name for name, dtype in DTYPES.items()}
UNSUPPORTED = {
    "BYTES": "BYTES tensors are not supported by this model",
    "BF16": "BF16 is not supported; send FP32 or FP16",
}
KINDS = {"b": "booleans", "i": "integers", "u": "integers", "f": "floats", "U": "strings"}


def manifest_datatype(dtype: str) -> str:
    """The v2 datatype of a manifest's dtype name.

    Example:
        >>> manifest_datatype("float32"), manifest_datatype("int64")
        ('FP32', 'INT64')
    """
    return datatype_of(np.empty(0, dtype=dtype))


def datatype_of(array: npt.NDArray[Any]) -> str:
    """The v2 datatype of a numpy array, whatever its byte order.

    Args:
        array: A model output.

    Returns:
        The datatype name, e.g. ``"FP32"``, ``"INT64"`` or ``"BOOL"``.

    Raises:
        ValueError: The dtype has no v2 datatype this codec encodes (a server-side error).

    Example:
        >>> datatype_of(np.zeros(3, dtype=np.float32))
        'FP32'
    """
    name = DATATYPES.get((array.dtype.kind, array.dtype.itemsize))
    if name is None:
        raise ValueError(f"dtype {array.dtype} has no supported Open Inference Protocol datatype")
    return name


@dataclass(frozen=True)
class RequestedOutput:
    """An output the client asked for, and whether it wants it as binary data."""

    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request.

    Attributes:
        id: The request ``id``, echoed in the response; None when absent.
        inputs: Decoded tensors by input name, with the declared dtype and shape.
        parameters: The request-level ``parameters`` object (empty when absent).
        outputs: The requested outputs in request order; None when the client named none.
        binary_outputs_default: ``parameters["binary_data_output"]``, False when absent.
    """

    id: str | None
    inputs: dict[str, npt.NDArray[Any]]
    parameters: dict[str, object]
    outputs: tuple[RequestedOutput, ...] | None
    binary_outputs_default: bool
