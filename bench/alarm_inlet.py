"""The durable alarm inlet: how long an alarm takes from a detector's publish to its
incident committed and its message acknowledged, and how many a burst gets through.

    python bench/alarm_inlet.py [--db URL] [--mqtt URL] [--alarms N] [--burst N] [--json]

A publisher (``hub.alarmbus``, as a vision worker has) and an alert worker's inlet
(``hub.alerts.inlet`` over an ``AlertService``) each on their own connection to the
broker (``--mqtt``, default 127.0.0.1:1883), against a scratch database made on the
PostgreSQL server ``--db`` (default 127.0.0.1:5432). Figures:

- ``alarm_to_ack_ms_p50`` / ``_p95``: one alarm at a time (``--alarms``), from
  ``publish`` to the inlet's acknowledgement after the commit (a new incident each);
- ``burst_alarms_per_s``: ``--burst`` new incidents published at once, until all are
  acknowledged.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
import yaml  # noqa: E402

from bench.common import percentile, report  # noqa: E402
from hub.alarmbus import AlarmPublisher  # noqa: E402
from hub.alerts.inlet import AlarmInlet  # noqa: E402
from hub.alerts.service import AlertService  # noqa: E402
from hub.clock import SystemClock  # noqa: E402
from hub.config import Site  # noqa: E402
from hub.domain import Alarm, AlarmState, Severity  # noqa: E402
from hub.grid.tree import GridTree  # noqa: E402
from hub.mqtt import MqttConnection  # noqa: E402
from hub.services import parse_mqtt_url, with_database  # noqa: E402
from hub.store.db import open_pool  # noqa: E402
from hub.store.migrations import migrate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CAM = "cam-b3-lane"


def _alarm(i: int) -> Alarm:
    return Alarm(rule="fall", category="fall", severity=Severity.CRITICAL,
                 state=AlarmState.FIRING, dedup_key=f"fall:{CAM}:bench{i}",
                 ts=datetime.now(UTC), title="bench fall", device_id=CAM)


def _acked(inlet: AlarmInlet) -> int:
    return int(inlet.stats().get("acked", 0))


def run(db_server: str, mqtt_url: str, alarms: int, burst: int) -> dict[str, Any]:
    raw = yaml.safe_load((REPO / "deploy/sites/demo.yaml").read_text(encoding="utf-8"))
    site_id = f"bench{uuid.uuid4().hex[:8]}"
    raw["site"]["id"] = site_id
    site = Site.model_validate(raw)
    name = f"hub_bench_inlet_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_server, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    db = with_database(db_server, name)
    broker = parse_mqtt_url(mqtt_url)
    try:
        migrate(db)
        pool = open_pool(db, 1, 4, name="bench-inlet")
        svc = AlertService(pool, site, GridTree.from_site(site), SystemClock())
        alerts = MqttConnection(broker, f"hub-bench-a-{site_id}", persistent_session=True,
                                receive_maximum=1000, session_expiry_s=60)
        inlet = AlarmInlet(alerts, site, SystemClock(), svc.apply_now,
                           shared_group=f"g{site_id}", categories=lambda: site.registry)
        inlet.start()
        alerts.start()
        if not inlet.wait_ready(10):
            raise SystemExit("the inlet's subscription was not acknowledged")
        det = MqttConnection(broker, f"hub-bench-v-{site_id}").start()
        det.wait_connected(10)
        pub = AlarmPublisher(det, site_id).start()
        lat: list[float] = []
        for i in range(alarms):
            n = _acked(inlet)
            t = time.perf_counter()
            pub.publish(_alarm(i))
            while _acked(inlet) <= n:
                time.sleep(0.0005)
            lat.append((time.perf_counter() - t) * 1000)
        n = _acked(inlet)
        t = time.perf_counter()
        for i in range(burst):
            pub.publish(_alarm(alarms + i))
        while _acked(inlet) < n + burst:
            time.sleep(0.002)
        burst_s = time.perf_counter() - t
        pub.stop()
        det.stop()
        inlet.stop()
        alerts.stop()
        svc.stop()
        with pool.connection() as c:
            row = c.execute("SELECT count(*) FROM incidents").fetchone()
        pool.close()
        return {"alarms": alarms, "alarm_to_ack_ms_p50": round(statistics.median(lat), 1),
                "alarm_to_ack_ms_p95": round(percentile(lat, 0.95), 1),
                "burst": burst, "burst_s": round(burst_s, 2),
                "burst_alarms_per_s": round(burst / burst_s),
                "incidents": int(row[0]) if row else 0}
    finally:
        with psycopg.connect(db_server, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    p.add_argument("--alarms", type=int, default=40)
    p.add_argument("--burst", type=int, default=500)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    report(run(a.db, a.mqtt, a.alarms, a.burst), a.json)


if __name__ == "__main__":
    main()
