"""Optional bearer-token auth (``FOCAL_AUTH_TOKEN``): a dependency for protected routes.

The dependencies are coroutines although they never wait: FastAPI runs a plain function
dependency in a worker thread, a hop that cost more than the check itself.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from focal_eval.service.core.errors import RequestError
from focal_eval.service.core.runtime import Runtime, get_runtime


async def require_token(
    request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]
) -> None:
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


async def require_token_for_monitoring(
    request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]
) -> None:
    """:func:`require_token` for /metrics and /summary when ``FOCAL_METRICS_AUTH`` is set."""
    if runtime.settings.metrics_auth:
        await require_token(request, runtime)
