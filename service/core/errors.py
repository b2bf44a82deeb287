"""Expected request failures: an HTTP status and a message that names the field at fault.

One vocabulary for every protocol: :func:`bad_request` (400, a malformed body),
:func:`invalid` (422, a well-formed value out of its domain), :class:`RequestError` for the
other statuses; client values appear in messages through :func:`show` (their JSON, at most
60 characters), client names and library messages through :func:`cut`. How they are
answered over HTTP: :mod:`focal_eval.service.core.error_handlers`.
"""

from __future__ import annotations

import orjson

CLIENT_CLOSED = 499  # nginx's "client closed request": recorded, never sent, never a 5xx
SHOWN = 60  # characters of a client value or name in a message


class RequestError(Exception):
    """A client error, answered as ``status_code`` with the JSON body ``{"error": message}``.

    Messages start with the field at fault, then say what was wrong and what was expected,
    e.g. ``"labels: expected integers, but got float64"``. Statuses: 400 malformed body
    (syntax, encoding, truncated data), 413 body over the limit, 415 unsupported content type
    or encoding, 401 missing bearer token, 422 well-formed but invalid values (shape, dtype,
    label range, non-finite), 503 saturated or not ready (with ``Retry-After``).
    """

    def __init__(
        self, status_code: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers


def bad_request(message: str) -> RequestError:
    """A 400 for a malformed body (syntax, encoding, protocol, truncated data)."""
    return RequestError(400, message)


def invalid(message: str) -> RequestError:
    """A 422 for a well-formed request with a value out of its domain."""
    return RequestError(422, message)


def show(value: object) -> str:
    """A client value for a message: its JSON (Python's repr if it has none), cut to fit.

    Example:
        >>> show("2"), show(True), show([1.5, None])
        ('"2"', 'true', '[1.5,null]')
    """
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # not from JSON (e.g. an integer over 64 bits)
        text = repr(value)
    return cut(text)


def cut(text: str, limit: int = SHOWN) -> str:
    """``text`` (a client-chosen name, a library's message) cut to ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
