"""ASGI middleware that refuses a request before the application reads its body.

FastAPI reads and parses a body before it runs a route's dependencies, so without
this an unauthenticated 300 MB JSON body was read in full (13.8 s, 900 MB) before the
route's authentication said 401, and a multipart request declaring 200 MB held a
worker while it arrived. :class:`BodyGuard` sits in front of the application:

1. **Authentication first.** Every ``/api`` route except :data:`PUBLIC` is
   authenticated here, with the same :func:`hub.api.auth.get_principal` the routes
   use (session cookie and CSRF header, or bearer token), before a byte of the body is
   read. A refusal is the same 401/403 the route would give. The principal is kept on
   the request's state, where the route's dependency finds it, so this costs no
   second session lookup. A context with a fixed principal (tests, single-user demo)
   is not checked here.
2. **A cap per route.** A declared ``Content-Length`` over the route's cap is a 413
   at once; a chunked body is counted as it streams and cut off with a 413 when it
   passes the cap. Photo uploads get ``photo_max_bytes`` (plus room for the multipart
   framing); every other route ``body_max_bytes``. Starlette spools an uploaded file
   to disk past 1 MB, so an upload within its cap is not held in memory either.

Early answers carry ``Connection: close``: the client may still be sending the body
nobody will read, and the connection cannot be reused after it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from fastapi import HTTPException
from prometheus_client import Counter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.limits import RequestLimits

log = logging.getLogger(__name__)

REFUSED = Counter("hub_api_refused_total",
                  "Requests refused before their body was read, by reason", ["reason"])

# /api routes a caller reaches without logging in.
PUBLIC = frozenset({"/api/auth/login"})
UPLOAD = re.compile(r"^/api/incidents/[^/]+/attachments/?$")
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the photo
LOG_EVERY_S = 10.0


class _TooLarge(Exception):
    pass


class BodyGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._logged: dict[tuple[str, str], float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path: str = scope.get("path", "")
        ctx = getattr(request.app.state, "ctx", None)
        limits: RequestLimits = getattr(ctx, "limits", None) or RequestLimits()

        if path.startswith("/api/") and path not in PUBLIC and ctx is not None \
                and ctx.principal is None:
            from hub.api import auth  # imports the routers' dependencies

            try:
                await run_in_threadpool(auth.get_principal, request)
            except HTTPException as e:
                reason = "unauthenticated" if e.status_code == 401 else "forbidden"
                self._note(request, reason, e.detail)
                headers = dict(e.headers or {})
                code = headers.pop("X-Error-Code", None) or (
                    "not_authenticated" if e.status_code == 401 else "forbidden")
                await _answer(send, e.status_code, str(e.detail), code, headers)
                return

        cap = self.cap(scope, limits)
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            self._note(request, "body_too_large", f"declared {declared} > {cap}")
            await _answer(send, 413, f"the request body is limited to {cap} bytes on this "
                          f"route; {declared} were declared", "body_too_large")
            return

        seen = 0
        cut = False
        started = False

        async def counted() -> Message:
            nonlocal seen, cut
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > cap:
                    cut = True
                    raise _TooLarge
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if cut:
                return  # the application's answer to a cut-off body is replaced below
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, counted, guarded_send)
        except _TooLarge:
            pass
        if cut and not started:
            # The application either let the exception through or answered it (FastAPI
            # turns a failed body read into a 400); either way the caller learns why.
            self._note(request, "body_too_large", f"streamed past {cap}")
            await _answer(send, 413, f"the request body is limited to {cap} bytes on this "
                          "route", "body_too_large")

    @staticmethod
    def cap(scope: Scope, limits: RequestLimits) -> int:
        if scope.get("method") == "POST" and UPLOAD.match(scope.get("path", "")):
            return limits.photo_max_bytes + MULTIPART_OVERHEAD
        return limits.body_max_bytes

    def _note(self, request: Request, reason: str, detail: Any) -> None:
        REFUSED.labels(reason).inc()
        ip = request.client.host if request.client else ""
        now = time.monotonic()
        # At most one line per client and reason every LOG_EVERY_S: a flood of refused
        # requests must not become a flood of log lines.
        if now - self._logged.get((ip, reason), -LOG_EVERY_S) >= LOG_EVERY_S:
            self._logged[(ip, reason)] = now
            if len(self._logged) > 10_000:
                self._logged.clear()
            log.warning("request refused before its body was read", extra={
                "reason": reason, "detail": str(detail), "path": request.url.path,
                "method": request.method, "ip": ip})


def _content_length(scope: Scope) -> int | None:
    for k, v in scope.get("headers", ()):
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None  # the server refuses a malformed length before we see it
    return None


async def _answer(send: Send, status: int, detail: str, code: str,
                  headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail, "code": code}).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})
