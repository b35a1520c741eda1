"""Serves the console (/) and the grid worker's phone view (/m) as static files.

No build step: plain HTML, CSS and ES modules under ``hub/api/static``. The pages
themselves are public (they show a login form); every piece of data comes from the
authenticated API. A strict Content-Security-Policy keeps injected markup from
running script even if an incident title carried some.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

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

router = APIRouter(include_in_schema=False)


@router.get("/")
def console_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)


@router.get("/m")
def worker_page() -> FileResponse:
    return FileResponse(STATIC / "m.html", headers=SECURITY_HEADERS)


def mount(app: FastAPI) -> None:
    """Add the console pages, their static files and the auth, users, site and
    attachment routers to ``app``."""
    from hub.api.routers import attachments, auth, site, users

    for r in (auth.router, users.router, site.router, attachments.router, router):
        app.include_router(r)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
