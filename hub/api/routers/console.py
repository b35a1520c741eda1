"""Serves the console (/) and the grid worker's phone view (/m) with their static
files (/static/...), and carries the photo-attachment routes.

No build step: plain HTML, CSS and ES modules under ``hub/api/static``. The pages
themselves are public (they show a login form); every piece of data comes from the
authenticated API. A strict Content-Security-Policy keeps injected markup from
running script even if an incident title carried some.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, status
from fastapi.responses import FileResponse

from hub.api.files import file_inside
from hub.api.routers import attachments

STATIC = Path(__file__).resolve().parents[1] / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline';"
        " script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none';"
        " form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}

router = APIRouter()
# The app includes this router by name; photo uploads ride along with it.
router.include_router(attachments.router)


@router.get("/", include_in_schema=False)
def console_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)


@router.get("/m", include_in_schema=False)
def worker_page() -> FileResponse:
    return FileResponse(STATIC / "m.html", headers=SECURITY_HEADERS)


@router.get("/static/{path:path}", include_in_schema=False)
def static_file(path: str) -> FileResponse:
    f = file_inside(STATIC, path)
    if f is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    media = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
    if f.suffix == ".js":
        media = "text/javascript"  # ES modules must not be served as text/plain
    return FileResponse(f, media_type=media, headers={
        "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


def mount(app: FastAPI) -> None:
    """Add the auth, users, site and console routers to a bare app (tests)."""
    from hub.api.routers import auth, site, users

    for r in (auth.router, users.router, site.router, router):
        app.include_router(r)
