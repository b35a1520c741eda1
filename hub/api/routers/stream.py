"""The console's live stream: Server-Sent Events, cut to the caller's subtree.

A stream is authenticated when it opens but lives for hours, so it is not trusted
for that long: before every event it delivers, and every ``stream_recheck_s`` while
idle, it resolves the caller again from the request's own credentials. When the
session or token is gone (logout, expiry, a disabled or deleted user) or the user's
role, scope or person has changed, the stream sends ``event: end`` and closes; the
browser's reconnect then meets the login (401) or opens a stream under the new scope.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from hub.alerts.notifiers.sse import Broadcaster, StreamEvent
from hub.api import auth
from hub.api.deps import Ctx, Principal, Reader, current_principal, narrow_scope

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["stream"])

PING_S = 15.0


def _same_caller(request: Request, p: Principal) -> bool:
    """True while the request's credentials still stand for ``p`` as it was when the
    stream opened (blocking: one session lookup)."""
    request.state.principal = None  # the cached principal is the one being re-checked
    try:
        now = current_principal(request)
    except HTTPException:
        return False
    return (now.user_id, now.role, now.scope_code, now.person_id) == (
        p.user_id, p.role, p.scope_code, p.person_id)


def _end(reason: str) -> bytes:
    return f'event: end\ndata: {{"reason": "{reason}"}}\n\n'.encode()


async def _events(request: Request, hub: Broadcaster, scope: str, last_id: int | None,
                  valid: Callable[[], bool], recheck_s: float) -> AsyncIterator[bytes]:
    client = hub.subscribe(scope, last_id)
    last_ping = time.monotonic()

    async def still_valid() -> bool:
        if await run_in_threadpool(valid):
            return True
        log.info("live stream ended: the session no longer holds", extra={"scope": scope})
        return False

    try:
        yield b"retry: 3000\n\n"
        while True:
            try:
                ev = await asyncio.wait_for(client.queue.get(), min(recheck_s, PING_S))
            except TimeoutError:
                if await request.is_disconnected():
                    return
                if not await still_valid():
                    yield _end("session")
                    return
                if time.monotonic() - last_ping >= PING_S:
                    last_ping = time.monotonic()
                    yield b": ping\n\n"  # keeps proxies from closing an idle stream
                continue
            # Everything already queued goes out after one check, so a burst of
            # events costs one lookup, and none is delivered past a revocation.
            batch: list[StreamEvent | None] = [ev]
            while batch[-1] is not None and not client.queue.empty():
                batch.append(client.queue.get_nowait())
            if not await still_valid():
                yield _end("session")
                return
            for e in batch:
                if e is None:  # cut off (too slow) or server shutting down
                    return
                yield e.encode()
    finally:
        hub.unsubscribe(client)


@router.get("/stream", summary="Live incident events (text/event-stream)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`event: incident` with JSON data "
                             "`{reason, action, incident}`; reconnect with Last-Event-ID "
                             "to get what was missed. `event: end` when the session "
                             "ended or the user's role or scope changed"}})
async def stream(
    request: Request, ctx: Ctx, p: Reader,
    grid: Annotated[str | None, Query(pattern=r"^\d{6,16}$")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    scope = narrow_scope(p, grid)
    try:
        last = int(last_event_id) if last_event_id else None
    except ValueError:
        last = None
    recheck_s = max(0.1, auth.config(request).stream_recheck_s)
    return StreamingResponse(
        _events(request, ctx.broadcaster, scope, last, lambda: _same_caller(request, p),
                recheck_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
