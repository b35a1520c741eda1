"""The notification rate limit's token buckets: the hand-written ones the hub had
against pyrate-limiter's, which replaced them, in the same run.

    python bench/ratelimit.py [--rounds N] [--calls N] [--json]

First both are fed one random trace (recipients, times, takes and next_free questions)
and every answer is compared: they must agree, to the millisecond. Then each path the
outbox dispatcher uses is timed, old and new interleaved round by round so both see the
same machine load; the figures are medians over the rounds of microseconds per call:

- ``take_ok``: a take that gets a token (a recipient with room, most deliveries);
- ``take_refused``: a take on an empty bucket (a flapping alarm's recipient);
- ``next_free``: when that recipient's next token comes (asked once per held group);
- ``dispatch_500``: one dispatcher pass's worth of takes (500 outbox rows over 50
  recipients, as ``AlertService.dispatch_once`` leases at most).

With ``--db URL`` (a PostgreSQL server to make a scratch database on) it also times the
whole of ``AlertService.dispatch_once`` on 500 due outbox rows, old and new interleaved,
each pass with fresh buckets of the hub's default limit (5 at once, one a minute) and
real MQTT publishes (``--mqtt URL``, or the local/embedded broker): the figure that
says whether the rate limit's cost shows where it is paid.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import report  # noqa: E402
from hub.ratelimit import TokenBuckets  # noqa: E402

# -- the hand-written buckets as the hub had them (hub/ratelimit.py
#    before pyrate-limiter), kept here only as the baseline ----------------------------

@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class HandWrittenBuckets:
    def __init__(self, capacity: float = 5, per_s: float = 1 / 60) -> None:
        self.capacity = float(capacity)
        self.per_s = float(per_s)
        self._b: dict[str, _Bucket] = {}

    def _refill(self, key: str, now: float) -> _Bucket:
        b = self._b.get(key)
        if b is None:
            b = self._b[key] = _Bucket(self.capacity, now)
        elif now > b.at:
            b.tokens = min(self.capacity, b.tokens + (now - b.at) * self.per_s)
            b.at = now
        return b

    def take(self, key: str, now: float) -> bool:
        b = self._refill(key, now)
        if b.tokens >= 1:
            b.tokens -= 1
            return True
        return False

    def next_free(self, key: str, now: float) -> float:
        b = self._refill(key, now)
        if b.tokens >= 1:
            return now
        return now + (1 - b.tokens) / self.per_s


# -- agreement --------------------------------------------------------------------------

def agreement(seed: int = 7, steps: int = 20_000) -> dict[str, Any]:
    """Both on one random trace in whole milliseconds, many of them exactly on a refill
    instant: every take must agree and every next_free to the millisecond, except where
    the old float arithmetic lands a hair's breadth short of a whole token on the very
    instant of a refill (counted as ``at_refill_instant``; the key then starts afresh in
    both so the trace goes on in step). Anything else fails."""
    rng = random.Random(seed)
    old, new = HandWrittenBuckets(3, 1 / 60), TokenBuckets(3, 1 / 60)
    now = 1_772_352_000.0
    takes = waits = at_instant = 0
    for _ in range(steps):
        now = round(now + rng.choice((0, 0, 0.001, 0.5, 1, 7, 20, 59.999, 60, 61, 300)) / 3, 3)
        key = f"w{rng.randrange(20)}"
        if rng.random() < 0.8:
            a, b = old.take(key, now), new.take(key, now)
            takes += 1
            if a == b:
                continue
            tokens = old._b[key].tokens
            if abs(tokens - round(tokens)) > 1e-9:
                raise AssertionError(f"take disagrees at {now} for {key}: {a} != {b}")
            at_instant += 1
            old._b.pop(key)
            new._b.pop(key)
        else:
            a, b = old.next_free(key, now), new.next_free(key, now)
            if abs(a - b) > 0.0015:
                raise AssertionError(f"next_free disagrees at {now} for {key}: {a} != {b}")
            waits += 1
    return {"takes": takes, "next_free": waits, "at_refill_instant": at_instant}


# -- timing -----------------------------------------------------------------------------

def _per_call_us(fn: Callable[[], None], calls: int) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) / calls * 1e6


def _cases(make: Callable[..., Any], calls: int) -> dict[str, Callable[[], float]]:
    now = 1_772_352_000.0

    def take_ok() -> float:
        tb = make(capacity=1e9, per_s=1e6)
        keys = [f"w{i % 50}" for i in range(calls)]
        return _per_call_us(lambda: [tb.take(k, now + i * 1e-3) for i, k in enumerate(keys)],
                            calls)

    def take_refused() -> float:
        tb = make(capacity=1, per_s=1 / 60)
        tb.take("w", now)
        return _per_call_us(lambda: [tb.take("w", now + i * 1e-3) for i in range(calls)], calls)

    def next_free() -> float:
        tb = make(capacity=1, per_s=1 / 60)
        tb.take("w", now)
        return _per_call_us(lambda: [tb.next_free("w", now + i * 1e-3) for i in range(calls)],
                            calls)

    def dispatch_500() -> float:
        tb = make(capacity=5, per_s=1 / 60)
        keys = [f"w{i % 50}" for i in range(500)]
        passes = max(1, calls // 500)

        def run() -> None:
            for p in range(passes):
                for k in keys:
                    tb.take(k, now + p)
        return _per_call_us(run, passes)

    return {"take_ok": take_ok, "take_refused": take_refused, "next_free": next_free,
            "dispatch_500": dispatch_500}


def dispatch_passes(db: str, mqtt_url: str | None, rounds: int,
                    impls: dict[str, Callable[..., Any]]) -> dict[str, Any]:
    """Milliseconds of ``dispatch_once`` on the same 500 due rows, per implementation."""
    import tempfile
    import uuid
    from datetime import UTC, datetime, timedelta

    import psycopg

    from hub.alerts.service import AlertService
    from hub.clock import SystemClock
    from hub.config import load_site
    from hub.domain import Alarm, AlarmState, Category, Severity
    from hub.grid.tree import GridTree
    from hub.services import ensure_broker, tcp_open, with_database
    from hub.store.db import open_pool
    from hub.store.migrations import migrate

    site = load_site(Path(__file__).resolve().parents[1] / "deploy" / "sites" / "demo.yaml")
    tree = GridTree.from_site(site)
    micro = [c for c in tree.units if len(c) == 16]
    mqtt_url = mqtt_url or ("mqtt://127.0.0.1:1883" if tcp_open("127.0.0.1", 1883) else None)
    broker = ensure_broker(mqtt_url, Path(tempfile.mkdtemp(prefix="bench-ratelimit-")))
    name = f"bench_ratelimit_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = with_database(db, name)
    times: dict[str, list[float]] = {n: [] for n in impls}
    try:
        migrate(url)
        pool = open_pool(url, 2, 4, name="bench-ratelimit")
        t0 = datetime.now(UTC)
        AlertService(pool, site, tree, SystemClock(), broker=broker).apply_now([
            Alarm(rule="firelane", category=Category.FIRE_LANE, severity=Severity.MAJOR,
                  state=AlarmState.FIRING, dedup_key=f"bench:{i}", title=f"bench {i}",
                  ts=t0 + timedelta(milliseconds=i), grid_code=micro[i % len(micro)])
            for i in range(500)])
        with pool.connection() as c:
            rows, recipients = c.execute(
                "SELECT count(*), count(DISTINCT recipient) FROM outbox").fetchone()  # type: ignore[misc]
        for _ in range(rounds):
            for n, make in impls.items():
                with pool.connection() as c:  # the same rows due again, nothing delivered
                    c.execute("UPDATE outbox SET delivered_at = NULL, attempts = 0,"
                              " summary_of = NULL, failed = false,"
                              " next_attempt_at = now() - interval '1 second'")
                svc = AlertService(pool, site, tree, SystemClock(), broker=broker,
                                   rate=make(capacity=5, per_s=1 / 60))
                svc.start(applier=False, ticker=False, dispatcher=False)
                try:
                    t = time.perf_counter()
                    svc.dispatch_once(limit=500)
                    times[n].append((time.perf_counter() - t) * 1000)
                finally:
                    svc.stop()
        pool.close()
    finally:
        with psycopg.connect(db, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        broker.stop()
    out: dict[str, Any] = {"rows": rows, "recipients": recipients}
    for n, v in times.items():
        out[f"{n}_ms"] = round(statistics.median(v), 2)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--db", default=None,
                    help="PostgreSQL server for the dispatch_once figure (skipped without)")
    ap.add_argument("--mqtt", default=None, help="broker URL (default: local or embedded)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    out: dict[str, Any] = {"agreement": agreement()}
    impls = {"hand_written": HandWrittenBuckets, "pyrate_limiter": TokenBuckets}
    samples: dict[str, dict[str, list[float]]] = {n: {} for n in impls}
    for _ in range(a.rounds):
        for name, make in impls.items():  # interleaved: both see the same load
            for case, fn in _cases(make, a.calls).items():
                samples[name].setdefault(case, []).append(fn())
    for name, cases in samples.items():
        out[f"{name}_us"] = {c: round(statistics.median(v), 3) for c, v in cases.items()}
    old, new = out["hand_written_us"], out["pyrate_limiter_us"]
    out["new_over_old"] = {c: round(new[c] / old[c], 2) for c in old}
    if a.db:
        out["dispatch_once_500_rows"] = dispatch_passes(a.db, a.mqtt, a.rounds, impls)
    report(out, a.json)


if __name__ == "__main__":
    main()
