"""Shared helpers for the security tests (not a test module)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from hub.services import free_port


@contextmanager
def serve(app: Any, **config: Any) -> Iterator[str]:
    """``app`` under a real uvicorn server on loopback, for as long as the block runs;
    yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on", **config))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(10)


def filler(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """``total`` bytes of spaces in ``size`` pieces: a body nobody should read."""
    for _ in range(total // size):
        yield b" " * size


def chunked(total: int, size: int = 16 * 1024, first: bytes = b"") -> Iterator[bytes]:
    """The same as an HTTP/1.1 chunked body, ``first`` as its first chunk."""
    if first:
        yield f"{len(first):x}\r\n".encode() + first + b"\r\n"
    for _ in range(total // size):
        yield f"{size:x}\r\n".encode() + b" " * size + b"\r\n"
        time.sleep(0.001)  # lets the answer overtake the stream
    yield b"0\r\n\r\n"
