"""JSON responses with orjson: numpy arrays serialised natively, NaN written as ``null``.

:func:`iter_dumps` writes the same bytes as :func:`dumps` in pieces, a slice of each large
array at a time, so that a response of millions of per-sample values never exists as one
string: it is encoded as it is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson

ARRAY_PIECE = 65_536  # elements of a large array encoded per orjson call


def dumps(document: Any) -> bytes:
    """Orjson with numpy support; 0-d and non-contiguous arrays fall back to ``tolist``."""
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY, default=_fallback)


def _fallback(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def iter_dumps(document: Any) -> Iterator[bytes]:
    """``dumps(document)`` in pieces whose concatenation equals it byte for byte.

    Dicts and lists holding an array of more than ``ARRAY_PIECE`` elements are written
    member by member, and such an array a block of rows at a time; anything else in one piece.

    Example:
        >>> document = {"a": np.arange(3), "b": [1.5, None]}
        >>> b"".join(iter_dumps(document)) == dumps(document)
        True
    """
    if not _holds_large_array(document):
        yield dumps(document)
    elif isinstance(document, dict):
        yield b"{"
        for index, (key, value) in enumerate(document.items()):
            yield (b"," if index else b"") + orjson.dumps(key) + b":"
            yield from iter_dumps(value)
        yield b"}"
    elif isinstance(document, list | tuple):
        yield b"["
        for index, value in enumerate(document):
            if index:
                yield b","
            yield from iter_dumps(value)
        yield b"]"
    else:
        yield from _array_pieces(document)


def _holds_large_array(value: Any) -> bool:
    if isinstance(value, np.ndarray):  # dumps writes others through tolist(): keep them whole
        return value.ndim >= 1 and value.size > ARRAY_PIECE and value.flags.c_contiguous
    if isinstance(value, dict):
        return any(_holds_large_array(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_large_array(item) for item in value)
    return False


def _array_pieces(array: np.ndarray[Any, Any]) -> Iterator[bytes]:
    """A large array as ``[``, blocks of rows without their brackets, ``]``."""
    rows = max(1, ARRAY_PIECE // max(1, array.size // len(array)))
    yield b"["
    for start in range(0, len(array), rows):
        yield (b"," if start else b"") + dumps(array[start : start + rows])[1:-1]
    yield b"]"
