"""Expected request failures: an HTTP status and a message that names the field at fault."""

from __future__ import annotations


class RequestError(Exception):
    """A client error, answered as ``status_code`` with the JSON body ``{"error": message}``.

    Messages start with the field at fault, then say what was wrong and what was expected,
    e.g. ``"labels: expected integers, but got float64"``. Statuses: 400 malformed body
    (syntax, encoding, truncated data), 413 body over the limit, 415 unsupported content type
    or encoding, 422 well-formed but invalid values (shape, dtype, label range, non-finite),
    503 saturated or not ready.
    """

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
