"""Ingest throughput: the hub against the broker's ceiling and the naive way.

All four are measured in the same run, against the same broker and database:

* ceiling - a paho subscriber that stores nothing (what the broker and one Python
  MQTT client deliver while the publishers run);
* hub     - :class:`hub.ingest.service.Ingest` validating, batching (COPY), committing
  and only then acknowledging;
* naive   - a subscriber that validates each message, INSERTs its readings and
  commits, one transaction per message;
* store-only - a subscriber that neither decodes nor validates: for each message it
  COPYs as many rows as the message has readings (counted in the raw bytes) into the
  same table, in batches, and lets paho acknowledge on receipt. It bounds what any
  hub written in Python that stores rows in this PostgreSQL can reach on this
  machine, so ``hub_vs_store_only`` is the share of that bound the hub gets.

Telemetry carries 1-20 readings per message (as real devices send). Publishers run
in separate processes. Throughput is counted on the receiving side, from the first
message received to the last one done (committed, for hub and naive). Latency is
publish -> committed: ``p95_latency_ms`` at a steady ``--paced-rate`` (a hub with
headroom, as in operation), ``p95_latency_saturated_ms`` during the throughput phase
(mostly time queued behind the backlog the publishers build).

Without ``--mqtt`` the bench starts its own Mosquitto with the project's broker
settings: a Mosquitto on defaults keeps only 1000 unacknowledged messages per client
and drops QoS 1 messages past that, which a hub acknowledging after commit meets as
soon as the publishers outrun it.

    python bench/ingest.py --json [--messages 30000] [--db URL] [--mqtt URL]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.config import Settings  # noqa: E402
from hub.embedded import start_mosquitto  # noqa: E402
from hub.ingest.service import RECEIVE_MAXIMUM, Ingest, tune_gc  # noqa: E402
from hub.protocol import Kind, Telemetry, decode_json, parse_topic, subscription  # noqa: E402
from hub.services import Broker, parse_mqtt_url, with_database  # noqa: E402
from hub.store import readings as store  # noqa: E402
from hub.store.migrations import migrate  # noqa: E402
from hubtools import loadgen  # noqa: E402


class _Subscriber:
    """A plain subscriber; ``handle`` runs per message, on paho's thread."""

    def __init__(self, broker: Broker, site_id: str, handle) -> None:  # type: ignore[no-untyped-def]
        self.first: float | None = None
        self.last = 0.0
        self.count = 0
        self.handle = handle
        self.ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:8]}",
                             protocol=MQTTProtocolVersion.MQTTv5)
        if broker.username:
            self.c.username_pw_set(broker.username, broker.password)
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *_a: self.ready.set()
        filt = subscription(Kind.TELEMETRY, site_id)
        self.c.on_connect = lambda c, *_a: c.subscribe(filt, qos=1)
        props = Properties(PacketTypes.CONNECT)
        # Same buffer as the hub gets, so that neither drops on a backlog.
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self.c.connect(broker.host, broker.port, properties=props)
        self.c.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("subscriber did not subscribe")

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.handle(m)
        self.count += 1
        self.last = time.perf_counter()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _cpu_self() -> float:
    """CPU seconds of this process (every thread: the hub's receive and writer
    threads in the hub phase; the publishers are other processes)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_of(pid: int | None) -> float:
    """CPU seconds of another process (the broker), from /proc; 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pid_of(marker: str) -> int | None:
    """The process whose command line names ``marker`` (the broker the bench
    started, by its config's directory)."""
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and d.name != str(os.getpid()):
            try:
                if marker in (d / "cmdline").read_bytes().decode(errors="replace"):
                    return int(d.name)
            except OSError:
                continue
    return None


BROKER_PID: int | None = None


def _wait(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def _publish(broker: Broker, site_id: str, devices: list[str], n: int, procs: int) -> int:
    per = n // len(devices)
    return loadgen.publish_parallel(broker, site_id, devices, range(per), processes=procs).sent


def run_ceiling(broker: Broker, devices: list[str], n: int, procs: int) -> dict[str, Any]:
    site_id = f"bc{uuid.uuid4().hex[:8]}"
    sub = _Subscriber(broker, site_id, lambda m: None)
    try:
        sent = _publish(broker, site_id, devices, n, procs)
        _wait(lambda: sub.count >= sent, 120)
        dt = (sub.last - sub.first) if sub.first else float("nan")
        return {"msgs_per_s": sub.count / dt if dt > 0 else 0.0, "sent": sent,
                "received": sub.count}
    finally:
        sub.close()


def run_naive(broker: Broker, db: str, devices: list[str], n: int, procs: int) -> dict[str, Any]:
    site_id = f"bn{uuid.uuid4().hex[:8]}"
    conn = psycopg.connect(db)

    def handle(m: mqtt.MQTTMessage) -> None:
        t = parse_topic(m.topic)
        msg = decode_json(Kind.TELEMETRY, m.payload, t.device)
        assert isinstance(msg, Telemetry)
        rx = datetime.now(UTC)
        with conn.transaction():
            for i, r in enumerate(msg.readings):
                conn.execute(
                    "INSERT INTO readings (device_id, seq, idx, ts, metric, value, unit,"
                    " received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (msg.device, msg.seq, i, msg.ts, r.metric, r.value, r.unit, rx),
                )

    # Naive device ids must not collide with the hub run's rows in the same database.
    ndev = [f"n{d}" for d in devices]
    sub = _Subscriber(broker, site_id, handle)
    try:
        sent = _publish(broker, site_id, ndev, n, procs)
        _wait(lambda: sub.count >= sent, 600)
        dt = (sub.last - sub.first) if sub.first else float("nan")
        return {"msgs_per_s": sub.count / dt if dt > 0 else 0.0, "sent": sent,
                "stored": store.count_messages(conn, ndev)}
    finally:
        sub.close()
        conn.close()


def run_store_only(broker: Broker, db: str, devices: list[str], n: int, procs: int,
                   batch_max: int) -> dict[str, Any]:
    site_id = f"bs{uuid.uuid4().hex[:8]}"
    q: queue.SimpleQueue[tuple[str, int] | None] = queue.SimpleQueue()
    done = {"messages": 0, "last": 0.0}
    conn = psycopg.connect(db, autocommit=True)
    now = datetime.now(UTC)

    def writer() -> None:
        seq = 0
        while True:
            items = [q.get()]
            rows = items[0][1] if items[0] else 0
            while items[-1] is not None and rows < batch_max:
                try:
                    items.append(q.get(timeout=0.05))
                except queue.Empty:
                    break
                rows += items[-1][1] if items[-1] else 0
            stop = items[-1] is None
            work = [i for i in items if i is not None]
            if work:
                with conn.transaction(), conn.cursor() as cur, cur.copy(
                    f"COPY readings {store._COLS} FROM STDIN (FORMAT BINARY)"
                ) as cp:
                    cp.set_types(store._TYPES)
                    for dev, k in work:
                        seq += 1
                        for i in range(k):
                            cp.write_row((dev, seq, i, now, "temp", 1.0, "u", now))
                done["messages"] += len(work)
                done["last"] = time.perf_counter()
            if stop:
                return

    th = threading.Thread(target=writer, name="store-only-writer", daemon=True)
    th.start()
    # Its own device ids: the rows must not collide with the hub run's.
    sdev = [f"s{d}" for d in devices]
    sub = _Subscriber(broker, site_id,
                      lambda m: q.put((f"s{m.topic.split('/')[3]}", m.payload.count(b'"metric"'))))
    try:
        sent = _publish(broker, site_id, devices, n, procs)
        _wait(lambda: done["messages"] >= sent, 300)
        dt = done["last"] - sub.first if sub.first else float("nan")
        return {"msgs_per_s": done["messages"] / dt if dt > 0 else 0.0, "sent": sent,
                "stored": store.count_messages(conn, sdev)}
    finally:
        sub.close()
        q.put(None)
        th.join(30)
        conn.close()


def run_hub(broker: Broker, db: str, devices: list[str], n: int, procs: int,
            batch_max: int, batch_wait_ms: int, paced_rate: float,
            paced_s: float) -> dict[str, Any]:
    """Two phases through one Ingest: as fast as the publishers go (throughput, and
    the latency of a saturated hub), then at a steady ``paced_rate`` (latency of a
    hub with headroom, as in operation)."""
    site_id = f"bh{uuid.uuid4().hex[:8]}"
    prefix = devices[0][:-4]  # ids are <prefix><4 digits>
    site = loadgen.make_site(site_id, len(devices), prefix=prefix)
    assert [d.id for d in site.devices] == devices
    lat: list[float] = []
    marks: dict[str, float | None] = {"first": None, "last": 0.0}

    def committed(msgs: list) -> None:  # type: ignore[type-arg]
        now = datetime.now(UTC)
        lat.extend((now - m.ts).total_seconds() * 1000 for m in msgs)
        marks["last"] = time.perf_counter()

    ing = Ingest(db_url=db, broker=broker, site=site, client_id=f"bench-{site_id}",
                 shared_group=site_id, batch_max=batch_max, batch_wait_ms=batch_wait_ms,
                 on_committed=committed, session_expiry_s=60)
    orig = ing.on_message

    def on_message(m: mqtt.MQTTMessage) -> None:
        if marks["first"] is None:
            marks["first"] = time.perf_counter()
        orig(m)

    ing.on_message = on_message  # type: ignore[method-assign]
    ing.start()

    def done(k: int) -> bool:
        st = ing.stats()
        return st.get("stored", 0) + st.get("duplicates", 0) >= k

    try:
        if not ing.wait_connected(10):
            raise RuntimeError("ingest did not connect")
        cpu0, broker0 = _cpu_self(), _cpu_of(BROKER_PID)
        sent = _publish(broker, site_id, devices, n, procs)
        _wait(lambda: done(sent) or ing.stats()["rejected_total"] > 0, 300)
        hub_cpu_us = (_cpu_self() - cpu0) / max(1, sent) * 1e6
        broker_cpu_us = (_cpu_of(BROKER_PID) - broker0) / max(1, sent) * 1e6
        if ing.stats()["rejected_total"]:
            raise RuntimeError(f"the hub rejected bench messages: {ing.stats()['rejected']}")
        first = marks["first"]
        dt = (marks["last"] or 0.0) - first if first else float("nan")
        rate = len(lat) / dt if dt > 0 else 0.0
        saturated = sorted(lat)
        # Paced phase: new seqs, so nothing is a duplicate of the first phase.
        lat.clear()
        per = n // len(devices)
        paced_rate = paced_rate or max(50.0, round(rate / 2, -1))
        k = max(1, int(paced_rate * paced_s / len(devices)))
        paced = loadgen.publish_parallel(broker, site_id, devices, range(per, per + k),
                                         processes=procs, rate=paced_rate).sent
        _wait(lambda: done(sent + paced), 120)
        steady = sorted(lat)
        st = ing.stats()
        with psycopg.connect(db) as c:
            stored = store.count_messages(c, devices)
            dup_rows = store.duplicate_rows(c)
        return {
            "msgs_per_s": rate,
            "hub_cpu_us_per_msg": hub_cpu_us, "broker_cpu_us_per_msg": broker_cpu_us,
            "sent": sent + paced, "stored": stored,
            "duplicates": st.get("duplicates", 0) + dup_rows,
            "p50_latency_ms": _pct(steady, 0.5), "p95_latency_ms": _pct(steady, 0.95),
            "paced_msgs": paced, "paced_rate": paced_rate,
            "p95_latency_saturated_ms": _pct(saturated, 0.95),
            "batches": st.get("batches", 0),
            "readings_stored": st.get("readings_stored", 0),
        }
    finally:
        ing.stop()


def _pct(xs: list[float], q: float) -> float | None:
    return xs[int(q * (len(xs) - 1))] if xs else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/test",
                    help="server URL; the bench creates and drops its own database")
    ap.add_argument("--mqtt", default=None,
                    help="broker URL; default: a Mosquitto started for the run with the"
                    " project's broker settings (a default Mosquitto queues only 1000"
                    " messages per client and drops QoS 1 messages beyond that)")
    ap.add_argument("--messages", type=int, default=30000)
    ap.add_argument("--naive-messages", type=int, default=1500)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--publishers", type=int, default=3)
    settings = Settings()
    ap.add_argument("--batch-max", type=int, default=settings.batch_max,
                    help="readings per COPY batch, for the hub and store-only"
                    " (default: the hub's HUB_BATCH_MAX)")
    ap.add_argument("--batch-wait-ms", type=int, default=settings.batch_wait_ms)
    ap.add_argument("--paced-rate", type=float, default=0,
                    help="msgs/s of the latency phase; default half the hub's measured"
                    " throughput (a hub with headroom)")
    ap.add_argument("--paced-seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3,
                    help="ceiling and hub are measured alternately this many times; the"
                    " report gives medians (the machine is shared: single runs vary)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    # Killed by a timeout, still drop the bench database and stop the broker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # As a hub process hosting ingest does (hub/node.py); the ceiling's subscriber
    # lives in this process too, so both run under the same collector settings.
    tune_gc()

    tmp = tempfile.TemporaryDirectory(prefix="bench-ingest-")
    broker = parse_mqtt_url(args.mqtt) if args.mqtt else start_mosquitto(Path(tmp.name))
    global BROKER_PID
    BROKER_PID = None if args.mqtt else _pid_of(tmp.name)
    name = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.db, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    db = with_database(args.db, name)
    try:
        migrate(db)
        rounds = []
        store_only: list[dict[str, Any]] = []
        for r in range(max(1, args.rounds)):
            devices = [f"r{r}d{i:04d}" for i in range(args.devices)]
            ceiling = run_ceiling(broker, devices, args.messages, args.publishers)
            only = run_store_only(broker, db, devices, args.messages, args.publishers,
                                  args.batch_max)
            hub = run_hub(broker, db, devices, args.messages, args.publishers, args.batch_max,
                          args.batch_wait_ms, args.paced_rate, args.paced_seconds)
            rounds.append((ceiling, hub))
            store_only.append(only)
            print(f"round {r}: ceiling {ceiling['msgs_per_s']:.0f} msgs/s,"
                  f" store-only {only['msgs_per_s']:.0f} msgs/s,"
                  f" hub {hub['msgs_per_s']:.0f} msgs/s", file=sys.stderr, flush=True)
        naive = run_naive(broker, db, devices, args.naive_messages, args.publishers)
    finally:
        with psycopg.connect(args.db, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        broker.stop()
        tmp.cleanup()
    def med(xs: list[float]) -> float:
        return round(statistics.median(xs), 1)

    ceil_rates = [c["msgs_per_s"] for c, _ in rounds]
    hub_rates = [h["msgs_per_s"] for _, h in rounds]
    hubs = [h for _, h in rounds]
    only_rates = [s["msgs_per_s"] for s in store_only]
    out = {
        "ceiling_msgs_per_s": med(ceil_rates),
        "hub_msgs_per_s": med(hub_rates),
        "naive_msgs_per_s": round(naive["msgs_per_s"], 1),
        "hub_vs_ceiling": round(statistics.median(
            h / c for c, h in zip(ceil_rates, hub_rates, strict=True)), 3),
        "hub_vs_naive": round(statistics.median(hub_rates) / naive["msgs_per_s"], 1),
        "store_only_msgs_per_s": med(only_rates),
        "store_only_vs_ceiling": round(statistics.median(
            s / c for c, s in zip(ceil_rates, only_rates, strict=True)), 3),
        "hub_vs_store_only": round(statistics.median(
            h / s for s, h in zip(only_rates, hub_rates, strict=True)), 3),
        "sent": sum(h["sent"] for h in hubs),
        "stored": sum(h["stored"] for h in hubs),
        "duplicates": sum(h["duplicates"] for h in hubs),
        "p50_latency_ms": med([h["p50_latency_ms"] for h in hubs]),
        "p95_latency_ms": med([h["p95_latency_ms"] for h in hubs]),
        "latency_at_msgs_per_s": med([h["paced_rate"] for h in hubs]),
        "p95_latency_saturated_ms": med([h["p95_latency_saturated_ms"] for h in hubs]),
        "readings_stored": sum(h["readings_stored"] for h in hubs),
        "hub_cpu_us_per_msg": med([h["hub_cpu_us_per_msg"] for h in hubs]),
        "broker_cpu_us_per_msg": med([h["broker_cpu_us_per_msg"] for h in hubs]),
        "rounds": [{"ceiling_msgs_per_s": round(c["msgs_per_s"], 1),
                    "store_only_msgs_per_s": round(s["msgs_per_s"], 1),
                    "hub_msgs_per_s": round(h["msgs_per_s"], 1),
                    "batches": h["batches"]}
                   for (c, h), s in zip(rounds, store_only, strict=True)],
        "store_only_sent": sum(s["sent"] for s in store_only),
        "store_only_stored": sum(s["stored"] for s in store_only),
        "batch_max": args.batch_max,
        "ceiling_received": sum(c["received"] for c, _ in rounds),
        "naive_sent": naive["sent"],
        "naive_stored": naive["stored"],
        "publishers": args.publishers,
        "broker": broker.kind,
    }
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>22}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
