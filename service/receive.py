"""Receiving a request body: within a time limit, a size limit, and a content encoding."""

from __future__ import annotations

import anyio
from fastapi import Request

from service.body import decode_content_encoding, read_body
from service.errors import RequestError
from service.settings import Settings


async def receive(request: Request, settings: Settings) -> bytes | bytearray:
    """The decoded body, at most ``max_body_bytes`` before and after decompression.

    Raises:
        RequestError: 408 not received within ``body_timeout_s``; 413 too large; 400 / 415
            bad or unsupported ``Content-Encoding``.
    """
    with anyio.move_on_after(settings.body_timeout_s) as scope:
        body = await read_body(request, settings.max_body_bytes)
    if scope.cancelled_caught:
        raise RequestError(408, f"body: not received within {settings.body_timeout_s:g} s")
    return decode_content_encoding(
        body, request.headers.get("content-encoding"), settings.max_body_bytes
    )
