"""``.npz`` request bodies: checked from the zip directory and .npy headers before loading.

Nothing is decompressed or allocated until the archive has passed every cheap check: total
declared size (zip-bomb safe, since zipfile never yields more than a member's declared size),
member names, compression method, and each member's .npy header (dtype and data size).
Stored members (``np.savez``) are then read without a copy, as views of the body.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable
from typing import IO, Any

import numpy as np
import numpy.typing as npt
from numpy.lib import format as npy_format

from focal_eval.service.core.errors import RequestError, bad_request, cut, invalid, show
from focal_eval.service.http.body import Body

__all__ = ["check_npz_start", "load_npz"]

logger = logging.getLogger(__name__)

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_STARTS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, an empty archive's end
_NPY_SUFFIX = ".npy"
_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
# What a damaged archive or member can raise from zipfile and zlib while being read.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError)
_SHOWN_NAMES = 5
_MAX_DIMS = 64  # numpy's limit on dimensions
_MAX_BYTES = 2**63  # numpy's limit on an array's size in bytes
_REASON_CHARS = 200


def load_npz(
    body: Body,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    limit: int,
    reserve: Callable[[int], None] = lambda nbytes: None,
) -> dict[str, npt.NDArray[Any]]:
    """Load the arrays of an ``.npz`` body (``np.savez`` or ``np.savez_compressed``).

    Checks run in this order, and all of them before any array data is read: the body
    begins as ``np.load`` requires (:func:`check_npz_start`, 400), the archive opens (400),
    its members' declared sizes sum to at most ``limit`` (413), every name is accepted and
    every required name present (422), every member is stored or deflated (415), and every
    member has a valid .npy header (400), no object dtype (422) and room for the data its
    header declares (400). Pickles are never loaded. Stored members (``np.savez``) become
    views of ``body`` after their CRC is checked, without a copy; deflated ones
    (``np.savez_compressed``) are inflated straight into fresh arrays of their declared size,
    which is passed to ``reserve`` first.

    Args:
        body: The (already Content-Decoded) request body.
        required: Array names that must be present.
        optional: Array names that may be present.
        limit: The largest total uncompressed size of the members, in bytes.
        reserve: Called with the bytes the deflated members will take, before reading them
            (it may refuse, raising).

    Returns:
        The arrays by name (without the ``.npy`` suffix), with the dtypes they were saved in.

    Raises:
        RequestError: 400, 413, 415 or 422 as above, with a message naming the body or the
            array at fault.

    Example:
        >>> buffer = io.BytesIO()
        >>> np.savez(buffer, logits=np.zeros((2, 3)), labels=np.array([0, 2]))
        >>> arrays = load_npz(buffer.getvalue(), ("logits", "labels"), ("weights",), 10**6)
        >>> sorted(arrays), arrays["logits"].shape
        (['labels', 'logits'], (2, 3))
    """
    if bytes(body[: len(_NPY_MAGIC)]) == _NPY_MAGIC:
        raise bad_request(
            "body: got a single .npy array; send an .npz archive with arrays named "
            + " and ".join(required),
        )
    check_npz_start(body)
    with _open_archive(body) as archive:
        members = _members(archive)
        _check_size(members, limit)
        _check_names(members, required, optional)
        _check_methods(members)
        headers = {name: _check_header(archive, name, info) for name, info in members.items()}
        # structured dtypes keep numpy's own reader: it decodes v3 (utf-8) field names
        viewed = {
            name
            for name, info in members.items()
            if info.compress_type == zipfile.ZIP_STORED and headers[name][2].names is None
        }
        reserve(sum(info.file_size for name, info in members.items() if name not in viewed))
        return {
            name: _stored_view(body, name, info, headers[name])
            if name in viewed
            else _read_member(archive, name, info)
            for name, info in members.items()
        }


def check_npz_start(body: Body) -> None:
    """Refuse (400) a decoded body whose first bytes show it is no ``.npz`` archive.

    ``np.load`` reads a body as an archive only when it begins with a zip local file header
    (or an empty archive's end record); a single ``.npy`` array passes, for :func:`load_npz`
    to say what to send instead. Checked while a compressed body inflates, so that a
    ``Content-Encoding`` bomb of anything else is refused at its first megabyte, not its last.
    """
    start = bytes(body[: len(_NPY_MAGIC)])
    if not start.startswith(_ZIP_STARTS) and start != _NPY_MAGIC:
        raise _not_an_archive("it does not begin as a zip archive")


def _not_an_archive(reason: object) -> RequestError:
    """The 400 for a body that is not a readable .npz archive; ``reason`` a library's error."""
    return bad_request(f"body: not a valid .npz archive ({_reason(reason)})")


def _reason(reason: object) -> str:
    """A library's error text (it may quote client data), cut to ``_REASON_CHARS``."""
    return cut(str(reason) or type(reason).__name__, _REASON_CHARS)


class _ViewReader(io.RawIOBase):
    """A read-only, seekable file over a buffer, sharing it.

    ``io.BytesIO`` would copy a ``bytearray`` body (and hold the GIL for the copy).
    """

    def __init__(self, data: Body) -> None:
        super().__init__()
        self._view = memoryview(data)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}
        self._position = max(0, start[whence] + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        chunk = self._view[self._position : self._position + len(buffer)]
        memoryview(buffer).cast("B")[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)

    def close(self) -> None:
        self._view.release()
        super().close()


def _open_archive(body: Body) -> zipfile.ZipFile:
    """Open ``body`` as a zip archive without copying it."""
    try:
        return zipfile.ZipFile(io.BufferedReader(_ViewReader(body)))
    except _ZIP_ERRORS as error:
        raise _not_an_archive(error) from None


def _members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Map array names (member names less ``.npy``) to members; reject duplicates."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = info.filename.removesuffix(_NPY_SUFFIX)
        if name in members:
            raise _not_an_archive(f"array {show(name)} appears more than once")
        if info.flag_bits & 0x1:
            raise _not_an_archive(f"member {show(info.filename)} is encrypted")
        members[name] = info
    return members


def _check_methods(members: dict[str, zipfile.ZipInfo]) -> None:
    """Accept only what numpy writes: stored and deflated members (others can zip-bomb)."""
    for name, info in members.items():
        if info.compress_type not in _METHODS:
            raise RequestError(
                415,
                f"{name}: zip compression method {info.compress_type} is not supported "
                "(use np.savez or np.savez_compressed)",
            )


def _check_size(members: dict[str, zipfile.ZipInfo], limit: int) -> None:
    """Refuse archives whose members declare more than ``limit`` bytes in all."""
    declared = sum(info.file_size for info in members.values())
    if declared > limit:
        raise RequestError(
            413, f"body: the .npz members hold {declared} bytes, over the limit of {limit} bytes"
        )


def _check_names(
    members: Iterable[str], required: tuple[str, ...], optional: tuple[str, ...]
) -> None:
    """Refuse unknown array names first, then missing required ones."""
    names = set(members)
    accepted = (*required, *optional)
    unknown = sorted(names.difference(accepted))
    if unknown:
        noun = "array" if len(unknown) == 1 else "arrays"
        raise invalid(
            f"{_quoted(unknown)}: unexpected {noun} in the .npz body "
            f"(accepted: {', '.join(accepted)})",
        )
    missing = [name for name in required if name not in names]
    if missing:
        raise invalid(f"{', '.join(missing)}: missing from the .npz body")


def _quoted(names: list[str]) -> str:
    """Client-chosen names, quoted and shortened so that a message stays short and printable."""
    shown = ", ".join(show(name) for name in names[:_SHOWN_NAMES])
    hidden = len(names) - _SHOWN_NAMES
    return f"{shown} and {hidden} more" if hidden > 0 else shown


_Header = tuple[tuple[int, ...], bool, np.dtype[Any], int]  # shape, fortran order, dtype, size


def _check_header(archive: zipfile.ZipFile, name: str, info: zipfile.ZipInfo) -> _Header:
    """Read one member's .npy header; refuse object dtypes and data longer than the member."""
    try:
        with archive.open(info) as member:
            shape, fortran_order, dtype = _read_header(member, name)
            header_size = member.tell()
    except _ZIP_ERRORS as error:
        raise _not_an_archive(f"{info.filename}: {_reason(error)}") from None
    if dtype.hasobject:
        raise invalid(f"{name}: object arrays are not accepted")
    data_size = math.prod(shape) * dtype.itemsize
    if header_size + data_size > info.file_size:
        raise bad_request(
            f"{name}: truncated .npy member (its header declares {data_size} bytes of data, "
            f"the member holds {info.file_size - header_size})",
        )
    return shape, fortran_order, dtype, header_size


def _read_header(member: IO[bytes], name: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Parse a .npy header (version 1, 2 or 3) into shape and dtype, or raise 400.

    Versions 2 and 3 share a layout and differ only in how the header text is decoded
    (latin-1 versus utf-8), which can only change structured field names, never the shape,
    item size or presence of objects checked here; ``read_array`` decodes it properly later.
    """
    try:
        major, _ = npy_format.read_magic(member)
        if major == 1:
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(member)
        elif major in (2, 3):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(member)
        else:
            raise ValueError(f"unsupported .npy format version {major}")
    except ValueError as error:
        raise bad_request(f"{name}: not a valid .npy array ({_reason(error)})") from None
    if any(size < 0 for size in shape):
        raise bad_request(f"{name}: not a valid .npy array (negative shape {shape})")
    # numpy refuses a shape whose non-zero sizes multiply past its range, even beside a 0
    nonzero = math.prod(size for size in shape if size) * max(dtype.itemsize, 1)
    if len(shape) > _MAX_DIMS or nonzero >= _MAX_BYTES:
        raise bad_request(
            f"{name}: not a valid .npy array (shape {_reason(shape)} is beyond numpy's range)"
        )
    return shape, fortran_order, dtype


def _read_member(archive: zipfile.ZipFile, name: str, info: zipfile.ZipInfo) -> npt.NDArray[Any]:
    """Read one checked member into a fresh ndarray."""
    try:
        with archive.open(info) as member:
            array: npt.NDArray[Any] = npy_format.read_array(member, allow_pickle=False)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as error:
        raise _not_an_archive(f"{info.filename}: {_reason(error)}") from None
    except ValueError as error:
        raise bad_request(f"{name}: truncated .npy member ({_reason(error)})") from None
    logger.debug("loaded %s: %s %s", name, array.dtype, array.shape)
    return array


def _stored_view(body: Body, name: str, info: zipfile.ZipInfo, header: _Header) -> npt.NDArray[Any]:
    """A stored member's array as a view of ``body``, after checking its CRC-32.

    The member's data starts after its local file header: 30 bytes, then the file name and
    the extra field, whose lengths the local header gives (they may differ from the central
    directory's).
    """
    shape, fortran_order, dtype, header_size = header
    start = info.header_offset
    if body[start : start + 4] != b"PK\x03\x04":
        raise _not_an_archive(f"{info.filename}: no local file header at offset {start}")
    name_length, extra_length = struct.unpack_from("<HH", body, start + 26)
    begin = start + 30 + name_length + extra_length
    data = memoryview(body)[begin : begin + info.compress_size]
    if len(data) != info.compress_size or zlib.crc32(data) != info.CRC:
        raise _not_an_archive(f"{info.filename}: Bad CRC-32 for file {info.filename!r}")
    count = math.prod(shape)
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header_size)
    if fortran_order:
        return array.reshape(shape[::-1]).transpose()
    logger.debug("viewed %s: %s %s", name, array.dtype, array.shape)
    return array.reshape(shape)
