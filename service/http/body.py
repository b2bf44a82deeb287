"""Request bodies: read them under a byte limit and undo their Content-Encoding safely.

Both steps bound memory by the limit, not by what the client claims or sends: an over-long
body is refused as soon as it passes the limit, and a compressed body is inflated with
``max_length`` so that a small "zip bomb" can never allocate more than about ``limit`` bytes.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from focal_eval.service.core.errors import RequestError, bad_request, cut, show
from focal_eval.service.http.buffers import BodyBuffers
from focal_eval.service.http.sink import longer_than_declared, receive_into, short_of_declared

if TYPE_CHECKING:  # focal evaluate imports this module's helpers without the web stack
    from starlette.requests import Request

__all__ = [
    "START_BYTES",
    "Body",
    "StartCheck",
    "content_length",
    "count_byte",
    "decode_content_encoding",
    "parse_length",
    "read_body",
    "refuse_long_json",
]

logger = logging.getLogger(__name__)

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS
_IDENTITY = frozenset({"", "identity"})
_GZIP = frozenset({"gzip", "x-gzip"})
_LENGTH_DIGITS = 30
OVERLONG = 10**_LENGTH_DIGITS  # a length header with more digits: longer than any body
_CHUNK = 1 << 20  # output bytes inflated at once
START_BYTES = 8  # what a check_start sees of a decoded body, at least (unless it is shorter)
_PIECE = 1 << 16  # input bytes fed at once

Charge = Callable[[int], None]
Body = bytes | bytearray | memoryview
StartCheck = Callable[[Body], None]  # raises for a decoded body that cannot be right


async def read_body(
    request: Request,
    limit: int,
    charge: Charge,
    declared: int | None = None,
    buffers: BodyBuffers | None = None,
) -> bytearray | memoryview:
    """Read the whole request body, refusing it once it exceeds ``limit`` bytes.

    A declared Content-Length over the limit is refused before anything is read. The body is
    received into one buffer, each chunk passed to ``charge`` first: memory follows what the
    client has sent, never what it declared, so a client that declares a large body and
    stalls holds nothing. The buffer is one of ``buffers`` when they take a body of the
    declared length (a view of exactly that length, whose pages are mapped as they are
    written), else a ``bytearray`` that grows as bytes arrive.

    Args:
        request: The incoming request; its stream must not have been consumed yet.
        limit: The largest body accepted, in bytes.
        charge: Called with each chunk's size before it is kept (it may refuse with 503).
        declared: The Content-Length already parsed by :func:`content_length`, if the
            caller has; else it is parsed here.
        buffers: Where large declared bodies are received (give the body back to them
            when done with it), if anywhere.

    Returns:
        The body as received (still Content-Encoded, if it was).

    Raises:
        RequestError: 400 for a Content-Length that is not a non-negative integer or that the
            body does not match, 413 for a body (declared or received) longer than ``limit``.
        starlette.requests.ClientDisconnect: the client went away before the end of the body.
    """
    if declared is None:
        declared = content_length(request.headers.get("content-length"), limit)
    if buffers is not None and declared is not None and buffers.wanted(declared):
        try:
            body = buffers.take(declared)
        except OSError:  # no address space for it now (strict overcommit): grow one instead
            logger.warning(
                "no buffer of %d bytes for a body; receiving it piece by piece", declared
            )
        else:
            return await _receive_into(request, body, charge, buffers)
    allowed = limit if declared is None else declared
    buffer = bytearray()
    try:
        async with contextlib.aclosing(request.stream()) as stream:
            async for chunk in stream:
                if not chunk:
                    continue
                if len(buffer) + len(chunk) > allowed:
                    received = len(buffer) + len(chunk)
                    if declared is not None:
                        raise longer_than_declared(declared)
                    raise RequestError(
                        413, f"body: exceeds the limit of {limit} bytes (stopped after {received})"
                    )
                charge(len(chunk))
                buffer += chunk
    except BaseException:
        # the exception's traceback keeps this frame alive until the cycle collector runs:
        # free the partial body now, not then
        buffer.clear()
        raise
    if declared is not None and len(buffer) != declared:
        raise short_of_declared(len(buffer), declared)
    return buffer


async def _receive_into(
    request: Request, body: memoryview, charge: Charge, buffers: BodyBuffers
) -> memoryview:
    """:func:`receive_into` ``body``, which goes back to ``buffers`` if the body fails."""
    try:
        return await receive_into(request, body, charge)
    except BaseException:
        buffers.give_back(body)
        raise


def count_byte(body: Body, byte: bytes, end: int | None = None) -> int:
    """How many times the one-byte ``byte`` occurs in ``body[:end]``.

    bytes and bytearray are counted in place; a memoryview (a body received into a buffer)
    is copied ``_PIECE`` bytes at a time, as it has no ``count``.

    Example:
        >>> count_byte(memoryview(b"[[1, 2], [3]]"), b"[", end=8)
        2
    """
    stop = len(body) if end is None else min(end, len(body))
    if not isinstance(body, memoryview):
        return body.count(byte, 0, stop)
    pieces = range(0, stop, _PIECE)
    return sum(bytes(body[start : min(start + _PIECE, stop)]).count(byte) for start in pieces)


def refuse_long_json(
    length: int, limit: int, hint: str = "send large batches as .npz or v2 binary"
) -> None:
    """413 for JSON text over ``limit`` bytes (parsing it would stall the server's threads).

    Raises:
        RequestError: 413 naming the setting and what to do instead (``hint``).
    """
    if length > limit:
        raise RequestError(
            413,
            f"body: {length} bytes of JSON is over the limit of {limit} (FOCAL_MAX_JSON_BYTES);"
            f" {hint}",
        )


def parse_length(name: str, value: str | None) -> int | None:
    """A length header's byte count (``Content-Length``, ``Inference-Header-Content-Length``).

    None when the header is absent. Digits beyond any real length (int() refuses over 4300)
    read as ``OVERLONG``.

    Raises:
        RequestError: 400 naming ``name`` when the value is not a non-negative integer.
    """
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        raise bad_request(f"{name}: expected a non-negative integer, got {show(value)}")
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) < _LENGTH_DIGITS else OVERLONG


def content_length(value: str | None, limit: int) -> int | None:
    """The declared length; refuse one malformed (400) or over ``limit`` (413)."""
    declared = parse_length("Content-Length", value)
    if declared is not None and declared > limit:
        digits = str(declared) if declared < OVERLONG else (value or "").strip().lstrip("0")
        raise RequestError(413, f"body: {cut(digits, 23)} bytes exceeds the limit of {limit} bytes")
    return declared


def decode_content_encoding(
    body: Body,
    encoding: str | None,
    limit: int,
    charge: Charge = lambda n: None,
    check_start: StartCheck | None = None,
) -> Body:
    """Undo the Content-Encoding of a request body, never producing more than ``limit`` bytes.

    Accepted codings (case-insensitive): ``identity`` (or none), ``gzip`` / ``x-gzip``, and
    ``deflate``, which is zlib-wrapped per HTTP (what ``zlib.compress`` writes) but is also
    accepted raw (headerless), as some clients send it. A list such as ``"gzip, deflate"``
    names the codings in the order they were applied, so they are undone in reverse; every
    step is bounded by ``limit``. Concatenated gzip members are decoded as one stream.

    Args:
        body: The body as received.
        encoding: The Content-Encoding header, or None when absent.
        limit: The largest decoded body accepted, in bytes.
        charge: Called with the size of each piece of output before it is kept.
        check_start: Called with the decoded body's first bytes (at least
            ``START_BYTES``, or all of a shorter body) as soon as they are inflated, so that a
            body that cannot be what its media type says is refused (it raises) before the
            rest is inflated. Not called when there is nothing to undo.

    Returns:
        The decoded body (``body`` itself when there is nothing to undo).

    Raises:
        RequestError: 415 for an unsupported coding, 400 for corrupt or truncated compressed
            data, 413 when the decoded body would exceed ``limit``.

    Example:
        >>> import gzip
        >>> decode_content_encoding(gzip.compress(b"focal"), "gzip", limit=100)
        bytearray(b'focal')
    """
    codings = _parse_codings(encoding)
    for index, coding in enumerate(reversed(codings)):
        last = index == len(codings) - 1  # the step whose output is the body itself
        body = _decode_one(body, coding, limit, charge, check_start if last else None)
    return body


def _parse_codings(encoding: str | None) -> list[str]:
    """Split a Content-Encoding header into its codings, lower-cased, identities dropped."""
    if encoding is None:
        return []
    codings = [token.strip().lower() for token in encoding.split(",")]
    return [coding for coding in codings if coding not in _IDENTITY]


def _decode_one(
    body: Body, coding: str, limit: int, charge: Charge, check_start: StartCheck | None
) -> bytearray:
    """Undo a single coding, or raise 415 for one that is not supported."""
    if coding in _GZIP:
        return _inflate(body, _GZIP_WBITS, "gzip", limit, charge, check_start)
    if coding == "deflate":
        return _inflate_deflate(body, limit, charge, check_start)
    raise RequestError(
        415, f"Content-Encoding: {show(coding)} is not supported (use gzip or deflate)"
    )


def _inflate_deflate(
    body: Body, limit: int, charge: Charge, check_start: StartCheck | None
) -> bytearray:
    """Inflate HTTP deflate: zlib-wrapped when it starts with a zlib header, else raw."""
    if _has_zlib_header(body):
        return _inflate(body, _ZLIB_WBITS, "deflate", limit, charge, check_start)
    logger.debug("deflate body has no zlib header; inflating it as raw deflate")
    return _inflate(body, _RAW_DEFLATE_WBITS, "deflate", limit, charge, check_start)


def _has_zlib_header(body: Body) -> bool:
    """Whether ``body`` starts with a zlib (RFC 1950) header.

    Raw deflate from a real encoder never does: its first byte has a block type in bits 1-2
    (fixed or dynamic Huffman) or zero padding (stored), so its low nibble is never 8.
    """
    if len(body) < 2:
        return False
    method, window = body[0] & 0x0F, body[0] >> 4
    return method == 8 and window <= 7 and ((body[0] << 8) | body[1]) % 31 == 0


def _inflate(
    body: Body,
    wbits: int,
    name: str,
    limit: int,
    charge: Charge,
    check_start: StartCheck | None = None,
) -> bytearray:
    """Inflate one complete stream (or several gzip members) into at most ``limit`` bytes.

    The input is fed ``_PIECE`` bytes at a time (zlib copies whatever input it has not yet
    consumed, so a whole body fed at once would be copied again and again). Output is
    produced in chunks of at most ``_CHUNK`` bytes (and never past ``limit + 1``), each
    charged and appended to one growing buffer, so a bomb is stopped as soon as it passes the
    limit, holding about ``limit`` bytes, and a legitimate body costs its decoded size (plus
    the buffer's growth slack), never twice that. ``check_start`` sees the first
    ``START_BYTES`` of output (or all of a shorter one) once they are there.
    """
    output = bytearray()
    view = memoryview(body)
    start = 0
    try:
        while True:
            inflater = zlib.decompressobj(wbits)
            position = start
            while not inflater.eof:
                if inflater.unconsumed_tail:
                    data: bytes | memoryview = inflater.unconsumed_tail
                elif position < len(view):
                    data = view[position : position + _PIECE]
                    position += len(data)
                else:
                    raise bad_request(f"body: invalid {name} data (truncated stream)")
                part = _inflate_chunk(inflater, data, name, min(_CHUNK, limit + 1 - len(output)))
                if len(output) + len(part) > limit:
                    raise RequestError(
                        413, f"body: decoded size exceeds the limit of {limit} bytes"
                    )
                charge(len(part))
                output += part
                if check_start is not None and len(output) >= START_BYTES:
                    check_start(output)
                    check_start = None
            start = position - len(inflater.unused_data)
            if start == len(view):
                if check_start is not None:
                    check_start(output)
                return output
            if wbits != _GZIP_WBITS:
                raise bad_request(f"body: invalid {name} data (trailing bytes after the stream)")
    except BaseException:
        output.clear()  # a traceback may keep this frame alive for a while: free it now
        raise
    finally:
        view.release()


def _inflate_chunk(
    inflater: zlib._Decompress, data: bytes | memoryview, name: str, most: int
) -> bytes:
    """Inflate at most ``most`` bytes of ``data``, mapping zlib errors to 400."""
    try:
        return inflater.decompress(data, most)
    except zlib.error as error:
        raise bad_request(f"body: invalid {name} data ({error})") from None
