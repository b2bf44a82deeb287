from __future__ import annotations

import math
from typing import Any
from unittest import mock

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst

from focal_eval.service.http import jsonio
from focal_eval.service.http.jsonio import ARRAY_PIECE, dumps, iter_dumps


def _pieces(document: Any) -> list[bytes]:
    return list(iter_dumps(document))


def _nan_every_seventh(size: int) -> np.ndarray[Any, Any]:
    values = np.linspace(-3, 3, size, dtype=np.float32)
    values[::7] = np.nan
    return values


LARGE = [
    pytest.param(_nan_every_seventh(200_001), id="float32-1d-with-nan"),
    pytest.param(np.arange(210_000, dtype=np.int64).reshape(70_000, 3), id="int64-70000x3"),
    pytest.param(np.linspace(0, 1, 210_000).reshape(3, 70_000), id="float64-rows-over-a-piece"),
    pytest.param(np.arange(140_000) % 3 == 0, id="bool"),
    pytest.param(np.full(70_000, 0.1, dtype=np.float16), id="float16"),
    pytest.param(np.arange(120_000, dtype=np.float32).reshape(2, 300, 200) / 7, id="float32-3d"),
    pytest.param(np.arange(ARRAY_PIECE + 1, dtype=np.uint8), id="uint8-one-over-a-piece"),
]


@pytest.mark.parametrize("array", LARGE)
def test_large_array_is_streamed_in_pieces_equal_to_dumps(array: np.ndarray[Any, Any]) -> None:
    document = {"per_sample": {"focal_loss": array}, "n": len(array), "name": "x"}
    pieces = _pieces(document)
    assert len(pieces) > 3  # streamed, not one dumps() call
    assert b"".join(pieces) == dumps(document)


@pytest.mark.parametrize(
    "array",
    [
        pytest.param(np.full((4, 70_000), 0.1, dtype=np.float32)[::2], id="every-other-row"),
        pytest.param(np.full(300_000, 0.1, dtype=np.float32)[::2], id="every-other-element"),
        pytest.param(
            np.asfortranarray(np.full((70_000, 2), 0.1, dtype=np.float32)), id="fortran-order"
        ),
        pytest.param(np.full((70_000, 3), 0.1, dtype=np.float32)[:, :1], id="one-column"),
    ],
)
def test_non_contiguous_large_array_streams_equal_to_dumps(
    array: np.ndarray[Any, Any],
) -> None:
    assert not array.flags.c_contiguous
    document = [array]
    assert b"".join(iter_dumps(document)) == dumps(document)


def test_nan_is_written_as_null_in_every_piece() -> None:
    array = _nan_every_seventh(200_001)
    parsed = orjson.loads(b"".join(iter_dumps({"a": array})))["a"]
    assert len(parsed) == len(array)
    assert [index for index, value in enumerate(parsed) if value is None] == list(
        range(0, len(array), 7)
    )
    assert all(
        math.isclose(value, float(expected), rel_tol=1e-6)
        for value, expected in zip(parsed, array, strict=True)
        if value is not None
    )


def test_small_document_is_one_piece() -> None:
    document = {"a": np.arange(ARRAY_PIECE), "b": [1.5, None, "x"], "c": {"d": np.float32(0.5)}}
    assert _pieces(document) == [dumps(document)]


def test_list_of_large_arrays_streams_member_by_member() -> None:
    document = [np.zeros(ARRAY_PIECE + 1), "x", (np.ones(ARRAY_PIECE + 1, np.int32), None)]
    assert b"".join(iter_dumps(document)) == dumps(document)


# --- any document, with a small piece size so that "large" is cheap ---------------------------

DTYPES = st.sampled_from(
    [np.float64, np.float32, np.float16, np.int64, np.int32, np.uint8, np.bool_]
)


@st.composite
def _arrays(draw: st.DrawFn) -> np.ndarray[Any, Any]:
    dtype = draw(DTYPES)
    shape = draw(npst.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
    array: np.ndarray[Any, Any] = draw(npst.arrays(dtype, shape))
    view = draw(st.sampled_from(["as-is", "every-other-row", "transposed", "fortran"]))
    if view == "every-other-row" and array.ndim >= 1:
        return array[::2]
    if view == "transposed":
        return array.T
    if view == "fortran":
        return np.asfortranarray(array)
    return array


LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=8)
    | _arrays()
)
DOCUMENTS = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@given(document=DOCUMENTS, piece=st.integers(1, 12))
@settings(max_examples=400, deadline=None)
def test_iter_dumps_joins_to_dumps(document: Any, piece: int) -> None:
    with mock.patch.object(jsonio, "ARRAY_PIECE", piece):
        joined = b"".join(iter_dumps(document))
    assert joined == dumps(document)


@given(array=_arrays(), piece=st.integers(1, 12))
@settings(max_examples=400, deadline=None)
def test_any_array_streams_equal_to_dumps(array: np.ndarray[Any, Any], piece: int) -> None:
    with mock.patch.object(jsonio, "ARRAY_PIECE", piece):
        joined = b"".join(iter_dumps({"a": array}))
    assert joined == dumps({"a": array})
