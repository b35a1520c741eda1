"""Alert worker throughput and latency, with 10,000 open incidents in the database.

Measured in the same run, on the same database and broker:

* ``alarms_per_s``       - alarms queued through ``AlertService.on_alarm`` as fast as
  they come, applied in small batches (one transaction per batch) until the last is
  committed: half repeats of open incidents, half new incidents (each with its
  incident, audit and outbox rows);
* ``naive_alarms_per_s`` - the same mix applied one alarm per transaction;
* ``p95_alarm_to_notify_ms`` - at a steady offered rate, from ``on_alarm`` to the
  notification going out: on the live stream (a real SSE subscriber queue) and on
  MQTT (a real subscriber on the grid worker's topic receiving it from the broker,
  through the outbox). The larger of the two p95s is reported; both are printed.

    python bench/alerts.py --json [--alarms 20000] [--db URL] [--mqtt URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import percentile, report  # noqa: E402
from hub.alerts.service import AlertService  # noqa: E402
from hub.clock import SystemClock  # noqa: E402
from hub.config import load_site  # noqa: E402
from hub.domain import Alarm, AlarmState, Category, Severity  # noqa: E402
from hub.grid.tree import GridTree  # noqa: E402
from hub.protocol import alerts_topic  # noqa: E402
from hub.ratelimit import TokenBuckets  # noqa: E402
from hub.services import ensure_broker, tcp_open, with_database  # noqa: E402
from hub.store.db import open_pool  # noqa: E402
from hub.store.migrations import migrate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEED = 10_000


def seed(pool: Any, micro: list[str], n: int) -> None:
    """``n`` open fire-lane incidents spread over the micro-grids, deadlines far off."""
    with pool.connection() as c:
        c.execute(
            """
            INSERT INTO incidents (dedup_key, rule, category, severity, state, title, grid_code,
                                   device_id, opened_at, updated_at, last_alarm_ts, reported_at,
                                   deadline_at, deadline_kind)
            SELECT 'seed:' || i, 'firelane', 'fire_lane', 3, 'reported', 'seed ' || i,
                   (%s::text[])[1 + i %% %s], 'cam-' || (i %% 50),
                   now() - interval '1 hour', now(), now() - interval '1 hour', now(),
                   now() + interval '30 days', 'accept'
            FROM generate_series(0, %s - 1) i
            """,
            (micro, len(micro), n),
        )


def mix(n: int, micro: list[str], tag: str, t0: datetime) -> list[Alarm]:
    """Half repeats of seeded incidents (updates), half new ones."""
    out = []
    for i in range(n):
        if i % 2:
            key, title = f"seed:{(i * 7919) % SEED}", "repeat"
        else:
            key, title = f"new:{tag}:{i}", f"bench {tag} {i}"
        out.append(Alarm(rule="firelane", category=Category.FIRE_LANE, severity=Severity.MAJOR,
                         state=AlarmState.FIRING, dedup_key=key,
                         ts=t0 + timedelta(milliseconds=i), title=title,
                         grid_code=micro[i % len(micro)]))
    return out


def throughput(svc: AlertService, alarms: list[Alarm]) -> float:
    t = time.perf_counter()
    svc.on_alarms(alarms)
    if not svc.flush(600):
        raise RuntimeError("alarms not applied within 10 minutes")
    return len(alarms) / (time.perf_counter() - t)


def naive(svc: AlertService, alarms: list[Alarm]) -> float:
    t = time.perf_counter()
    for a in alarms:
        svc.store.apply([a], svc.clock.now())
    return len(alarms) / (time.perf_counter() - t)


class _SseProbe:
    """A live-stream client in its own event loop, recording arrival times."""

    def __init__(self, svc: AlertService) -> None:
        self.arrived: dict[str, float] = {}
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def run() -> None:
            client = svc.broadcaster.subscribe("", None)
            ready.set()
            while True:
                ev = await client.queue.get()
                if ev is None:
                    return
                key = ev.data["incident"]["dedup_key"]
                self.arrived.setdefault(key, time.perf_counter())

        self.thread = threading.Thread(target=lambda: self.loop.run_until_complete(run()),
                                       daemon=True)
        self.thread.start()
        ready.wait(5)


class _MqttProbe:
    def __init__(self, broker: Any, topics: list[str]) -> None:
        self.arrived: dict[str, float] = {}
        ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"bench-app-{uuid.uuid4().hex[:6]}",
                             protocol=mqtt.MQTTv5)

        def on_connect(c: Any, *a: Any) -> None:
            c.subscribe([(t, 1) for t in topics])

        def on_message(c: Any, u: Any, m: Any) -> None:
            title = json.loads(m.payload).get("title", "")
            self.arrived.setdefault(title, time.perf_counter())

        self.c.on_connect = on_connect
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.on_message = on_message
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        ready.wait(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def latency(svc: AlertService, broker: Any, micro: list[str], grids: list[str], n: int,
            rate: float) -> dict[str, Any]:
    sse = _SseProbe(svc)
    mq = _MqttProbe(broker, [alerts_topic(g) for g in grids])
    tag = uuid.uuid4().hex[:6]
    alarms = [a for a in mix(n * 2, micro, tag, datetime.now(UTC)) if a.title != "repeat"][:n]
    sent: dict[str, float] = {}
    t0 = time.perf_counter()
    for i, a in enumerate(alarms):
        # Open loop: alarms arrive on their schedule whatever the worker is doing.
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent[a.dedup_key] = time.perf_counter()
        svc.on_alarm(a)
    svc.flush(60)
    end = time.monotonic() + 30
    while time.monotonic() < end and len(mq.arrived) < len(alarms):
        time.sleep(0.05)
    mq.close()
    svc.broadcaster.close_all()
    sse_ms = [(sse.arrived[k] - t) * 1000 for k, t in sent.items() if k in sse.arrived]
    by_title = {a.title: a.dedup_key for a in alarms}
    mqtt_ms = [(t - sent[by_title[title]]) * 1000 for title, t in mq.arrived.items()
               if title in by_title]
    return {
        "offered_alarms_per_s": rate,
        "alarms": len(alarms),
        "sse_received": len(sse_ms),
        "mqtt_received": len(mqtt_ms),
        "sse_p50_ms": round(percentile(sse_ms, 0.5), 1),
        "sse_p95_ms": round(percentile(sse_ms, 0.95), 1),
        "mqtt_p50_ms": round(percentile(mqtt_ms, 0.5), 1),
        "mqtt_p95_ms": round(percentile(mqtt_ms, 0.95), 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--alarms", type=int, default=20_000)
    ap.add_argument("--naive-alarms", type=int, default=2_000)
    ap.add_argument("--latency-alarms", type=int, default=2_000)
    ap.add_argument("--rate", type=float, default=200.0, help="offered alarms/s for latency")
    ap.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/test",
                    help="server to create a scratch database on")
    ap.add_argument("--mqtt", default=None, help="broker URL (default: local or embedded)")
    args = ap.parse_args(argv)

    site = load_site(REPO / "deploy" / "sites" / "demo.yaml")
    tree = GridTree.from_site(site)
    micro = [c for c in tree.units if len(c) == 16]
    grids = sorted({c[:14] for c in micro})
    mqtt_url = args.mqtt or ("mqtt://127.0.0.1:1883" if tcp_open("127.0.0.1", 1883) else None)
    import tempfile

    broker = ensure_broker(mqtt_url, Path(tempfile.mkdtemp(prefix="bench-broker-")))
    name = f"bench_alerts_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.db, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = with_database(args.db, name)
    out: dict[str, Any] = {}
    try:
        migrate(url)
        pool = open_pool(url, 2, 8, name="bench-alerts")
        seed(pool, micro, SEED)
        with pool.connection() as c:
            c.execute("ANALYZE")
        # Generous limits: this measures the pipeline, not the per-phone rate limit.
        wide = TokenBuckets(capacity=1e9, per_s=1e9)
        svc = AlertService(pool, site, tree, SystemClock(), broker=broker, rate=wide)
        svc.start(ticker=False, dispatcher=False)  # throughput: the applier alone
        t0 = datetime.now(UTC)
        rates = []
        for r in range(3):
            rates.append(throughput(svc, mix(args.alarms // 3, micro, f"t{r}", t0)))
        naive_rate = naive(svc, mix(args.naive_alarms, micro, "naive", t0))
        svc.stop()
        with pool.connection() as c:
            c.execute("DELETE FROM outbox")  # what the throughput runs queued is not news
            opened = c.execute("SELECT count(*) FROM incidents WHERE state NOT IN"
                               " ('closed', 'cancelled')").fetchone()[0]  # type: ignore[index]

        svc = AlertService(pool, site, tree, SystemClock(), broker=broker, rate=wide)
        svc.start(ticker=False)
        lat = latency(svc, broker, micro, grids, args.latency_alarms, args.rate)
        svc.stop()
        pool.close()
        out = {
            "alarms_per_s": round(statistics.median(rates), 1),
            "alarms_per_s_runs": [round(x, 1) for x in rates],
            "naive_alarms_per_s": round(naive_rate, 1),
            "speedup_vs_naive": round(statistics.median(rates) / naive_rate, 2),
            "p95_alarm_to_notify_ms": max(lat["sse_p95_ms"], lat["mqtt_p95_ms"]),
            "open_incidents_at_start": SEED,
            "open_incidents_at_end": opened,
            "latency": lat,
            "alarm_mix": "50% repeats of open incidents, 50% new incidents",
            "targets": {"alarms_per_s": ">= 1000", "p95_alarm_to_notify_ms": "<= 200"},
        }
    finally:
        with psycopg.connect(args.db, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        broker.stop()
    report(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
