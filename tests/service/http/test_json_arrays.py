from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from focal_eval.service.http.json_arrays import Kind, load_arrays

DTYPES: dict[Kind, type[np.generic]] = {"float": np.float64, "int": np.int64}
INT64 = st.integers(-(2**63), 2**63 - 1)
FINITE = st.floats(allow_nan=False, allow_infinity=False)


def _shape(value: Any) -> tuple[int, ...] | None:
    """The shape of a nested list whose leaves all sit at one depth; None if it is ragged."""
    if not isinstance(value, list):
        return ()
    if not value:
        return (0,)
    shapes = {_shape(item) for item in value}
    if len(shapes) != 1 or None in shapes:
        return None
    (inner,) = shapes
    assert inner is not None
    return (len(value), *inner)


def _expected(text: bytes, name: str, kind: Kind) -> np.ndarray[Any, Any]:
    return np.asarray(orjson.loads(text)[name], dtype=DTYPES[kind])


def _assert_identical(actual: Any, expected: np.ndarray[Any, Any]) -> None:
    assert isinstance(actual, np.ndarray)
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    assert actual.tobytes() == expected.tobytes()  # bit for bit: -0.0, subnormals


def _dump(document: Any, style: int) -> bytes:
    """The same document in one of several layouts."""
    if style == 0:
        return orjson.dumps(document)
    if style == 1:
        return json.dumps(document, indent=2).encode()
    return json.dumps(document, separators=(" ,", ": ")).encode()


@st.composite
def _nested(draw: st.DrawFn, leaves: st.SearchStrategy[Any]) -> Any:
    """A regular nested list of ``leaves`` of a random shape (1 to 4 dimensions)."""
    shape = draw(st.lists(st.integers(0, 3), min_size=1, max_size=4))
    count = int(np.prod(shape))
    flat = draw(st.lists(leaves, min_size=count, max_size=count))

    def build(dims: list[int], items: list[Any]) -> Any:
        if len(dims) == 1:
            return items
        step = int(np.prod(dims[1:]))
        return [build(dims[1:], items[i * step : (i + 1) * step]) for i in range(dims[0])]

    return build(shape, flat)


OTHER_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="["), max_size=8
)
OTHER_MEMBERS = st.fixed_dictionaries(
    {},
    optional={
        "gamma": FINITE,
        "ignore_index": INT64,
        "source": OTHER_TEXT,
        "per_sample": st.booleans(),
        "missing": st.none(),
    },
)


@given(
    logits=_nested(FINITE | INT64),
    labels=_nested(INT64),
    other=OTHER_MEMBERS,
    style=st.integers(0, 2),
)
@settings(max_examples=300, deadline=None)
def test_regular_arrays_equal_numpy_of_the_parsed_json(
    logits: Any, labels: Any, other: dict[str, Any], style: int
) -> None:
    text = _dump({**other, "logits": logits, "labels": labels}, style)
    loaded = load_arrays(text, {"logits": "float", "labels": "int"})
    assert loaded is not None
    _assert_identical(loaded["logits"], _expected(text, "logits", "float"))
    _assert_identical(loaded["labels"], _expected(text, "labels", "int"))
    parsed = orjson.loads(text)
    assert {key: value for key, value in loaded.items() if key in other} == {
        key: parsed[key] for key in other
    }
    assert set(loaded) == set(parsed)


RAGGED = st.recursive(
    FINITE | INT64,
    lambda children: st.lists(children, max_size=3),
    max_leaves=10,
)


@given(value=st.lists(RAGGED, max_size=4), kind=st.sampled_from(["float", "int"]))
@settings(max_examples=300, deadline=None)
def test_any_nested_list_loads_exactly_when_regular_else_none(value: Any, kind: Kind) -> None:
    if kind == "int":
        value = _ints_only(value)
    text = orjson.dumps({"x": value})
    loaded = load_arrays(text, {"x": kind})
    if _shape(value) is None:
        assert loaded is None
    else:
        assert loaded is not None
        _assert_identical(loaded["x"], _expected(text, "x", kind))


def _ints_only(value: Any) -> Any:
    if isinstance(value, list):
        return [_ints_only(item) for item in value]
    return value if isinstance(value, int) else 7


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        pytest.param(b'{"x": []}', "int", np.zeros(0, np.int64), id="empty"),
        pytest.param(b'{"x": [[]]}', "int", np.zeros((1, 0), np.int64), id="one-empty-row"),
        pytest.param(b'{"x": [[], []]}', "float", np.zeros((2, 0)), id="two-empty-rows"),
        pytest.param(b'{"x": [[[]]]}', "float", np.zeros((1, 1, 0)), id="empty-3d"),
        pytest.param(
            b'{"x": ' + b"[" * 12 + b"1.5" + b"]" * 12 + b"}",
            "float",
            np.full((1,) * 12, 1.5),
            id="depth-12",
        ),
        pytest.param(
            b'{"x": [-0.0, 5e-324, 1.7976931348623157e308, 1E2, -2.5e-3]}',
            "float",
            np.array([-0.0, 5e-324, 1.7976931348623157e308, 100.0, -0.0025]),
            id="float-edges",
        ),
        pytest.param(
            b'{"x": [-9223372036854775808, 9223372036854775807, 0]}',
            "int",
            np.array([-(2**63), 2**63 - 1, 0], np.int64),
            id="int64-range",
        ),
        pytest.param(
            b'{"x": [18446744073709551615, 9007199254740993]}',
            "float",
            np.array([2.0**64, 2.0**53], np.float64),
            id="large-integers-as-float",
        ),
        pytest.param(b'{"x": [1, 2]}', "float", np.array([1.0, 2.0]), id="integers-as-float"),
    ],
)
def test_regular_edge_cases_load_exactly(
    text: bytes, kind: Kind, expected: np.ndarray[Any, Any]
) -> None:
    loaded = load_arrays(text, {"x": kind})
    assert loaded is not None
    _assert_identical(loaded["x"], expected)


def test_members_not_named_stay_python_scalars() -> None:
    text = b'{"x": [[1, 2]], "s": "v", "g": 2.5, "b": true, "n": null}'
    loaded = load_arrays(text, {"x": "int"})
    assert loaded is not None
    _assert_identical(loaded["x"], np.array([[1, 2]], np.int64))
    assert {key: value for key, value in loaded.items() if key != "x"} == {
        "s": "v",
        "g": 2.5,
        "b": True,
        "n": None,
    }


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(b'{"x": [[1, 2]], "y": [[1], [2, 3]]}', id="a-list-not-named"),
        pytest.param(b'{"x": [[1, 2]], "o": {"a": [1.5]}}', id="an-object"),
        pytest.param(b'{"x": {"a": 1}}', id="an-object-where-an-array-is-named"),
    ],
)
def test_containers_other_than_the_named_arrays_take_the_general_path(text: bytes) -> None:
    # their Python objects are what the general path's reservation counts
    assert load_arrays(text, {"x": "int"}) is None


def test_a_named_member_that_is_not_an_array_stays_a_python_value() -> None:
    assert load_arrays(b'{"x": 5, "k": "v"}', {"x": "float"}) == {"x": 5, "k": "v"}


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        pytest.param(b'{"x": [[1, 2], [3]]}', "float", id="ragged-rows"),
        pytest.param(b'{"x": [[1], [2, 3]]}', "float", id="ragged-first-shorter"),
        pytest.param(b'{"x": [[], [1]]}', "float", id="empty-then-full-row"),
        pytest.param(b'{"x": [[1, 2], 3]}', "float", id="row-then-number"),
        pytest.param(b'{"x": [1, [2]]}', "float", id="number-then-row"),
        pytest.param(b'{"x": [1, []]}', "float", id="number-then-empty-row"),
        pytest.param(b'{"x": [[1, [2]], [3, 4]]}', "float", id="deeper-leaf"),
        pytest.param(b'{"x": [[1, 2], [[3], 4]]}', "float", id="deeper-leaf-later"),
        pytest.param(b'{"x": [["a", 1]]}', "float", id="string-leaf"),
        pytest.param(b'{"x": [null, 1]}', "float", id="null-leaf"),
        pytest.param(b'{"x": [true, 1]}', "float", id="bool-leaf"),
        pytest.param(b'{"x": [false]}', "int", id="bool-leaf-int"),
        pytest.param(b'{"x": [{"a": 1}]}', "float", id="object-leaf"),
        pytest.param(b'{"x": [1.5, 2]}', "int", id="float-in-int-array"),
        pytest.param(b'{"x": [1], "x": [2]}', "float", id="duplicate-key"),
        pytest.param(b'{"x": [1], "k": "a[b"}', "float", id="bracket-in-a-string"),
        pytest.param(b'{"x": [1], "k[": 1}', "float", id="bracket-in-a-key"),
        pytest.param(b'{"x": [18446744073709551616]}', "float", id="integer-over-64-bits"),
        pytest.param(b'{"x": [18446744073709551616]}', "int", id="integer-over-64-bits-int"),
        pytest.param(b'{"x": [9223372036854775808]}', "int", id="integer-over-int64"),
        pytest.param(b'{"x": [-9223372036854775809]}', "int", id="integer-under-int64"),
        pytest.param(b'{"x": [-9223372036854775809]}', "float", id="integer-under-int64-float"),
        pytest.param(b'{"x": [1e400]}', "float", id="1e400-in-the-array"),
        pytest.param(b'{"x": [1], "g": 1e400}', "float", id="1e400-elsewhere"),
        pytest.param(b'{"x": [1], "g": 18446744073709551616}', "float", id="big-int-elsewhere"),
        pytest.param(b"[1, 2]", "float", id="top-level-array"),
        pytest.param(b'"x"', "float", id="top-level-string"),
        pytest.param(b"5", "float", id="top-level-number"),
        pytest.param(b"null", "float", id="top-level-null"),
        pytest.param(b'{"x": [1, 2]', "float", id="unterminated"),
        pytest.param(b'{"x": [1]} [', "float", id="trailing-text"),
        pytest.param(b"", "float", id="empty-body"),
        pytest.param(b'{"x": [NaN]}', "float", id="nan-literal"),
    ],
)
def test_irregular_input_is_none(text: bytes, kind: Kind) -> None:
    assert load_arrays(text, {"x": kind}) is None


def test_bytearray_input_is_read_like_bytes() -> None:
    loaded = load_arrays(bytearray(b'{"x": [[1, 2], [3, 4]]}'), {"x": "int"})
    assert loaded is not None
    _assert_identical(loaded["x"], np.array([[1, 2], [3, 4]], np.int64))
