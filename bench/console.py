"""What the console feels: the incident list with 10,000 incidents in the database,
and a new incident reaching 200 connected live-stream clients.

Everything goes through the real API under uvicorn over HTTP, with real
authentication (cookie sessions), on a scratch database; measured in the same run:

* ``list_p95_ms``        - ``GET /api/incidents`` (first page of 50, the console's
  queries: open ones, by category, by grid, by severity, a deeper keyset page) as an
  operator, 10,000 incidents over 30 days in the table;
* ``naive_list_p95_ms``  - the same pages made the naive way: every incident read
  from the database and filtered, sorted and cut in Python;
* ``sse_fanout_p95_ms``  - from committing a new incident (``AlertService.apply_now``)
  to each of 200 logged-in ``/api/stream`` clients (in a separate process) having
  received it; p95 over every client and incident;
* ``poll_p95_ms``        - the naive alternative to a stream: the same clients polling
  the list every 2 s; time until each saw the new incident.

    python bench/console.py --json [--clients 200] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import percentile, report  # noqa: E402
from hub.alerts.service import AlertService  # noqa: E402
from hub.api.app import create_app  # noqa: E402
from hub.api.deps import AppContext  # noqa: E402
from hub.clock import SystemClock  # noqa: E402
from hub.config import load_site  # noqa: E402
from hub.domain import Alarm, AlarmState, Category, Severity  # noqa: E402
from hub.grid.tree import GridTree  # noqa: E402
from hub.ratelimit import TokenBuckets  # noqa: E402
from hub.services import free_port, with_database  # noqa: E402
from hub.store import incidents as istore  # noqa: E402
from hub.store import users  # noqa: E402
from hub.store.db import open_pool  # noqa: E402
from hub.store.migrations import migrate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEED = 10_000
PASSWORD = "bench-password-1"


def seed(pool: Any, micro: list[str], n: int) -> None:
    """``n`` incidents over 30 days: every category, severity and state."""
    cats = [c.value for c in Category]
    states = ["reported", "registered", "dispatched", "accepted", "handled", "closed",
              "closed", "closed", "cancelled"]
    with pool.connection() as c:
        c.execute(
            """
            INSERT INTO incidents (dedup_key, rule, category, severity, state, title, grid_code,
                                   device_id, opened_at, updated_at, last_alarm_ts, reported_at,
                                   evidence)
            SELECT 'seed:' || i, 'seed', (%(cats)s::text[])[1 + i %% %(nc)s], 1 + i %% 4,
                   (%(states)s::text[])[1 + (i * 7) %% %(ns)s], '示例事件 ' || i,
                   (%(micro)s::text[])[1 + i %% %(nm)s], 'dev-' || (i %% 80),
                   now() - (i * interval '259 seconds'), now(),
                   now() - (i * interval '259 seconds'), now(),
                   jsonb_build_object('share', (i %% 100) / 100.0, 'dwell_s', i %% 300)
            FROM generate_series(0, %(n)s - 1) i
            """,
            {"cats": cats, "nc": len(cats), "states": states, "ns": len(states),
             "micro": micro, "nm": len(micro), "n": n},
        )
        c.execute("ANALYZE incidents")


class Server:
    def __init__(self, ctx: AppContext) -> None:
        import uvicorn

        self.port = free_port()
        cfg = uvicorn.Config(create_app(ctx), host="127.0.0.1", port=self.port,
                             log_level="warning", access_log=False, lifespan="on",
                             backlog=1024, limit_concurrency=2000)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def login(url: str, username: str) -> httpx.Client:
    c = httpx.Client(base_url=url, timeout=30)
    c.post("/api/auth/login", json={"username": username, "password": PASSWORD}
           ).raise_for_status()
    return c


def list_queries(grid: str) -> list[dict[str, Any]]:
    return [{"state": "open", "limit": 50}, {"limit": 50},
            {"category": "fire_lane", "limit": 50}, {"grid": grid, "limit": 50},
            {"min_severity": "critical", "state": "open", "limit": 50}]


def bench_list(c: httpx.Client, grid: str, rounds: int) -> tuple[list[float], int]:
    times: list[float] = []
    qs = list_queries(grid)
    for q in qs:  # warm-up
        c.get("/api/incidents", params=q).raise_for_status()
    n_items = 0
    for _ in range(rounds):
        for q in qs:
            t = time.perf_counter()
            r = c.get("/api/incidents", params=q)
            times.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
            n_items += len(r.json()["items"])
        # a second page by keyset, as the wall's "more" does
        first = c.get("/api/incidents", params={"limit": 50}).json()
        t = time.perf_counter()
        r = c.get("/api/incidents", params={"limit": 50, "cursor": first["next_cursor"]})
        times.append((time.perf_counter() - t) * 1000)
    return times, n_items


def naive_list(pool: Any, grid: str, rounds: int) -> list[float]:
    """The same pages computed by reading everything and filtering in Python."""
    from hub.api.routers.incidents import incident_out

    sev = {"critical": 4}
    times: list[float] = []
    for _ in range(rounds):
        for q in list_queries(grid):
            t = time.perf_counter()
            with pool.connection() as conn:
                all_, _ = istore.list_incidents(conn, istore.Filters(), limit=10**9)
            rows = [i for i in all_
                    if (q.get("state") != "open" or i.state.is_open)
                    and (q.get("category") is None or i.category.value == q["category"])
                    and (q.get("grid") is None or (i.grid_code or "").startswith(q["grid"]))
                    and (q.get("min_severity") is None
                         or int(i.severity) >= sev[q["min_severity"]])]
            rows.sort(key=lambda i: (i.opened_at, i.id), reverse=True)
            json.dumps([incident_out(i).model_dump(mode="json") for i in rows[:50]])
            times.append((time.perf_counter() - t) * 1000)
    return times


# ------------------------------------------------------------------ live stream clients


async def _clients(url: str, cookies: list[dict[str, str]], out: Any, ready: Any,
                   done: Any, mode: str, poll_s: float) -> None:
    lock = asyncio.Lock()

    async def sse(i: int, jar: dict[str, str]) -> None:
        async with httpx.AsyncClient(base_url=url, cookies=jar, timeout=None) as c:
            async with c.stream("GET", "/api/stream") as r:
                r.raise_for_status()
                async with lock:
                    ready.value += 1
                async for line in r.aiter_lines():
                    if line.startswith("data:") and '"bench:' in line:
                        now = time.time()
                        inc = json.loads(line[5:])["incident"]
                        out.put((i, inc["dedup_key"], now))
                    if done.is_set():
                        return

    async def poll(i: int, jar: dict[str, str]) -> None:
        known: set[str] = set()
        first = True
        async with httpx.AsyncClient(base_url=url, cookies=jar, timeout=30) as c:
            await asyncio.sleep(poll_s * i / len(cookies))  # spread the polls
            while not done.is_set():
                r = await c.get("/api/incidents", params={"state": "open", "limit": 50})
                now = time.time()
                keys = {x["dedup_key"] for x in r.json()["items"]
                        if x["dedup_key"].startswith("bench:")}
                for k in keys - known:
                    if not first:
                        out.put((i, k, now))
                known |= keys
                if first:
                    first = False
                    async with lock:
                        ready.value += 1
                await asyncio.sleep(poll_s)

    tasks = [asyncio.create_task((sse if mode == "sse" else poll)(i, jar))
             for i, jar in enumerate(cookies)]
    while not done.is_set():
        await asyncio.sleep(0.1)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _client_proc(url: str, cookies: list[dict[str, str]], out: Any, ready: Any, done: Any,
                 mode: str, poll_s: float) -> None:
    asyncio.run(_clients(url, cookies, out, ready, done, mode, poll_s))


def fanout(svc: AlertService, url: str, cookies: list[dict[str, str]], micro: list[str],
           n_incidents: int, mode: str, poll_s: float = 2.0, gap_s: float = 0.5
           ) -> dict[str, Any]:
    out: Any = mp.Queue()
    ready = mp.Value("i", 0)
    done = mp.Event()
    proc = mp.Process(target=_client_proc, args=(url, cookies, out, ready, done, mode, poll_s),
                      daemon=True)
    proc.start()
    deadline = time.monotonic() + 60
    while ready.value < len(cookies) and time.monotonic() < deadline:
        time.sleep(0.05)
    connected = ready.value
    sent: dict[str, float] = {}
    tag = uuid.uuid4().hex[:6]
    for k in range(n_incidents):
        key = f"bench:{mode}:{tag}:{k}"
        a = Alarm(rule="sos", category=Category.SOS, severity=Severity.CRITICAL,
                  state=AlarmState.FIRING, dedup_key=key, ts=datetime.now(UTC),
                  title=f"bench {k}", grid_code=micro[k % len(micro)])
        sent[key] = time.time()
        svc.apply_now([a])
        time.sleep(gap_s)
    lat: list[float] = []
    got = 0
    want = len(sent) * connected
    end = time.monotonic() + (poll_s * 3 if mode == "poll" else 10)
    while got < want and time.monotonic() < end:
        try:
            _i, key, t = out.get(timeout=0.5)
        except Exception:  # noqa: BLE001 - queue.Empty from another module
            continue
        if key in sent:
            got += 1
            lat.append((t - sent[key]) * 1000)
    done.set()
    proc.join(10)
    if proc.is_alive():
        proc.kill()
    return {"clients": connected, "incidents": len(sent), "deliveries": got,
            "expected": want, "p50_ms": round(percentile(lat, 0.5), 1),
            "p95_ms": round(percentile(lat, 0.95), 1),
            "max_ms": round(max(lat), 1) if lat else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=40, help="rounds of the list queries")
    ap.add_argument("--incidents", type=int, default=20, help="new incidents for the fan-out")
    ap.add_argument("--no-poll", action="store_true", help="skip the polling comparison")
    ap.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/test",
                    help="server to create a scratch database on")
    args = ap.parse_args(argv)

    site = load_site(REPO / "deploy" / "sites" / "demo.yaml")
    tree = GridTree.from_site(site)
    micro = sorted(c for c in tree.units if len(c) == 16)
    grid = sorted({c[:14] for c in micro})[0]
    name = f"bench_console_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.db, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = with_database(args.db, name)
    out: dict[str, Any] = {}
    server = None
    try:
        migrate(url)
        pool = open_pool(url, 4, 20, name="bench-console")
        seed(pool, micro, SEED)
        with pool.connection() as conn:
            users.create_user(conn, "operator", PASSWORD, "operator", site.grid.code)
            for i in range(args.clients):
                users.create_user(conn, f"viewer{i}", PASSWORD, "viewer",
                                  micro[i % len(micro)][:12])
        wide = TokenBuckets(capacity=1e9, per_s=1e9)
        svc = AlertService(pool, site, tree, SystemClock(), rate=wide)
        svc.start(ticker=False, dispatcher=False)
        ctx = AppContext(pool=pool, site=site, tree=tree, alerts=svc, data_dir=Path("var"))
        server = Server(ctx)

        op = login(server.url, "operator")
        list_times, _items = bench_list(op, grid, args.rounds)
        naive_times = naive_list(pool, grid, max(3, args.rounds // 8))
        cookies = [dict(login(server.url, f"viewer{i}").cookies)
                   for i in range(args.clients)]
        sse = fanout(svc, server.url, cookies, micro, args.incidents, "sse")
        poll = None if args.no_poll else fanout(svc, server.url, cookies, micro,
                                                max(3, args.incidents // 4), "poll")
        with pool.connection() as conn:
            total = conn.execute("SELECT count(*) FROM incidents").fetchone()[0]  # type: ignore[index]
        out = {
            "list_p95_ms": round(percentile(list_times, 0.95), 1),
            "list_p50_ms": round(statistics.median(list_times), 1),
            "naive_list_p95_ms": round(percentile(naive_times, 0.95), 1),
            "list_speedup_vs_naive": round(
                percentile(naive_times, 0.95) / percentile(list_times, 0.95), 1),
            "list_requests": len(list_times),
            "incidents_in_db": total,
            "sse_fanout_p95_ms": sse["p95_ms"],
            "sse": sse,
            "poll_p95_ms": poll["p95_ms"] if poll else None,
            "poll": poll,
            "targets": {"list_p95_ms": "<= 100", "sse_fanout_p95_ms": "<= 1000"},
        }
        svc.stop()
    finally:
        if server is not None:
            server.stop()
        with psycopg.connect(args.db, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    report(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
