"""Optional bearer-token auth (``FOCAL_AUTH_TOKEN``): a dependency for protected routes."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from focal_eval.service.core.errors import RequestError
from focal_eval.service.core.runtime import Runtime, get_runtime


def require_token(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> None:
    """401 unless the request carries ``Authorization: Bearer <FOCAL_AUTH_TOKEN>``.

    No token configured: every request passes. Compared in constant time.
    """
    token = runtime.settings.auth_token
    if token is None:
        return
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        credentials.strip().encode(), expected
    ):
        raise RequestError(
            401,
            "Authorization: missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_token_for_monitoring(
    request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]
) -> None:
    """:func:`require_token` for /metrics and /summary when ``FOCAL_METRICS_AUTH`` is set."""
    if runtime.settings.metrics_auth:
        require_token(request, runtime)
