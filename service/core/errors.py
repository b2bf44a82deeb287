"""Expected request failures: an HTTP status and a message that names the field at fault."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

logger = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's "client closed request": recorded, never sent, never a 5xx


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


def install_error_handlers(app: FastAPI) -> None:
    """Every error answered as ``{"error": message}``; unexpected ones as a plain 500.

    Expected failures keep their status and message; a client that hung up mid-body is
    recorded as 499 (there is no one left to answer) and logged without a traceback; anything
    else is logged with its traceback and answered ``500 Internal server error``, so internals
    never leak.
    """

    async def request_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestError)
        return JSONResponse({"error": error.message}, error.status_code, headers=error.headers)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        return JSONResponse({"error": str(error.detail)}, error.status_code, headers=error.headers)

    async def validation_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return JSONResponse({"error": f"{where}: {first['msg']}"}, 422)

    async def client_gone(request: Request, error: Exception) -> Response:
        logger.info("client hung up during %s %s", request.method, request.url.path)
        return Response(status_code=CLIENT_CLOSED)

    async def unexpected(request: Request, error: Exception) -> Response:
        logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
        return JSONResponse({"error": "Internal server error"}, 500)

    app.add_exception_handler(RequestError, request_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(Exception, unexpected)
