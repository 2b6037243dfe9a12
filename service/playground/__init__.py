"""The web playground at `/`: a static page (static/) that tries the served models through the public API.

No build step and nothing loaded from elsewhere: the files below are served as they are, under a
Content-Security-Policy that lets the page reach only this server. The page calls `/models` and
`/predict` like any client, so the API keys guard what it can do; the page itself is public (the
middleware leaves `/` and `/playground/` open) and `MODELSERVE_PLAYGROUND=false` turns it off.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).parent / "static"
PREFIX = "/playground"
# Only this origin: scripts, styles, fetches; images and audio also from data: and blob: URLs the page
# makes itself (the drawing, the preprocessed 28x28, a recording). No inline script or style attribute.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate on every load (ETag/Last-Modified answer 304), so a new release is never half cached.
    "Cache-Control": "no-cache",
}


class _StaticFiles(StaticFiles):
    """Starlette's static files (ETag, 304, ranges) with the page's security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def register_playground(app: FastAPI) -> None:
    """GET / (the page) and GET /playground/<file> (its scripts and styles)."""

    @app.get("/", include_in_schema=False)
    async def playground() -> Response:
        return FileResponse(STATIC / "index.html", headers=HEADERS)

    app.mount(PREFIX, _StaticFiles(directory=STATIC), name="playground")
