"""The hub's HTTP API (FastAPI): incidents, grid, people, devices, readings,
statistics, the live stream, silences, plus authentication and the console.

``create_app(ctx)`` builds the application around an ``AppContext`` (pool, site,
tree, alert service, data directory); ``hub.node`` serves it with uvicorn.
Every route takes a ``Principal`` and cuts what it returns to the caller's grid
subtree. Invalid requests get a 4xx with a message saying what is wrong; a 500 is a
bug.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import BaseModel

from hub.api.deps import AppContext
from hub.api.guard import BodyGuard, PathGuard
from hub.api.routers import (
    auth,
    camera_events,
    clips,
    console,
    devices,
    family,
    grid,
    incidents,
    intake,
    live,
    meta,
    push,
    receipts,
    silences,
    site,
    stats,
    stream,
    users,
)

log = logging.getLogger(__name__)

API_ERRORS = Counter("hub_api_errors_total", "API requests answered with an error", ["status"])

DESCRIPTION = """
Smart-community hub API. Incidents (网格事件) from cameras and sensors, their
lifecycle (reported → registered/cancelled → dispatched → accepted → handled →
closed), the grid tree, devices and their readings, statistics, and a live stream.

Every call is scoped to the caller's grid subtree: nothing outside it is listed,
and anything outside it asked for by id is refused with 403. Errors carry
`{"detail": ..., "code": ...}`.
"""

class Health(BaseModel):
    status: str
    database: bool
    alerts: dict[str, Any] | None
    # The process's other roles when the API runs inside a hub node: ingest
    # (connected, counts, rejected by reason) and each camera's health.
    node: dict[str, Any] | None = None


def _live_view(ctx: AppContext) -> Any:
    """The live view of a hub node's API (its MQTT connection); None without one."""
    node = ctx.extra.get("node")
    if node is None or getattr(node, "mqtt", None) is None:
        return None
    from hub.api.liveview import LiveLimits, LiveView

    st = node.settings
    limits = LiveLimits(fps=st.live_fps, per_camera=st.live_max_viewers_per_camera,
                        per_user=st.live_max_views_per_user, lease_s=st.live_lease_s)
    live = ctx.extra["live"] = LiveView(
        ctx.site, node.mqtt, limits, clock=node.clock,
        stopping=lambda: bool(getattr(node.api_server, "should_exit", False))).start()
    return live


def create_app(ctx: AppContext) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        live = _live_view(ctx)
        yield
        # Open live streams would otherwise hold the server's shutdown.
        ctx.broadcaster.close_all()
        if live is not None:
            live.stop()

    # The API's description is served only when configured (HUB_API_DOCS): a public
    # map of every route and parameter helps an attacker more than an operator.
    docs = ctx.api_docs
    app = FastAPI(title="Smart-community hub", version="1", description=DESCRIPTION,
                  lifespan=lifespan, openapi_url="/openapi.json" if docs else None,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None)
    app.state.ctx = ctx
    # Authentication and the body cap come before FastAPI reads a body (hub.api.guard).
    app.add_middleware(BodyGuard)
    # Outermost: a path or query with NUL, control characters or invalid UTF-8 is a 400
    # before authentication or any route sees it.
    app.add_middleware(PathGuard)

    for r in (incidents.router, clips.router, grid.router, devices.router, stats.router,
              stream.router, silences.router, auth.router, users.router, site.router,
              meta.router, console.router, camera_events.router, live.router,
              receipts.router, family.router, push.router, intake.router,
              push.pwa):
        app.include_router(r)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        API_ERRORS.labels(str(exc.status_code)).inc()
        headers = dict(exc.headers or {})
        code = headers.pop("X-Error-Code", None)
        body: dict[str, Any] = {"detail": exc.detail}
        if code:
            body["code"] = code
        return JSONResponse(body, status_code=exc.status_code, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        API_ERRORS.labels("422").inc()
        errs = []
        for e in exc.errors()[:10]:
            where = ".".join(str(x) for x in e.get("loc", ()))
            errs.append({"loc": where, "msg": e.get("msg", "")})
        detail = "; ".join(f"{x['loc']}: {x['msg']}" for x in errs)
        return JSONResponse({"detail": detail, "code": "invalid_request", "errors": errs},
                            status_code=422)

    @app.exception_handler(psycopg.DataError)
    async def unstorable(request: Request, exc: psycopg.DataError) -> Response:
        # A value that passed validation but that PostgreSQL cannot hold (a NUL
        # character in text, a number out of its range): the request's fault, not
        # the server's, whichever endpoint and column it reached.
        API_ERRORS.labels("422").inc()
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        log.warning("request value refused by the database",
                    extra={"path": request.url.path, "error": why})
        return JSONResponse({"detail": f"a value in the request cannot be stored: {why}",
                             "code": "invalid_value"}, status_code=422)

    @app.get("/healthz", response_model=Health, tags=["health"],
             summary="Liveness: the database answers and the alert threads run")
    def healthz() -> Response:
        db = True
        try:
            with ctx.pool.connection(timeout=2) as conn:
                conn.execute("SELECT 1")
        except Exception:  # noqa: BLE001 - reported, not raised
            db = False
        alerts = ctx.alerts.health() if ctx.alerts is not None else None
        node = ctx.extra["node"].health() if "node" in ctx.extra else None
        ingest_ok = node is None or node.get("ingest", {}).get("connected", True)
        ok = db and (alerts is None or alerts["ok"]) and ingest_ok
        h = Health(status="ok" if ok else "degraded", database=db, alerts=alerts, node=node)
        return JSONResponse(h.model_dump(), status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
