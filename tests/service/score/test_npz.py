from __future__ import annotations

import io
import pickle
import struct
import tracemalloc
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy_format

from focal_eval.service.core.errors import RequestError
from focal_eval.service.score.npz import check_npz_start, load_npz
from tests.service._inputs import batch

REQUIRED = ("logits", "labels")
OPTIONAL = ("weights",)
LIMIT = 1 << 20

Saver = Callable[..., None]
SAVERS = [
    pytest.param(np.savez, id="savez"),
    pytest.param(np.savez_compressed, id="savez_compressed"),
]


def _npz(save: Saver = np.savez, **arrays: npt.ArrayLike) -> bytes:
    buffer = io.BytesIO()
    save(buffer, **arrays)
    return buffer.getvalue()


def _npy(array: npt.NDArray[Any], version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array(buffer, array, version=version, allow_pickle=True)
    return buffer.getvalue()


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _npy_with_header(header: str, data: bytes = b"") -> bytes:
    """A version 1.0 .npy file with a hand-written header dict."""
    text = header.encode("latin1")
    padding = -(10 + len(text) + 1) % 64
    text += b" " * padding + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def _patch_central_directory(body: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite one field of the (single) central directory entry of a zip archive."""
    start = body.index(b"PK\x01\x02") + offset
    return body[:start] + struct.pack(fmt, value) + body[start + struct.calcsize(fmt) :]


def _load(body: bytes, limit: int = LIMIT) -> dict[str, npt.NDArray[Any]]:
    return load_npz(body, REQUIRED, OPTIONAL, limit)


def _error(body: bytes, limit: int = LIMIT) -> RequestError:
    with pytest.raises(RequestError) as caught:
        _load(body, limit)
    return caught.value


LOGITS = np.linspace(-3, 3, 24, dtype=np.float32).reshape(6, 4)
LABELS = np.array([0, 1, 2, 3, 0, 1])
WEIGHTS = np.ones(6, dtype=np.float16)


# --- valid archives -------------------------------------------------------------------------


@pytest.mark.parametrize("save", SAVERS)
def test_required_and_optional_arrays_load_exactly(save: Saver) -> None:
    arrays = _load(_npz(save, logits=LOGITS, labels=LABELS, weights=WEIGHTS))
    assert sorted(arrays) == ["labels", "logits", "weights"]
    for name, expected in (("logits", LOGITS), ("labels", LABELS), ("weights", WEIGHTS)):
        assert arrays[name].dtype == expected.dtype
        np.testing.assert_array_equal(arrays[name], expected)


@pytest.mark.parametrize("save", SAVERS)
def test_optional_arrays_may_be_absent(save: Saver) -> None:
    arrays = _load(_npz(save, logits=LOGITS, labels=LABELS))
    assert sorted(arrays) == ["labels", "logits"]


@pytest.mark.parametrize("save", SAVERS)
@pytest.mark.parametrize(
    "logits",
    [
        pytest.param(np.arange(12, dtype=np.float64).reshape(3, 4), id="float64"),
        pytest.param(np.arange(12, dtype=np.float16).reshape(3, 4), id="float16"),
        pytest.param(np.asfortranarray(LOGITS), id="fortran-order"),
        pytest.param(np.zeros((0, 5), dtype=np.float32), id="empty"),
        pytest.param(np.float32(1.5), id="zero-d"),
        pytest.param(np.array([True, False]), id="bool"),
        pytest.param(np.arange(6, dtype=">i4"), id="big-endian"),
    ],
)
def test_arrays_keep_their_dtype_shape_and_values(save: Saver, logits: npt.NDArray[Any]) -> None:
    loaded = _load(_npz(save, logits=logits, labels=LABELS))["logits"]
    assert isinstance(loaded, np.ndarray)
    assert loaded.dtype == logits.dtype
    assert loaded.shape == np.shape(logits)
    np.testing.assert_array_equal(loaded, logits)


@pytest.mark.parametrize(
    ("array", "version"),
    [
        pytest.param(LOGITS, (1, 0), id="v1"),
        pytest.param(LOGITS, (2, 0), id="v2"),
        pytest.param(LOGITS, (3, 0), id="v3"),
        pytest.param(np.zeros(3, dtype=[("é", "<f4"), ("b", "<i8")]), (3, 0), id="v3-utf8-fields"),
    ],
)
def test_every_npy_format_version_loads(array: npt.NDArray[Any], version: tuple[int, int]) -> None:
    body = _zip({"logits.npy": _npy(array, version), "labels.npy": _npy(LABELS)})
    loaded = _load(body)["logits"]
    assert loaded.dtype == array.dtype
    np.testing.assert_array_equal(loaded, array)


def test_member_without_npy_suffix_is_read_by_its_name() -> None:
    body = _zip({"logits": _npy(LOGITS), "labels.npy": _npy(LABELS)})
    np.testing.assert_array_equal(_load(body)["logits"], LOGITS)


def test_loading_an_uncompressed_archive_makes_about_one_copy() -> None:
    payload = np.arange(4 << 20, dtype=np.float32)  # 16 MB
    body = _npz(np.savez, logits=payload, labels=LABELS)
    tracemalloc.start()
    try:
        arrays = load_npz(body, REQUIRED, OPTIONAL, 2 * payload.nbytes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(arrays["logits"], payload)
    assert peak < 1.2 * payload.nbytes


# --- malformed bodies: 400 ------------------------------------------------------------------


def test_single_npy_body_is_400() -> None:
    error = _error(_npy(LOGITS))
    assert error.status_code == 400
    assert error.message == (
        "body: got a single .npy array; send an .npz archive with arrays named logits and labels"
    )


_VALID = _npz(np.savez, logits=LOGITS, labels=LABELS)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"logits=1,2,3", id="text"),
        pytest.param(_VALID[: len(_VALID) // 2], id="truncated-half"),
        pytest.param(_VALID[:-1], id="truncated-last-byte"),
        pytest.param(_VALID[100:], id="missing-start"),
    ],
)
def test_body_that_is_not_a_zip_archive_is_400(body: bytes) -> None:
    error = _error(body)
    assert error.status_code == 400
    assert error.message.startswith("body: not a valid .npz archive (")


def _flip_member_byte(body: bytes, member: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        info = archive.getinfo(member)
    name_size, extra_size = struct.unpack(
        "<HH", body[info.header_offset + 26 : info.header_offset + 30]
    )
    position = info.header_offset + 30 + name_size + extra_size + info.compress_size // 2
    return body[:position] + bytes([body[position] ^ 0x55]) + body[position + 1 :]


@pytest.mark.parametrize("save", SAVERS)
def test_corrupt_member_data_is_400(save: Saver) -> None:
    logits, _ = batch(100, 10, seed=0, scale=1.0, dtype=np.float64)
    body = _npz(save, logits=logits, labels=LABELS)
    error = _error(_flip_member_byte(body, "logits.npy"))
    assert error.status_code == 400
    assert error.message.startswith("body: not a valid .npz archive (logits.npy: ")


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_truncated_npy_member_is_400(method: int) -> None:
    body = _zip({"logits.npy": _npy(LOGITS)[:-8], "labels.npy": _npy(LABELS)}, method)
    error = _error(body)
    assert error.status_code == 400
    assert error.message == (
        "logits: truncated .npy member (its header declares 96 bytes of data, the member holds 88)"
    )


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        pytest.param(b"not an array", "the magic string is not correct", id="no-magic"),
        pytest.param(b"\x93NUMPY\x01", "EOF", id="truncated-magic"),
        pytest.param(
            b"\x93NUMPY\x04\x00" + b"\x00" * 120, "unsupported .npy format version 4", id="v4"
        ),
        pytest.param(_npy_with_header("{'descr': '<f4'}"), "Header does not contain", id="keys"),
        pytest.param(_npy_with_header("not a dict"), "Cannot parse header", id="syntax"),
        pytest.param(
            _npy_with_header("{'descr': 'xyz', 'fortran_order': False, 'shape': (2,)}"),
            "descr is not a valid dtype descriptor",
            id="bad-dtype",
        ),
        pytest.param(
            _npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-4,)}"),
            "negative shape (-4,)",
            id="negative-shape",
        ),
    ],
)
def test_member_that_is_not_a_valid_npy_array_is_400(member: bytes, reason: str) -> None:
    error = _error(_zip({"logits.npy": member, "labels.npy": _npy(LABELS)}))
    assert error.status_code == 400
    assert error.message.startswith("logits: not a valid .npy array (")
    assert reason in error.message


def test_duplicate_member_is_400() -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        body = _zip_with_duplicate()
    error = _error(body)
    assert error.status_code == 400
    assert error.message == 'body: not a valid .npz archive (array "logits" appears more than once)'


def _zip_with_duplicate() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("logits.npy", _npy(LOGITS))
        archive.writestr("logits.npy", _npy(LOGITS))
        archive.writestr("labels.npy", _npy(LABELS))
    return buffer.getvalue()


def test_same_array_with_and_without_npy_suffix_is_400() -> None:
    body = _zip({"logits.npy": _npy(LOGITS), "logits": _npy(LOGITS), "labels.npy": _npy(LABELS)})
    error = _error(body)
    assert error.status_code == 400
    assert error.message == 'body: not a valid .npz archive (array "logits" appears more than once)'


def test_encrypted_member_is_400() -> None:
    body = _patch_central_directory(_zip({"logits.npy": _npy(LOGITS)}), 8, "<H", 0x1)
    error = _error(body)
    assert error.status_code == 400
    assert error.message == 'body: not a valid .npz archive (member "logits.npy" is encrypted)'


@given(data=st.data())
@settings(max_examples=300, deadline=None)
def test_damaged_archives_fail_only_with_request_errors(data: st.DataObject) -> None:
    save = data.draw(st.sampled_from([np.savez, np.savez_compressed]))
    body = bytearray(_npz(save, logits=LOGITS, labels=LABELS))
    for _ in range(data.draw(st.integers(1, 4))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(body)))
    try:
        arrays = _load(bytes(body[:cut]) if data.draw(st.booleans()) else bytes(body))
    except RequestError as error:
        status = error.status_code
    else:
        status = 200 if set(arrays) <= {*REQUIRED, *OPTIONAL} else 500
    assert status in (200, 400, 413, 415, 422)


# --- size limit: 413 ------------------------------------------------------------------------


def test_declared_size_over_limit_is_413() -> None:
    body = _npz(np.savez, logits=LOGITS, labels=LABELS)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        declared = sum(info.file_size for info in archive.infolist())
    error = _error(body, limit=declared - 1)
    assert error.status_code == 413
    assert error.message == (
        f"body: the .npz members hold {declared} bytes, over the limit of {declared - 1} bytes"
    )
    assert _load(body, limit=declared).keys() == {"logits", "labels"}


def _deflated_zeros_member(size: int) -> bytes:
    """An archive whose deflated logits member holds ``size`` bytes of float32 zeros."""
    header = {"descr": "<f4", "fortran_order": False, "shape": (size // 4,)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("logits.npy", "w", force_zip64=True) as member:
            npy_format.write_array_header_1_0(member, header)
            zeros = bytes(1 << 20)
            for _ in range(size // len(zeros)):
                member.write(zeros)
        archive.writestr("labels.npy", _npy(LABELS))
    return buffer.getvalue()


def test_compressed_member_with_huge_declared_size_is_413_without_inflating() -> None:
    body = _deflated_zeros_member(64 << 20)
    assert len(body) < 200_000
    tracemalloc.start()
    try:
        error = _error(body, limit=LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        declared = sum(info.file_size for info in archive.infolist())
    assert declared > 64 << 20
    assert error.status_code == 413
    assert error.message == (
        f"body: the .npz members hold {declared} bytes, over the limit of {LIMIT} bytes"
    )
    assert peak < LIMIT


def test_forged_huge_declared_size_is_413() -> None:
    body = _patch_central_directory(_zip({"logits.npy": _npy(LOGITS)}), 24, "<I", 0xFFFFFFFE)
    error = _error(body)
    assert error.status_code == 413
    assert (
        error.message
        == f"body: the .npz members hold {0xFFFFFFFE} bytes, over the limit of {LIMIT} bytes"
    )


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        pytest.param(
            4096,
            "body: not a valid .npz archive (logits.npy: Bad CRC-32 for file 'logits.npy')",
            id="caught-by-zipfile-crc",
        ),
        pytest.param(
            1 << 19,
            "logits: truncated .npy member (its header declares 67108864 bytes of data, "
            "the member holds 524160)",
            id="caught-by-header-check",
        ),
    ],
)
def test_member_larger_than_declared_is_never_inflated_past_it(declared: int, message: str) -> None:
    # The archive's directory declares a small logits.npy; its data inflates to 64 MB.
    body = _patch_central_directory(_deflated_zeros_member(64 << 20), 24, "<I", declared)
    tracemalloc.start()
    try:
        error = _error(body, limit=LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.status_code == 400
    assert error.message == message
    assert peak < LIMIT


# --- invalid content: 415 and 422 -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "number"),
    [
        pytest.param(zipfile.ZIP_BZIP2, 12, id="bzip2"),
        pytest.param(zipfile.ZIP_LZMA, 14, id="lzma"),
    ],
)
def test_unsupported_compression_method_is_415(method: int, number: int) -> None:
    body = _zip({"logits.npy": _npy(LOGITS), "labels.npy": _npy(LABELS)}, method)
    error = _error(body)
    assert error.status_code == 415
    assert error.message == (
        f"logits: zip compression method {number} is not supported "
        "(use np.savez or np.savez_compressed)"
    )


UNPICKLED: list[str] = []


def _record_unpickling(label: str) -> str:
    UNPICKLED.append(label)
    return label


class _Tripwire:
    """An object whose unpickling is recorded in UNPICKLED."""

    def __reduce__(self) -> tuple[Callable[[str], str], tuple[str]]:
        return _record_unpickling, ("tripwire",)


def test_tripwire_records_unpickling() -> None:
    pickle.loads(pickle.dumps(_Tripwire()))
    assert UNPICKLED.pop() == "tripwire"


@pytest.mark.parametrize(
    "array",
    [
        pytest.param(np.array([1, "a", None], dtype=object), id="object"),
        pytest.param(np.array([_Tripwire()], dtype=object), id="tripwire-object"),
        pytest.param(np.zeros(2, dtype=[("x", "<f4"), ("y", object)]), id="structured-with-object"),
    ],
)
def test_object_arrays_are_422_and_never_unpickled(array: npt.NDArray[Any]) -> None:
    body = _zip({"logits.npy": _npy(array), "labels.npy": _npy(LABELS)})
    error = _error(body)
    assert error.status_code == 422
    assert error.message == "logits: object arrays are not accepted"
    assert UNPICKLED == []


@pytest.mark.parametrize(
    ("members", "message"),
    [
        pytest.param(
            {"logits.npy": LOGITS, "labels.npy": LABELS, "extra.npy": LABELS},
            '"extra": unexpected array in the .npz body (accepted: logits, labels, weights)',
            id="one",
        ),
        pytest.param(
            {"Logits.npy": LOGITS, "labels.npy": LABELS, "readme.txt": LABELS},
            '"Logits", "readme.txt": unexpected arrays in the .npz body '
            "(accepted: logits, labels, weights)",
            id="two",
        ),
        pytest.param(
            {f"a{index}.npy": LABELS for index in range(8)},
            '"a0", "a1", "a2", "a3", "a4" and 3 more: unexpected arrays in the .npz body '
            "(accepted: logits, labels, weights)",
            id="many",
        ),
        pytest.param(
            {"logits.npy": LOGITS, "labels.npy": LABELS, "bad\nname.npy": LABELS},
            '"bad\\nname": unexpected array in the .npz body (accepted: logits, labels, weights)',
            id="control-character",
        ),
    ],
)
def test_unknown_array_names_are_422(members: dict[str, npt.NDArray[Any]], message: str) -> None:
    error = _error(_zip({name: _npy(array) for name, array in members.items()}))
    assert error.status_code == 422
    assert error.message == message


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        pytest.param({"logits": LOGITS}, "labels: missing from the .npz body", id="labels"),
        pytest.param({"weights": WEIGHTS}, "logits, labels: missing from the .npz body", id="both"),
        pytest.param({}, "logits, labels: missing from the .npz body", id="empty-archive"),
    ],
)
def test_missing_required_arrays_are_422(arrays: dict[str, npt.NDArray[Any]], message: str) -> None:
    error = _error(_npz(np.savez, **arrays))
    assert error.status_code == 422
    assert error.message == message


# --- headers declaring shapes beyond numpy's range: 400 ---------------------------------------


def _header_only_member(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A .npy member that is only a version 1.0 header declaring ``shape`` (no data)."""
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


BEYOND_NUMPY = [
    pytest.param((0, 2**70), "<f4", id="0x2**70"),
    pytest.param((2**64, 0), "<f4", id="2**64x0"),
    pytest.param((0, 2**62, 8), "<f4", id="0x2**62x8"),
    pytest.param((0, 2**62, 8), "|u1", id="0x2**62x8-bytes"),
    pytest.param((0, 2**61), "<f4", id="0x2**61-float32-is-2**63-bytes"),
    pytest.param((0, 2**63), "|u1", id="0x2**63-bytes"),
]


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize(("shape", "descr"), BEYOND_NUMPY)
def test_empty_shape_beyond_numpys_range_is_400(
    shape: tuple[int, ...], descr: str, method: int
) -> None:
    body = _zip(
        {"logits.npy": _header_only_member(shape, descr), "labels.npy": _npy(LABELS)}, method
    )
    error = _error(body)
    assert error.status_code == 400
    assert error.message == (
        f"logits: not a valid .npy array (shape {shape} is beyond numpy's range)"
    )


@pytest.mark.parametrize(
    ("shape", "descr", "message"),
    [
        pytest.param(
            (0, 2**70),
            "<f4",
            "logits: not a valid .npy array (shape (0, 1180591620717411303424) is beyond"
            " numpy's range)",
            id="0x2**70",
        ),
        pytest.param(
            (2**64, 0),
            "<f4",
            "logits: not a valid .npy array (shape (18446744073709551616, 0) is beyond"
            " numpy's range)",
            id="2**64x0",
        ),
        pytest.param(
            (0, 2**62, 8),
            "<f4",
            "logits: not a valid .npy array (shape (0, 4611686018427387904, 8) is beyond"
            " numpy's range)",
            id="0x2**62x8",
        ),
    ],
)
def test_beyond_range_message_spells_the_shape_out(
    shape: tuple[int, ...], descr: str, message: str
) -> None:
    body = _zip({"logits.npy": _header_only_member(shape, descr), "labels.npy": _npy(LABELS)})
    assert _error(body).message == message


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize(
    ("shape", "descr"),
    [
        pytest.param((0, 2**61 - 1), "<f4", id="float32-just-inside"),
        pytest.param((0, 2**63 - 1), "|u1", id="bytes-just-inside"),
        pytest.param((2**40, 0, 3), "<f8", id="zero-in-the-middle"),
    ],
)
def test_empty_shape_within_numpys_range_loads(
    shape: tuple[int, ...], descr: str, method: int
) -> None:
    body = _zip(
        {"logits.npy": _header_only_member(shape, descr), "labels.npy": _npy(LABELS)}, method
    )
    logits = _load(body)["logits"]
    assert logits.shape == shape
    assert logits.dtype == np.dtype(descr)
    assert logits.size == 0


def _saved(save: Any, **arrays: npt.NDArray[Any]) -> bytes:
    buffer = io.BytesIO()
    save(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_saved(np.savez, logits=np.zeros((2, 3))), id="savez"),
        pytest.param(_saved(np.savez_compressed, logits=np.zeros((2, 3))), id="savez_compressed"),
        pytest.param(_saved(np.savez), id="empty-archive"),
        pytest.param(b"\x93NUMPY\x01\x00", id="single-npy-left-to-load_npz"),
    ],
)
def test_what_np_load_reads_as_an_archive_passes_the_start_check(body: bytes) -> None:
    check_npz_start(body)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(bytes(64), id="zeros"),
        pytest.param(b'{"logits": []}', id="json"),
        pytest.param(b"junk" + _saved(np.savez, logits=np.zeros(2)), id="bytes-before-the-zip"),
        pytest.param(b"", id="empty"),
    ],
)
def test_anything_else_fails_the_start_check_with_400(body: bytes) -> None:
    with pytest.raises(RequestError) as caught:
        check_npz_start(body)
    assert caught.value.status_code == 400
    assert caught.value.message == (
        "body: not a valid .npz archive (it does not begin as a zip archive)"
    )


def test_an_archive_after_other_bytes_is_400_as_np_load_would_refuse_it() -> None:
    body = b"junk" + _saved(np.savez, logits=np.zeros((2, 3)), labels=np.zeros(2))
    with pytest.raises(RequestError) as caught:
        load_npz(body, ("logits", "labels"), (), 10**6)
    assert caught.value.status_code == 400
    assert caught.value.message == (
        "body: not a valid .npz archive (it does not begin as a zip archive)"
    )
