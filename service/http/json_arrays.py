"""JSON documents whose large arrays go straight to numpy, with no Python object per number.

pysimdjson parses the text into its tape; each named numeric array is copied out of it as one
flat buffer (``simdjson.Array.as_buffer``) and reshaped; every other member must be a scalar.
Only such input takes this path: anything else (ragged rows, a non-number, a number out of
range, a duplicate key, a list or object in another member, nesting the shapes do not
explain, a ``[`` inside a string) gives None, and the caller parses the text the general way
(orjson), which gives every malformed input its usual, precise error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import simdjson

from focal_eval.service.http.body import Body, count_byte

Kind = Literal["float", "int"]
_BUFFER: dict[Kind, tuple[Literal["d", "i"], type[np.generic]]] = {
    "float": ("d", np.float64),
    "int": ("i", np.int64),
}


def load_arrays(text: Body, arrays: Mapping[str, Kind]) -> dict[str, Any] | None:
    """The JSON object in ``text`` as a dict, the ``arrays`` named in it as numpy arrays.

    Args:
        text: A JSON document.
        arrays: Names of members to read as numeric arrays, and whether as float64 or int64.

    Returns:
        The members (the named arrays as numpy, the rest as Python values), or None when the
        text is not a JSON object whose named arrays are regular arrays of numbers.

    Example:
        >>> load_arrays(b'{"x": [[1, 2], [3, 4]], "k": "v"}', {"x": "float"})["x"].shape
        (2, 2)
        >>> load_arrays(b'{"x": [[1, 2], [3]]}', {"x": "float"}) is None
        True
    """
    try:
        document = simdjson.Parser().parse(text)
        if not isinstance(document, simdjson.Object):
            return None
        keys = list(document.keys())
        if len(set(keys)) != len(keys):
            return None
        members: dict[str, Any] = {}
        lists = 0
        for key in keys:
            value = document[key]
            if isinstance(value, simdjson.Object) or (
                isinstance(value, simdjson.Array) and key not in arrays
            ):
                return None  # containers only where arrays are expected
            if isinstance(value, simdjson.Array):
                read = _array(value, arrays[key])
                if read is None:
                    return None
                members[key], nested = read
                lists += nested
            else:
                members[key] = value
    except (ValueError, TypeError, RuntimeError):  # simdjson's parse, type and range errors
        return None
    return members if count_byte(text, b"[") == lists else None


def _array(value: simdjson.Array, kind: Kind) -> tuple[npt.NDArray[Any], int] | None:
    """A regularly nested array of numbers, and how many lists it is made of; else None."""
    shape = [len(value)]
    first: Any = value
    while len(first) and isinstance(first[0], simdjson.Array):
        first = first[0]
        shape.append(len(first))
    if not _regular(value, shape):
        return None
    code, dtype = _BUFFER[kind]
    count = math.prod(shape)
    flat = np.frombuffer(value.as_buffer(of_type=code), dtype) if count else np.empty(0, dtype)
    if flat.size != count:
        return None
    lists = sum(math.prod(shape[:depth]) for depth in range(len(shape)))
    return flat.reshape(shape), lists


def _regular(value: simdjson.Array, shape: list[int]) -> bool:
    """Whether every array nested in ``value`` at depth k has ``shape[k]`` items (k >= 1).

    Depth first, so that only one array of each depth is a Python object at a time.
    """
    if len(shape) == 1:
        return True
    return all(
        isinstance(child, simdjson.Array) and len(child) == shape[1] and _regular(child, shape[1:])
        for child in value
    )
