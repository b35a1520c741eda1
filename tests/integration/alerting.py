"""Shared helpers for the alerting integration tests (not a test module)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from hub.alerts.service import AlertService
from hub.clock import ManualClock
from hub.config import Site, load_site
from hub.domain import Alarm, AlarmState, Category, Severity
from hub.grid.tree import GridTree
from hub.store.db import open_pool

REPO = Path(__file__).resolve().parents[2]
DEMO_SITE = REPO / "deploy" / "sites" / "demo.yaml"
T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
GRID1 = "11010500100201"  # 第一网格, worker wang-wei, leader zhao-min
MICRO = "1101050010020103"  # building 3's micro-grid in grid 1


def demo_site() -> Site:
    return load_site(DEMO_SITE)


def alarm(key: str = "sos:s1", *, ts: datetime = T0, category: str = Category.SOS,
          severity: Severity = Severity.CRITICAL, firing: bool = True,
          grid_code: str | None = MICRO, subject: str | None = None,
          device: str | None = None, rule: str | None = None) -> Alarm:
    return Alarm(
        rule=rule or str(category), category=category, severity=severity,
        state=AlarmState.FIRING if firing else AlarmState.CLEARED, dedup_key=key, ts=ts,
        title=f"{category} {key}", grid_code=grid_code, device_id=device,
        subject_id=subject,
    )


@contextmanager
def pool_for(db_url: str, size: int = 4) -> Iterator[ConnectionPool]:
    pool = open_pool(db_url, 1, size, name="alerts-test")
    try:
        yield pool
    finally:
        pool.close()


def service(pool: ConnectionPool, clock: ManualClock | None = None, **kw: Any) -> AlertService:
    site = kw.pop("site", None) or demo_site()
    return AlertService(pool, site, GridTree.from_site(site), clock or ManualClock(T0), **kw)


def count(pool: ConnectionPool, sql: str, *args: Any) -> int:
    with pool.connection() as c:
        row = c.execute(sql, args).fetchone()
    return int(row[0]) if row else 0


class HookServer:
    """A local HTTP server that records webhook calls; ``fail_first`` answers 500."""

    def __init__(self, secret: str, fail_first: int = 0) -> None:
        import http.server
        import json
        import threading

        from hub.alerts.notifiers import webhook

        self.calls: list[dict[str, Any]] = []
        self.failures = 0
        self.fail_first = fail_first
        self.got = threading.Event()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if outer.failures < outer.fail_first:
                    outer.failures += 1
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.calls.append({
                    "body": json.loads(body),
                    "valid": webhook.verify(secret, body,
                                            self.headers.get(webhook.SIGNATURE_HEADER)),
                    "timestamp": self.headers.get(webhook.TIMESTAMP_HEADER),
                })
                outer.got.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class AlertListener:
    """A grid worker's app: subscribes to alert topics on the real broker."""

    def __init__(self, broker: Any, topics: list[str]) -> None:
        import threading
        import uuid

        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.got = threading.Event()
        ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"app-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)

        def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any = None) -> None:
            for t in topics:
                c.subscribe(t, qos=1)

        def on_subscribe(*a: Any) -> None:
            ready.set()

        def on_message(c: Any, u: Any, m: Any) -> None:
            import json

            self.messages.append((m.topic, json.loads(m.payload)))
            self.got.set()

        self.c.on_connect = on_connect
        self.c.on_subscribe = on_subscribe
        self.c.on_message = on_message
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        assert ready.wait(10), "alert listener could not subscribe"

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def wait_for(pred: Any, timeout: float = 10.0, step: float = 0.05) -> bool:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())
