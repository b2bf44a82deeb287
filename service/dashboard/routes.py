"""``GET /dashboard`` and its assets, all served by the app (the sidecar may be offline).

The page is static: its script reads ``/summary`` every few seconds and draws the figures
with Chart.js, a bundle the build copies from its npm package (setup.py). Where the bundle is
missing from an install, the page still shows every number, without charts, and says why.
Like ``/summary``, everything here needs the bearer token when ``FOCAL_METRICS_AUTH`` is set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, HTMLResponse

from focal_eval.service.core.auth import require_token_for_monitoring
from focal_eval.service.core.error_handlers import ErrorResponse
from focal_eval.service.core.errors import RequestError

ASSETS = Path(__file__).parent / "assets"
MEDIA_TYPES = {  # every asset the page may ask for
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "chart.umd.min.js": "text/javascript",
    "chart.js.LICENSE.md": "text/markdown",
}
# the page and its script load nothing from anywhere but this server
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": POLICY, "Cache-Control": "no-cache"}
PAGE = (ASSETS / "dashboard.html").read_text()

router = APIRouter(
    prefix="/dashboard",
    tags=["dashboard"],
    dependencies=[Depends(require_token_for_monitoring)],
    responses={401: {"model": ErrorResponse}},
)


@router.get("", response_class=HTMLResponse)
async def page() -> HTMLResponse:
    """The dashboard: window and lifetime metrics per source, refreshing itself."""
    return HTMLResponse(PAGE, headers=HEADERS)


@router.get(
    "/assets/{asset}",
    response_class=FileResponse,
    responses={404: {"model": ErrorResponse}},
)
async def asset_file(asset: str) -> Any:
    """One of the page's scripts, its style sheet, or Chart.js (and its licence)."""
    path = ASSETS / asset
    if asset not in MEDIA_TYPES or not path.is_file():
        raise RequestError(404, f"asset: no dashboard asset named {asset!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[asset], headers=HEADERS)
