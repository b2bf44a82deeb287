"""What request work costs in memory: the per-request terms of the memory model.

Each function is an upper bound, in bytes, from sizes known before the work runs; a request reserves
them against the budget (:mod:`focal_eval.service.memory.budget`) before doing the work. The
coefficients were measured on the shipped graph (``python -m bench --only memory``), and
``tests/service/test_memory.py`` holds the server's real peaks under them.

Stages of one request, each a bound on what is alive while it runs:

- the body as received (counted as it arrives; a ``bytearray`` grows by up to 1/8 more);
- a ``Content-Encoding`` inflated beside it, into at most ``FOCAL_MAX_BODY_BYTES``;
- JSON: the Python objects orjson builds (:func:`json_parse`), then numpy arrays;
- validation: converted copies of the arrays (:func:`conversion`);
- scoring (:func:`scoring`): the graph's work on each chunk of rows running, its ``C x C``
  statistics, and the per-sample outputs kept for the response;
- the response: the outputs it still has to write, plus one chunk of encoded bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from focal_eval.service.core.scoring import chunk_rows
from focal_eval.service.core.tasks import MULTICLASS
from focal_eval.service.core.validation import CHECK_ELEMENTS
from focal_eval.service.http.body import Body, count_byte

GROWTH = 9 / 8  # a bytearray grown by appends over-allocates by up to an eighth
PARSER_POOL_BYTES = 12  # yyjson's value pool inside orjson, per byte of text
LIST_BYTES = 80  # one Python list from orjson (header, allocation slack), per '['
DICT_BYTES = 288  # one Python dict, per '{'
KEY_BYTES = 96  # one dict entry and its key string, per ':'
QUOTE_BYTES = 32  # half a string object's header, per '"'
ELEMENT_BYTES = 48  # one float (24 bytes, 32 with the allocator) and its list slot
ARRAY_BYTES = 8  # the numpy array made from one parsed element, at most (int64 / float64)
TAPE_BYTES = 24  # simdjson's tape (16 bytes a value) and its string buffer, per value
SIMDJSON_PADDING = 2**16
JSON_NUMBER_BYTES = 26  # the longest number orjson writes, and its comma
ROW_BYTES = 128  # the graph's per-row intermediates for one chunk, per row
ELEMENT_WORK = 16  # the graph's per-logit intermediates for one chunk, and its float32 copy
SQUARE_BYTES = 64  # the C x C work: confusion matrix, its sums across chunks, the metrics
# a further chunk at once: its confusion matrix in the arena (the cells and the scatter's
# output) and its share's sums, 8 bytes a cell each, and 8 to spare
SHARE_SQUARE_BYTES = 32
MULTILABEL_ELEMENT_WORK = 160  # the multi-label graph's per-element intermediates, one chunk
LABEL_BYTES = 1024  # per label: its counts and sums, a chunk's and the totals, the metrics
RANKING_ELEMENT_WORK = 64  # the ranking graph's per-logit intermediates (probabilities, cells)
HISTOGRAM_BYTES = 64  # per histogram bin: positives and negatives (int64), a chunk's and sums
STATISTICS_COPIES = 8  # a metrics graph's float64 copies of its statistics (cumsums, ratios)
PROBABILITY_BLOCK_WORK = 32  # float64 temporaries per element of a block being converted
RESPONSE_CHUNK = 2**20  # encoded bytes a streamed response holds at once (and the transport)
FIXED = 2 * 2**20  # a request's small objects, headers and metrics


def received(nbytes: int) -> int:
    """A body of ``nbytes`` received into a growing buffer."""
    return math.ceil(nbytes * GROWTH)


def json_parse(text: Body, end: int | None = None) -> int:
    """What orjson builds from ``text[:end]``, plus the arrays made from its numbers.

    Counted from the text before parsing, for any nesting and any content: orjson's parser
    (yyjson) sizes its own value pool by the text's length, then every ``[`` is a list,
    every ``{`` a dict, every ``:`` a key, every ``"`` half a string (whose characters the
    text's length bounds), and every element follows a ``[`` or a ``,``.
    """
    count = _counter(text, end)
    lists = count(b"[")
    elements = lists + count(b",")
    return (
        PARSER_POOL_BYTES * _length(text, end)
        + LIST_BYTES * lists
        + DICT_BYTES * count(b"{")
        + KEY_BYTES * count(b":")
        + QUOTE_BYTES * count(b'"')
        + (ELEMENT_BYTES + ARRAY_BYTES) * elements
    )


def json_arrays(text: Body, end: int | None = None) -> int:
    """The simdjson tape for ``text[:end]`` and the arrays read out of it (``json_arrays``).

    The parser holds a padded copy of the text, its index and its strings, then the Python
    strings read from them (each bounded by the text's length), and 16 bytes per value; each
    number is read out as 8 bytes, then converted to float32 (4 more).
    """
    count = _counter(text, end)
    values = count(b"[") + count(b",") + 1
    return 4 * _length(text, end) + SIMDJSON_PADDING + (TAPE_BYTES + 8 + 4) * values


def _length(text: Body, end: int | None) -> int:
    return len(text) if end is None else min(end, len(text))


def _counter(text: Body, end: int | None) -> Callable[[bytes], int]:
    """``count(byte)`` of a one-byte ``byte`` in ``text[:end]``."""
    return lambda byte: count_byte(text, byte, end)


def json_text(elements: int) -> int:
    """The JSON text of ``elements`` numbers, at most (an int64 or a float and a comma)."""
    return JSON_NUMBER_BYTES * elements + 2**10


def conversion(logits: npt.NDArray[Any], labels: npt.NDArray[Any]) -> int:
    """Copies validation makes: C-ordered ``(N, C)`` float logits, int64 labels.

    Float logits keep their dtype (the scorer converts a chunk at a time); integer ones
    become float32.
    """
    itemsize = 4 if logits.dtype.kind != "f" else logits.dtype.itemsize
    copies = 4 * logits.size if logits.dtype.kind != "f" else 0
    if logits.ndim != 2 or not logits.flags.c_contiguous:  # moved and reshaped, or made contiguous
        copies += itemsize * logits.size
    copies += 8 * labels.size * (labels.dtype != np.int64 or not labels.flags.c_contiguous)
    checks = 2 * 4 * min(logits.size, CHECK_ELEMENTS) + 4 * labels.size  # finiteness, label range
    return copies + checks


def scoring(
    task: str,
    n: int,
    width: int,
    kept_bytes_per_row: int,
    histogram_bins: int = 0,
    chunks_at_once: int = 1,
) -> int:
    """Scoring N rows of ``width`` classes or labels, keeping the per-sample outputs named.

    Multi-class: the graph's per-row and per-logit work on one chunk, and the C x C
    statistics; with ranking (``histogram_bins`` > 0) its per-logit work and histograms too.
    Multi-label: its per-element work on one chunk, the per-label counts and the score
    histograms (``histogram_bins`` per label). Each further chunk running at the same time
    (``chunks_at_once``, :meth:`Scorer.chunks_at_once
    <focal_eval.service.core.scoring.Scorer.chunks_at_once>`) adds its own work and
    histograms, and its statistics and its share's sums; the metrics are computed once.
    """
    rows = min(n, chunk_rows(width))
    if task == MULTICLASS:
        work = rows * (ROW_BYTES + ELEMENT_WORK * width)
        if histogram_bins:
            work += rows * RANKING_ELEMENT_WORK * width
        statistics = SQUARE_BYTES * width * width
        each_further = SHARE_SQUARE_BYTES * width * width
    else:
        work = rows * (ROW_BYTES + MULTILABEL_ELEMENT_WORK * width)
        statistics = each_further = LABEL_BYTES * width
    work += HISTOGRAM_BYTES * width * histogram_bins
    further = chunks_at_once - 1
    return (
        kept_bytes_per_row * n
        + chunks_at_once * work
        + statistics
        + further * each_further
        + RESPONSE_CHUNK
        + FIXED
    )


def metrics(task: str, width: int, statistics_bytes: int) -> int:
    """A metrics graph on summed statistics of ``width`` classes or labels (``/compute``).

    Multi-class: the C x C work; multi-label: per label; both: copies of the statistics.
    """
    work = SQUARE_BYTES * width * width if task == MULTICLASS else LABEL_BYTES * width
    return work + STATISTICS_COPIES * statistics_bytes + RESPONSE_CHUNK + FIXED


def probabilities(logits: npt.NDArray[Any]) -> int:
    """Probabilities converted to float32 logits: the result, and a block's float64 work."""
    return 4 * logits.size + PROBABILITY_BLOCK_WORK * min(logits.size, CHECK_ELEMENTS)


def response(retained: int) -> int:
    """A response still to be written: its arrays, and two encoded chunks.

    One chunk is being encoded while the transport may still hold the one before.
    """
    return retained + 2 * RESPONSE_CHUNK
