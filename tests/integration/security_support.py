"""Shared helpers for the security tests (not a test module)."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes out before the answer came
    seconds: float
    timed_out: bool = False  # no answer within the timeout


def send_raw(port: int, head: str, chunks: Iterable[bytes] = (),
             timeout: float = 8.0) -> RawAnswer:
    """Send ``head`` (request line and headers), then body ``chunks`` until the server
    answers; never more of a big declared body than it takes to get the answer."""
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sent = 0
    data = b""
    try:
        s.sendall((head.strip() + "\r\n\r\n").encode())
        for c in chunks:
            if select.select([s], [], [], 0)[0]:
                break
            try:
                s.sendall(c)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(c)
        s.settimeout(timeout)
        rest = b""
        lines: list[str] = []
        headers: dict[str, str] = {}
        try:
            while b"\r\n\r\n" not in data:
                got = s.recv(65536)
                if not got:
                    break
                data += got
            head_b, _, rest = data.partition(b"\r\n\r\n")
            lines = head_b.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (ln.partition(":") for ln in lines[1:])}
            n = int(headers.get("content-length", "0") or 0)
            while len(rest) < n:
                got = s.recv(65536)
                if not got:
                    break
                rest += got
        except ConnectionResetError:
            pass  # the server closed after answering: keep what arrived
        except TimeoutError:
            return RawAnswer(0, {}, b"", sent, time.perf_counter() - t0, timed_out=True)
    finally:
        s.close()
    status = int(lines[0].split()[1]) if data and lines and len(lines[0].split()) > 1 else 0
    return RawAnswer(status, headers, rest, sent, time.perf_counter() - t0)


class RecordingClient:
    """One paho MQTT 5 client that records how its connection went and what it
    received. Raises TimeoutError when no CONNACK comes within ``timeout``."""

    def __init__(self, host: str, port: int, client_id: str, username: str | None,
                 password: str | None, *, clean_start: bool = True, expiry_s: int = 3600,
                 will: tuple[str, bytes] | None = None,
                 reconnect_s: tuple[float, float] = (0.2, 1.0), timeout: float = 5.0) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.connacks: list[Any] = []
        self.disconnects: list[Any] = []
        self.messages: list[tuple[str, bytes]] = []
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5)
        if username is not None:
            self.c.username_pw_set(username, password)
        if will:
            self.c.will_set(will[0], will[1], qos=1, retain=True)
        self.c.on_connect = lambda c, u, f, rc, p: self.connacks.append(rc)
        self.c.on_disconnect = lambda c, u, f, rc, p: self.disconnects.append(rc)
        self.c.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = expiry_s
        self.c.reconnect_delay_set(*reconnect_s)
        self.c.connect_async(host, port, clean_start=clean_start, properties=props)
        self.c.loop_start()
        deadline = time.monotonic() + timeout
        while not self.connacks and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.connacks:
            self.close()
            raise TimeoutError(f"{client_id}: no CONNACK for {username!r} on port {port}")

    @property
    def accepted(self) -> bool:
        return bool(self.connacks) and not self.connacks[0].is_failure

    def close(self) -> None:
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()
