"""Request bodies: read them under a byte limit and undo their Content-Encoding safely.

Both steps bound memory by the limit, not by what the client claims or sends: an over-long
body is refused as soon as it passes the limit, and a compressed body is inflated with
``max_length`` so that a small "zip bomb" can never allocate more than about ``limit`` bytes.
"""

from __future__ import annotations

import contextlib
import logging
import zlib

from starlette.requests import Request

from service.errors import RequestError

__all__ = ["decode_content_encoding", "read_body"]

logger = logging.getLogger(__name__)

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS
_IDENTITY = frozenset({"", "identity"})
_GZIP = frozenset({"gzip", "x-gzip"})
_CHUNK = 1 << 20


async def read_body(request: Request, limit: int) -> bytes | bytearray:
    """Read the whole request body, refusing it once it exceeds ``limit`` bytes.

    A declared Content-Length over the limit is refused before anything is read; under it,
    the body is received into one buffer of that size (no second copy to join chunks).
    Without one, the stream is read chunk by chunk and refused as soon as the running count
    passes the limit, so at most about ``limit`` bytes (plus one chunk) are ever held.

    Args:
        request: The incoming request; its stream must not have been consumed yet.
        limit: The largest body accepted, in bytes.

    Returns:
        The body as received (still Content-Encoded, if it was).

    Raises:
        RequestError: 400 for a Content-Length that is not a non-negative integer or that the
            body does not match, 413 for a body (declared or received) longer than ``limit``.
    """
    declared = _check_content_length(request.headers.get("content-length"), limit)
    if declared is not None:
        return await _read_declared(request, declared)
    chunks: list[bytes] = []
    received = 0
    async with contextlib.aclosing(request.stream()) as stream:
        async for chunk in stream:
            received += len(chunk)
            if received > limit:
                raise RequestError(
                    413, f"body: exceeds the limit of {limit} bytes (stopped after {received})"
                )
            chunks.append(chunk)
    return b"".join(chunks)


async def _read_declared(request: Request, length: int) -> bytearray:
    """Receive a body of a declared ``length`` into one preallocated buffer."""
    buffer = bytearray(length)
    filled = 0
    with memoryview(buffer) as view:
        async with contextlib.aclosing(request.stream()) as stream:
            async for chunk in stream:
                end = filled + len(chunk)
                if end > length:
                    raise RequestError(400, f"body: longer than its Content-Length ({length})")
                view[filled:end] = chunk
                filled = end
    if filled != length:
        raise RequestError(400, f"body: {filled} bytes, short of its Content-Length ({length})")
    return buffer


def _check_content_length(value: str | None, limit: int) -> int | None:
    """The declared length; refuse one malformed (400) or over ``limit`` (413)."""
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        raise RequestError(400, f"Content-Length: expected a non-negative integer, got {value!r}")
    digits = text.lstrip("0") or "0"
    # Compare lengths first: int() refuses more than 4300 digits, and no body is that long.
    if len(digits) > len(str(limit)) or int(digits) > limit:
        shown = digits if len(digits) <= 20 else f"{digits[:20]}..."
        raise RequestError(413, f"body: {shown} bytes exceeds the limit of {limit} bytes")
    return int(digits)


def decode_content_encoding(
    body: bytes | bytearray, encoding: str | None, limit: int
) -> bytes | bytearray:
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

    Returns:
        The decoded body (``body`` itself when there is nothing to undo).

    Raises:
        RequestError: 415 for an unsupported coding, 400 for corrupt or truncated compressed
            data, 413 when the decoded body would exceed ``limit``.

    Example:
        >>> import gzip
        >>> decode_content_encoding(gzip.compress(b"focal"), "gzip", limit=100)
        b'focal'
    """
    for coding in reversed(_parse_codings(encoding)):
        body = _decode_one(body, coding, limit)
    return body


def _parse_codings(encoding: str | None) -> list[str]:
    """Split a Content-Encoding header into its codings, lower-cased, identities dropped."""
    if encoding is None:
        return []
    codings = [token.strip().lower() for token in encoding.split(",")]
    return [coding for coding in codings if coding not in _IDENTITY]


def _decode_one(body: bytes | bytearray, coding: str, limit: int) -> bytes:
    """Undo a single coding, or raise 415 for one that is not supported."""
    if coding in _GZIP:
        return _inflate(body, _GZIP_WBITS, "gzip", limit)
    if coding == "deflate":
        return _inflate_deflate(body, limit)
    raise RequestError(415, f"Content-Encoding: {coding!r} is not supported (use gzip or deflate)")


def _inflate_deflate(body: bytes | bytearray, limit: int) -> bytes:
    """Inflate HTTP deflate: zlib-wrapped when it starts with a zlib header, else raw."""
    if _has_zlib_header(body):
        return _inflate(body, _ZLIB_WBITS, "deflate", limit)
    logger.debug("deflate body has no zlib header; inflating it as raw deflate")
    return _inflate(body, _RAW_DEFLATE_WBITS, "deflate", limit)


def _has_zlib_header(body: bytes | bytearray) -> bool:
    """Whether ``body`` starts with a zlib (RFC 1950) header.

    Raw deflate from a real encoder never does: its first byte has a block type in bits 1-2
    (fixed or dynamic Huffman) or zero padding (stored), so its low nibble is never 8.
    """
    if len(body) < 2:
        return False
    method, window = body[0] & 0x0F, body[0] >> 4
    return method == 8 and window <= 7 and ((body[0] << 8) | body[1]) % 31 == 0


def _inflate(body: bytes | bytearray, wbits: int, name: str, limit: int) -> bytes:
    """Inflate one complete stream (or several gzip members) into at most ``limit`` bytes.

    Output is produced in chunks of at most ``_CHUNK`` bytes, so a bomb is stopped once it
    passes the limit, holding about ``limit`` bytes; a legitimate body costs its size twice
    for a moment (the chunks, then their join).
    """
    parts: list[bytes] = []
    produced = 0
    data = body
    while True:
        inflater = zlib.decompressobj(wbits)
        while not inflater.eof:
            part = _inflate_chunk(inflater, data, name)
            if not part and len(inflater.unconsumed_tail) == len(data):
                raise RequestError(400, f"body: invalid {name} data (truncated stream)")
            produced += len(part)
            if produced > limit:
                raise RequestError(413, f"body: decoded size exceeds the limit of {limit} bytes")
            parts.append(part)
            data = inflater.unconsumed_tail
        data = inflater.unused_data
        if not data:
            return b"".join(parts)
        if wbits != _GZIP_WBITS:
            raise RequestError(400, f"body: invalid {name} data (trailing bytes after the stream)")


def _inflate_chunk(inflater: zlib._Decompress, data: bytes | bytearray, name: str) -> bytes:
    """Inflate at most ``_CHUNK`` bytes of ``data``, mapping zlib errors to 400."""
    try:
        return inflater.decompress(data, _CHUNK)
    except zlib.error as error:
        raise RequestError(400, f"body: invalid {name} data ({error})") from None
