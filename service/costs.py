"""What request work costs in memory: the per-request terms of the memory model.

Each function is an upper bound, in bytes, from sizes known before the work runs; a request
reserves them against the budget (:mod:`service.memory_budget`) before doing the work. The
coefficients were measured on the shipped graph (``python -m bench --only memory``), and
``tests/service/test_memory_model.py`` holds the server's real peaks under them.

Stages of one request, each a bound on what is alive while it runs:

- the body as received (counted as it arrives; a ``bytearray`` grows by up to 1/8 more);
- a ``Content-Encoding`` inflated beside it, into at most ``FOCAL_MAX_BODY_BYTES``;
- JSON: the Python objects orjson builds (:func:`json_parse`), then numpy arrays;
- validation: converted copies of the arrays (:func:`conversion`);
- scoring (:func:`scoring`): the graph's work on one chunk of rows, its ``C x C`` statistics,
  and the per-sample outputs kept for the response;
- the response: the outputs it still has to write, plus one chunk of encoded bytes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from service.scoring import chunk_rows
from service.validation import CHECK_ELEMENTS

GROWTH = 9 / 8  # a bytearray grown by appends over-allocates by up to an eighth
LIST_BYTES = 80  # one Python list from orjson (header, allocation slack), per '['
ELEMENT_BYTES = 40  # one float (24 bytes, 32 with the allocator) and its 8-byte list slot
ARRAY_BYTES = 8  # the numpy array made from one parsed element, at most (int64 / float64)
TAPE_BYTES = 24  # simdjson's tape (16 bytes a value) and its string buffer, per value
SIMDJSON_PADDING = 2**16
ROW_BYTES = 128  # the graph's per-row intermediates for one chunk, per row
ELEMENT_WORK = 16  # the graph's per-logit intermediates for one chunk, and its float32 copy
SQUARE_BYTES = 64  # the C x C work: confusion matrix, its sums across chunks, the metrics
RESPONSE_CHUNK = 2**20  # encoded bytes a streamed response holds at once (and the transport)
FIXED = 2 * 2**20  # a request's small objects, headers and metrics


def received(nbytes: int) -> int:
    """A body of ``nbytes`` received into a growing buffer."""
    return math.ceil(nbytes * GROWTH)


def json_parse(text: bytes | bytearray | memoryview) -> int:
    """The Python objects orjson makes of ``text``, plus the arrays made from them.

    Counted from the text before parsing: every ``[`` is a list and every element follows a
    ``[`` or a ``,``, so the bound holds for any nesting, however the numbers are written.
    """
    raw = bytes(text) if isinstance(text, memoryview) else text
    lists = raw.count(b"[")
    elements = lists + raw.count(b",")
    return LIST_BYTES * lists + (ELEMENT_BYTES + ARRAY_BYTES) * elements


def json_arrays(text: bytes | bytearray) -> int:
    """The simdjson tape for ``text`` and the arrays read out of it (``service.json_arrays``).

    The tape holds a padded copy of the text and 16 bytes per value; each number is read out
    as 8 bytes, then converted to float32 (4 more).
    """
    values = text.count(b"[") + text.count(b",") + 1
    return len(text) + SIMDJSON_PADDING + (TAPE_BYTES + 8 + 4) * values


def conversion(logits: npt.NDArray[Any], labels: npt.NDArray[Any]) -> int:
    """Copies validation makes: C-ordered ``(N, C)`` float logits, int64 labels.

    Float logits keep their dtype (the scorer converts a chunk at a time); integer ones
    become float32.
    """
    copies = 0
    if logits.dtype.kind != "f":
        copies += 4 * logits.size
    elif logits.ndim != 2 or not logits.flags.c_contiguous:
        copies += logits.dtype.itemsize * logits.size
    if labels.dtype != np.int64:
        copies += 8 * labels.size
    return copies + 2 * 4 * min(logits.size, CHECK_ELEMENTS)  # the finiteness check's blocks


def scoring(n: int, c: int, kept_bytes_per_row: int) -> int:
    """Scoring N rows of C classes, keeping ``kept_bytes_per_row`` of per-sample outputs."""
    rows = min(n, chunk_rows(c))
    return (
        kept_bytes_per_row * n
        + rows * (ROW_BYTES + ELEMENT_WORK * c)
        + SQUARE_BYTES * c * c
        + RESPONSE_CHUNK
        + FIXED
    )


def response(retained: int) -> int:
    """A response still to be written: the arrays it holds and one encoded chunk."""
    return retained + 2 * RESPONSE_CHUNK
