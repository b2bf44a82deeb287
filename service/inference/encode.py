"""Open Inference Protocol (KServe v2) inference responses, JSON or binary.

Encoding notes: JSON outputs are flat lists. orjson writes NaN and infinities as ``null``
(valid JSON; tritonclient reads ``null`` back as NaN), so ask for binary outputs when
non-finite values matter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from focal_eval.service.core.errors import bad_request, cut
from focal_eval.service.http.jsonio import iter_dumps
from focal_eval.service.inference.datatypes import HEADER_LENGTH, RequestedOutput, datatype_of
from focal_eval.service.memory import costs


def encode_infer_response(
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: dict[str, npt.NDArray[Any]],
    requested: tuple[RequestedOutput, ...] | None,
    binary_default: bool,
    reserve: Callable[[int], None] = lambda nbytes: None,
) -> tuple[list[bytes | memoryview] | Iterator[bytes], dict[str, str]]:
    """Encode a v2 inference response, JSON or JSON followed by binary tensor data.

    Nothing is copied into one response body: the pieces are the JSON (in pieces, see
    :func:`focal_eval.service.http.jsonio.iter_dumps`) and, for binary outputs, views of the arrays.

    Args:
        model_name: Echoed as ``model_name``.
        model_version: Echoed as ``model_version``; omitted when None.
        request_id: The request ``id``; omitted when None.
        outputs: Every output the model produced, in graph order.
        requested: The outputs the client asked for, in the order to return them; None for all
            of them.
        binary_default: Whether outputs are binary when ``requested`` is None.
        reserve: Called, before a JSON header holding data is put together in one piece
            (binary outputs follow it), with an upper bound of its size.

    Returns:
        The body's pieces and the extra response headers: ``Content-Type``
        (``application/json``, or ``application/octet-stream`` when any output is binary,
        with ``Inference-Header-Content-Length`` giving the JSON length and
        ``Content-Length`` the whole).

    Raises:
        RequestError: 400 when a requested output is not among ``outputs``.
    """
    if requested is None:
        chosen = [(name, array, binary_default) for name, array in outputs.items()]
    else:
        chosen = []
        for j, want in enumerate(requested):
            if want.name not in outputs:
                label, known = f"outputs[{j}] ({cut(want.name)})", ", ".join(map(repr, outputs))
                raise bad_request(f"{label}: no such output; the model produces {known}")
            chosen.append((want.name, outputs[want.name], want.binary))
    entries: list[dict[str, object]] = []
    blobs: list[memoryview] = []
    for name, array, binary in chosen:
        entry: dict[str, object] = {
            "name": name,
            "datatype": datatype_of(array),
            "shape": list(array.shape),
        }
        if binary:
            little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
            blobs.append(little.reshape(-1).view(np.uint8).data)
            entry["parameters"] = {"binary_data_size": little.nbytes}
        else:  # orjson serializes C-contiguous native-endian arrays without Python lists
            native = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
            entry["data"] = native.reshape(-1)
        entries.append(entry)
    doc: dict[str, object] = {"model_name": model_name}
    if model_version is not None:
        doc["model_version"] = model_version
    if request_id is not None:
        doc["id"] = request_id
    doc["outputs"] = entries
    if not blobs:
        return iter_dumps(doc), {"Content-Type": "application/json"}
    reserve(costs.json_text(sum(array.size for _, array, binary in chosen if not binary)))
    header = b"".join(iter_dumps(doc))
    headers = {
        "Content-Type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
        "Content-Length": str(len(header) + sum(len(blob) for blob in blobs)),
    }
    return [header, *blobs], headers
