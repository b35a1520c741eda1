"""Reach: how fast an alarm becomes a push message on a grid worker's phone, and that
none is lost while the push service is away.

The hub's real alert service (applier, outbox, dispatcher, the Web Push notifier:
RFC 8291 encryption and a VAPID signature per message) on a scratch database, with
``--workers`` (200) grid workers added to the demo site's grids, each logged in with
one push subscription whose endpoint is a local push service
(``hubtools.pushrecv``: it checks every VAPID JWT and decrypts every payload).

* ``push_p95_ms`` - alarms offered at ``--rate`` a second through
  ``AlertService.on_alarm``; from each alarm to each of its pushes arriving,
  decrypted, at the endpoint (every worker of the alarm's grid is told);
* the outage - the push service stops (connections refused) for ``--outage-s``
  (60) while alarms keep coming, then starts again on the same port: every push
  the outbox holds must arrive (``outage_lost`` = 0) and ``outage_recovered_s`` says
  how long after the restart the last one did (the outbox's backoff).

    python bench/reach.py --json [--workers 200] [--alarms 60] [--outage-s 60]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import percentile, report  # noqa: E402
from hub.alerts.service import AlertService  # noqa: E402
from hub.clock import SystemClock  # noqa: E402
from hub.config import Person, RoleAssignment, Site, load_site  # noqa: E402
from hub.domain import Alarm, AlarmState, Category, Severity  # noqa: E402
from hub.grid.tree import GridTree  # noqa: E402
from hub.ratelimit import TokenBuckets  # noqa: E402
from hub.services import with_database  # noqa: E402
from hub.store import push, users  # noqa: E402
from hub.store.db import open_pool  # noqa: E402
from hub.store.migrations import migrate  # noqa: E402
from hubtools.pushrecv import PushService  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
_TITLE = re.compile(r"#\d+ (reach .*)$")


def site_with_workers(n: int) -> tuple[Site, list[str]]:
    site = load_site(REPO / "deploy" / "sites" / "demo.yaml")
    grids = sorted({r.unit for p in site.people for r in p.roles if r.role == "grid_worker"})
    people = [Person(id=f"bw-{i:03d}", name=f"网格员{i}",
                     roles=[RoleAssignment(role="grid_worker", unit=grids[i % len(grids)])])
              for i in range(n)]
    return site.model_copy(update={"people": [*site.people, *people]}), grids


def subscribe(pool: Any, recv: PushService, n: int) -> None:
    with pool.connection() as conn:
        for i in range(n):
            uid = users.create_user(conn, f"bw-{i:03d}", "bench-password-123456", "grid_worker",
                                    "110105", person_id=f"bw-{i:03d}").id
            s = recv.phone(f"bw-{i:03d}").subscription(recv.url)
            push.save(conn, uid, None, s["endpoint"], s["keys"]["p256dh"], s["keys"]["auth"])


def offer(svc: AlertService, grids: list[str], n: int, rate: float, tag: str
          ) -> dict[str, float]:
    """``n`` fire-lane alarms at ``rate`` a second (open loop); their send times by title."""
    sent: dict[str, float] = {}
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        title = f"reach {tag} {i}"
        sent[title] = time.time()
        svc.on_alarm(Alarm(rule="firelane", category=Category.FIRE_LANE,
                           severity=Severity.MAJOR, state=AlarmState.FIRING,
                           dedup_key=f"reach:{tag}:{i}", ts=datetime.now(UTC), title=title,
                           grid_code=grids[i % len(grids)]))
    return sent


def expected(pool: Any, tag: str) -> int:
    with pool.connection() as c:
        row = c.execute("SELECT count(*) FROM outbox WHERE channel = 'webpush'"
                        " AND recipient LIKE 'bw-%%' AND payload->'note'->>'title' LIKE %s",
                        (f"reach {tag} %",)).fetchone()
    return int(row[0]) if row else 0


def arrivals(recv: PushService, sent: dict[str, float]) -> dict[tuple[str, str], float]:
    """The first arrival of each (alarm, phone); a redelivery counts once."""
    out: dict[tuple[str, str], float] = {}
    for r in list(recv.received):
        m = _TITLE.search(str(r.payload.get("title", "")))
        if m and m.group(1) in sent:
            out.setdefault((m.group(1), r.phone), r.at)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--workers", type=int, default=200)
    ap.add_argument("--alarms", type=int, default=60)
    ap.add_argument("--rate", type=float, default=2.0, help="offered alarms/s")
    ap.add_argument("--outage-s", type=float, default=60.0)
    ap.add_argument("--outage-alarms", type=int, default=10)
    ap.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/test",
                    help="server to create a scratch database on")
    args = ap.parse_args(argv)

    site, grids = site_with_workers(args.workers)
    tree = GridTree.from_site(site)
    name = f"bench_reach_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.db, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = with_database(args.db, name)
    out: dict[str, Any] = {}
    recv = PushService().start()
    try:
        migrate(url)
        pool = open_pool(url, 2, 12, name="bench-reach")
        # Generous limits: this measures the path, not the per-phone rate limit.
        svc = AlertService(pool, site, tree, SystemClock(), rate=TokenBuckets(1e9, 1e9),
                           data_dir=Path(tempfile.mkdtemp(prefix="bench-reach-")))
        recv.hub_key = svc.webpush.keys.public_key
        subscribe(pool, recv, args.workers)
        svc.start(ticker=False)

        sent = offer(svc, grids, args.alarms, args.rate, "live")
        want = expected(pool, "live")
        end = time.monotonic() + 60
        while time.monotonic() < end and len(arrivals(recv, sent)) < want:
            time.sleep(0.1)
        got = arrivals(recv, sent)
        ms = [(at - sent[t]) * 1000 for (t, _), at in got.items()]

        recv.stop()  # the push service is away
        down_at = time.time()
        sent2 = offer(svc, grids, args.outage_alarms,
                      max(args.outage_alarms / max(args.outage_s, 1.0), 0.1), "outage")
        time.sleep(max(0.0, down_at + args.outage_s - time.time()))
        before = len(recv.received)
        recv.start()
        back_at = time.time()
        want2 = expected(pool, "outage")
        end = time.monotonic() + 300
        while time.monotonic() < end and len(arrivals(recv, sent2)) < want2:
            time.sleep(0.2)
        got2 = arrivals(recv, sent2)
        svc.stop()
        pool.close()
        out = {
            "push_p95_ms": round(percentile(ms, 0.95), 1),
            "push_p50_ms": round(percentile(ms, 0.5), 1),
            "push_max_ms": round(max(ms), 1) if ms else None,
            "pushes": len(ms),
            "pushes_expected": want,
            "workers": args.workers,
            "alarms": args.alarms,
            "offered_alarms_per_s": args.rate,
            "outage_s": args.outage_s,
            "outage_pushes_expected": want2,
            "outage_pushes_delivered": len(got2),
            "outage_delivered_while_down": before - len(got),
            "outage_lost": want2 - len(got2),
            "outage_recovered_s": round(max(got2.values()) - back_at, 1) if got2 else None,
            "refused": len(recv.refused),
            "targets": {"push_p95_ms": "<= 1000", "outage_lost": "0"},
        }
    finally:
        recv.stop()
        with psycopg.connect(args.db, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    report(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
