"""How errors are answered over HTTP: ``{"error": message}``, the same for every route.

Kept apart from :mod:`focal_eval.service.core.errors` (the vocabulary), which code without
the web stack (``focal evaluate``) imports too.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from focal_eval.service.core.errors import CLIENT_CLOSED, RequestError

logger = logging.getLogger(__name__)


class ErrorResponse(BaseModel):
    """Every error: a message that names the field at fault."""

    error: str


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
