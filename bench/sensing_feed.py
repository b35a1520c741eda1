"""What the sensing feed costs the ingest: ``write_batch`` with and without it.

    python bench/sensing_feed.py [--db URL] [--rounds N] [--messages N] [--json]

Every ingest batch also files its messages in the sensing feed (one row per
partition, docs/architecture.md, *Work owned by lease*). Each round writes one batch
of ``--messages`` telemetry messages (five readings each, over the demo site's
devices) with the feed and one without, in alternating order, into a scratch database
made on the server at ``--db`` (default: the local PostgreSQL, else an embedded
one). Figures are medians over the rounds, in milliseconds per batch, and
``feed_over_plain`` is their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from bench.common import report  # noqa: E402
from hub import services  # noqa: E402
from hub.config import load_site  # noqa: E402
from hub.protocol import Reading, Telemetry  # noqa: E402
from hub.sensing.partitions import partitioner  # noqa: E402
from hub.store.migrations import migrate  # noqa: E402
from hub.store.readings import write_batch  # noqa: E402
from hub.store.sensing_feed import Feed  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default=None, help="a PostgreSQL server URL")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    url = args.db
    if not url and services.tcp_open("127.0.0.1", 5432):
        url = "postgresql://postgres@127.0.0.1:5432/postgres"
    pg = services.ensure_postgres(url, Path(tempfile.mkdtemp(prefix="bench-pg-")))
    name = f"bench_feed_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg.url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    db = services.with_database(pg.url, name)
    try:
        migrate(db)
        site = load_site(REPO / "deploy/sites/demo.yaml")
        feed = Feed(site.site.id, partitioner(site, 16))
        devices = [d.id for d in site.devices]
        t0 = datetime.now(UTC) - timedelta(hours=1)
        seq = 0

        def batch() -> list[tuple[Telemetry, datetime]]:
            nonlocal seq
            out = []
            for i in range(args.messages):
                seq += 1
                out.append((Telemetry(device=devices[i % len(devices)], seq=seq, ts=t0,
                                      readings=[Reading(metric=f"m{j}", value=float(j))
                                                for j in range(5)]), t0))
            return out

        times: dict[str, list[float]] = {"plain": [], "feed": []}
        with psycopg.connect(db, autocommit=True) as conn:
            for r in range(args.rounds):
                for mode in (("plain", "feed") if r % 2 else ("feed", "plain")):
                    b = batch()
                    t = time.perf_counter()
                    write_batch(conn, b, feed=feed if mode == "feed" else None)
                    times[mode].append(time.perf_counter() - t)
        plain = statistics.median(times["plain"]) * 1000
        fed = statistics.median(times["feed"]) * 1000
        report({"messages_per_batch": args.messages, "rounds": args.rounds,
                "write_batch_ms": round(plain, 2), "write_batch_with_feed_ms": round(fed, 2),
                "feed_over_plain": round(fed / plain, 3)}, args.json)
    finally:
        with psycopg.connect(pg.url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        pg.stop()


if __name__ == "__main__":
    main()
