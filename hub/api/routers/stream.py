"""The console's live stream: Server-Sent Events, cut to the caller's subtree."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from hub.alerts.notifiers.sse import Broadcaster
from hub.api.deps import Ctx, Reader, narrow_scope

router = APIRouter(prefix="/api", tags=["stream"])

PING_S = 15.0


async def _events(request: Request, hub: Broadcaster, scope: str,
                  last_id: int | None) -> AsyncIterator[bytes]:
    client = hub.subscribe(scope, last_id)
    try:
        yield b"retry: 3000\n\n"
        while True:
            try:
                ev = await asyncio.wait_for(client.queue.get(), PING_S)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield b": ping\n\n"  # keeps proxies from closing an idle stream
                continue
            if ev is None:  # cut off (too slow) or server shutting down
                return
            yield ev.encode()
    finally:
        hub.unsubscribe(client)


@router.get("/stream", summary="Live incident events (text/event-stream)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`event: incident` with JSON data "
                             "`{reason, action, incident}`; reconnect with Last-Event-ID "
                             "to get what was missed"}})
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
    return StreamingResponse(
        _events(request, ctx.broadcaster, scope, last), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
