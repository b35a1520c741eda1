"""ASGI middleware that refuses a request before the application looks at it.

:class:`PathGuard` answers a path or query string holding a NUL, a control character
or bytes that are not UTF-8 with a 400 before any route sees it: such a name means
nothing to this API, and handed to the file system (``Path.resolve``) or a database
it raised where it landed (``GET /static/js/%00.js`` was a 500).

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
   A camera's event push (:data:`CAMERA_PUSH`) gets ``camera_push_max_bytes``.

Early answers carry ``Connection: close``: the client may still be sending the body
nobody will read, and the connection cannot be reused after it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import HTTPException
from prometheus_client import Counter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.limits import RequestLimits

log = logging.getLogger(__name__)

REFUSED = Counter("hub_api_refused_total",
                  "Requests refused before the application read them, by reason", ["reason"])

# /api routes a caller reaches without logging in.
PUBLIC = frozenset({"/api/auth/login", "/api/intake/tickets"})
# The 12345 intake authenticates itself (its own bearer token, hub.api.routers.intake).
INTAKE = "/api/intake/tickets"
INTAKE_MAX_BYTES = 16 * 1024
# ... and those that authenticate their callers themselves: a camera's event push
# (its own HTTP Basic or Digest credentials, hub.api.routers.camera_events).
CAMERA_PUSH = re.compile(r"^/api/cameras/[^/]+/events/?$")
# An SMS gateway's delivery receipt (its channel's token, hub.api.routers.receipts).
RECEIPT = re.compile(r"^/api/notify/receipts/[^/]+/?$")
RECEIPT_MAX_BYTES = 4 * 1024
# An emergency contact's one-time answer page (hub.api.routers.family).
FAMILY = re.compile(r"^/api/family/[^/]+/?$")
FAMILY_MAX_BYTES = 1024
PUBLIC_PATTERNS = (CAMERA_PUSH, RECEIPT, FAMILY)
UPLOAD = re.compile(r"^/api/incidents/[^/]+/attachments/?$")
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the photo
LOG_EVERY_S = 10.0


# C0 controls (NUL included) and DEL: no path or parameter of this API holds one.
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


def is_public(path: str) -> bool:
    """Whether an /api path is reached without a session (its route authenticates)."""
    return path in PUBLIC or any(p.match(path) for p in PUBLIC_PATTERNS)


class _TooLarge(Exception):
    pass


def bad_characters(raw: bytes) -> str | None:
    """Why a percent-encoded path or query string is refused, or None."""
    data = unquote_to_bytes(raw)
    if _CONTROL.search(data):
        return "a NUL or control character"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes that are not UTF-8"
    return None


class PathGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # raw_path is what came over the wire; "path" is already decoded (with
            # invalid UTF-8 replaced), so the check looks at the bytes.
            raw_path = scope.get("raw_path") or scope.get("path", "").encode("utf-8",
                                                                               "replace")
            for part, raw in (("path", raw_path), ("query", scope.get("query_string", b""))):
                why = bad_characters(raw)
                if why is None:
                    continue
                client = scope.get("client") or ("", 0)
                _note(client[0], "invalid_characters", f"{part}: {why}",
                      raw_path[:200].decode("latin-1"), scope.get("method", ""))
                await _answer(send, 400, f"the request's {part} contains {why}",
                              "invalid_request")
                return
        await self.app(scope, receive, send)


class BodyGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path: str = scope.get("path", "")
        ctx = getattr(request.app.state, "ctx", None)
        limits: RequestLimits = getattr(ctx, "limits", None) or RequestLimits()

        if path.startswith("/api/") and not is_public(path) and ctx is not None \
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
        if scope.get("method") == "POST" and CAMERA_PUSH.match(scope.get("path", "")):
            return limits.camera_push_max_bytes
        if RECEIPT.match(scope.get("path", "")):
            return RECEIPT_MAX_BYTES
        if FAMILY.match(scope.get("path", "")):
            return FAMILY_MAX_BYTES
        if scope.get("path", "").rstrip("/") == INTAKE:
            return INTAKE_MAX_BYTES
        return limits.body_max_bytes

    @staticmethod
    def _note(request: Request, reason: str, detail: Any) -> None:
        _note(request.client.host if request.client else "", reason, detail,
              request.url.path, request.method)


_logged: dict[tuple[str, str], float] = {}


def _note(ip: str, reason: str, detail: Any, path: str, method: str) -> None:
    REFUSED.labels(reason).inc()
    now = time.monotonic()
    # At most one line per client and reason every LOG_EVERY_S: a flood of refused
    # requests must not become a flood of log lines (the counter has them all).
    if now - _logged.get((ip, reason), -LOG_EVERY_S) >= LOG_EVERY_S:
        if len(_logged) > 10_000:
            _logged.clear()
        _logged[(ip, reason)] = now
        log.warning("request refused before the application saw it", extra={
            "reason": reason, "detail": str(detail), "path": path, "method": method,
            "ip": ip})


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
