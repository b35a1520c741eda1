"""In-process broadcaster behind the console's live stream (``GET /api/stream``).

Publishers are worker threads; subscribers are asyncio tasks of the API server.
Each client has its own bounded queue and a grid scope: it only receives events
whose grid code lies under its scope. A client that cannot keep up is cut off
(it reconnects with ``Last-Event-ID`` and gets what it missed from the replay
buffer) instead of making the publisher wait or memory grow.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

SSE_CLIENTS = Gauge("hub_sse_clients", "Connected live-stream clients")
SSE_EVENTS = Counter("hub_sse_events_total", "Events published to the live stream")
SSE_DROPPED = Counter("hub_sse_clients_dropped_total", "Clients cut off for falling behind")


@dataclass(frozen=True, slots=True)
class StreamEvent:
    id: int
    event: str  # "incident" | "summary" | ...
    grid_code: str | None
    data: dict[str, Any]

    def encode(self) -> bytes:
        body = json.dumps(self.data, ensure_ascii=False, default=str)
        return f"id: {self.id}\nevent: {self.event}\ndata: {body}\n\n".encode()


def in_scope(grid_code: str | None, scope: str) -> bool:
    """An event without a grid is only for whole-site scopes."""
    if not scope:
        return True
    return grid_code is not None and grid_code.startswith(scope)


@dataclass(eq=False)
class Client:
    scope: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[StreamEvent | None] = field(default_factory=lambda: asyncio.Queue(1000))
    closed: bool = False


class Broadcaster:
    def __init__(self, replay: int = 2000, queue_size: int = 1000) -> None:
        self._lock = threading.Lock()
        self._clients: set[Client] = set()
        self._ids = itertools.count(1)
        self._replay: deque[StreamEvent] = deque(maxlen=replay)
        self._queue_size = queue_size

    @property
    def clients(self) -> int:
        return len(self._clients)

    def publish(self, event: str, data: dict[str, Any], grid_code: str | None) -> StreamEvent:
        """Thread-safe; never blocks on a slow client."""
        with self._lock:
            ev = StreamEvent(next(self._ids), event, grid_code, data)
            self._replay.append(ev)
            clients = list(self._clients)
        SSE_EVENTS.inc()
        for c in clients:
            if not c.closed and in_scope(grid_code, c.scope):
                try:
                    c.loop.call_soon_threadsafe(self._offer, c, ev)
                except RuntimeError:  # the client's loop is gone
                    self.unsubscribe(c)
        return ev

    def _offer(self, c: Client, ev: StreamEvent | None) -> None:
        if c.closed:
            return
        try:
            c.queue.put_nowait(ev)
        except asyncio.QueueFull:
            SSE_DROPPED.inc()
            log.warning("live-stream client fell behind; disconnecting it",
                        extra={"scope": c.scope})
            c.closed = True
            self.unsubscribe(c)
            # The queue is full, so make room for the end marker.
            c.queue.get_nowait()
            c.queue.put_nowait(None)

    def subscribe(self, scope: str, last_event_id: int | None = None) -> Client:
        """Call from the event loop that will read the client's queue."""
        c = Client(scope=scope, loop=asyncio.get_running_loop(),
                   queue=asyncio.Queue(self._queue_size))
        with self._lock:
            if last_event_id is not None:
                for ev in self._replay:
                    if c.queue.qsize() >= self._queue_size // 2:
                        break  # the rest is better fetched from the incident list
                    if ev.id > last_event_id and in_scope(ev.grid_code, scope):
                        c.queue.put_nowait(ev)
            self._clients.add(c)
        SSE_CLIENTS.set(len(self._clients))
        return c

    def unsubscribe(self, c: Client) -> None:
        with self._lock:
            self._clients.discard(c)
        SSE_CLIENTS.set(len(self._clients))

    def close_all(self) -> None:
        """Ends every stream (server shutdown)."""
        with self._lock:
            clients = list(self._clients)
            self._clients.clear()
        for c in clients:
            try:
                c.loop.call_soon_threadsafe(self._end, c)
            except RuntimeError:
                pass
        SSE_CLIENTS.set(0)

    @staticmethod
    def _end(c: Client) -> None:
        c.closed = True
        if c.queue.full():
            c.queue.get_nowait()
        c.queue.put_nowait(None)
