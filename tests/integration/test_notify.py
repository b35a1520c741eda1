"""Delivery: outbox retries with backoff after failures, per-recipient rate limiting
that coalesces the excess into a summary (never drops it), and the scoped live
stream."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path

from fastapi import Request
from fastapi.testclient import TestClient

from hub.api.app import create_app
from hub.api.deps import AppContext, Principal
from hub.clock import ManualClock, SystemClock
from hub.config import ClipsConfig
from hub.domain import Category, Severity
from hub.protocol import alerts_topic
from hub.ratelimit import TokenBuckets
from hub.vision import clipstore
from tests.integration.alerting import (
    GRID1,
    MICRO,
    T0,
    AlertListener,
    HookServer,
    alarm,
    count,
    demo_site,
    pool_for,
    service,
    wait_for,
)

SECRET = "k"


def test_webhook_is_retried_after_two_failures(db_url: str) -> None:
    hook = HookServer(SECRET, fail_first=2)
    with pool_for(db_url) as pool:
        svc = service(pool, SystemClock(), webhook_urls=[hook.url],  # type: ignore[arg-type]
                      webhook_secret=SECRET, retry_base_s=0.2)
        svc.start(applier=False, ticker=False)
        try:
            svc.apply_now([alarm("fl:1", category=Category.FIRE_LANE, severity=Severity.MAJOR)])
            assert wait_for(lambda: len(hook.calls) >= 1, timeout=15), "never delivered"
            assert hook.failures == 2 and all(c["valid"] for c in hook.calls)
            assert wait_for(lambda: count(pool, "SELECT count(*) FROM outbox"
                                          " WHERE delivered_at IS NOT NULL") == 1)
            with pool.connection() as c:
                attempts, err, failed = c.execute(
                    "SELECT attempts, last_error, failed FROM outbox").fetchone()  # type: ignore[misc]
            assert attempts == 3 and err is None and not failed
        finally:
            svc.stop()
            hook.close()


def test_unreachable_webhook_keeps_the_row_and_backs_off(db_url: str) -> None:
    with pool_for(db_url) as pool:
        clock = ManualClock(T0)
        svc = service(pool, clock, webhook_urls=["http://127.0.0.1:9/none"],
                      webhook_secret=SECRET, retry_base_s=2.0)
        svc.apply_now([alarm("fl:1", category=Category.FIRE_LANE, severity=Severity.MAJOR)])
        n = count(pool, "SELECT count(*) FROM outbox")
        assert n >= 1
        assert svc.dispatch_once() == n
        assert svc.dispatch_once() == 0  # backing off: nothing due yet
        clock.advance(2)
        assert svc.dispatch_once() == n  # second try after base_s
        clock.advance(2)
        assert svc.dispatch_once() == 0  # then after 2 * base_s
        clock.advance(2)
        assert svc.dispatch_once() == n
        assert count(pool, "SELECT min(attempts) FROM outbox") == 3
        assert count(pool, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL") == n


def test_flapping_alarm_is_rate_limited_and_coalesced(db_url: str, broker) -> None:  # noqa: ANN001
    app = AlertListener(broker, [alerts_topic(GRID1)])
    with pool_for(db_url) as pool:
        clock = ManualClock(T0)
        svc = service(pool, clock, broker=broker, rate=TokenBuckets(capacity=2, per_s=1 / 60))
        svc.start(applier=False, ticker=False, dispatcher=False)
        key = f"fl:flap-{time.monotonic_ns()}"
        try:
            for i in range(12):  # fire, clear, fire, clear... one second apart
                svc.apply_now([alarm(key, ts=T0 + timedelta(seconds=i), firing=i % 2 == 0,
                                     category=Category.FIRE_LANE, severity=Severity.MAJOR,
                                     grid_code=MICRO)])
                svc.dispatch_once()
                clock.advance(1)
            made = count(pool, "SELECT count(*) FROM outbox")
            assert made == 12  # new, then a cleared/update notification for every flap
            assert wait_for(lambda: len(app.messages) >= 2)
            time.sleep(0.3)
            mine = [m for t, m in app.messages if key in m["title"] or "限流" in m["title"]]
            assert len(mine) == 2, mine  # the bucket's two tokens; the rest wait
            assert count(pool, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL") == 10
            clock.advance(60)  # one token back: everything waiting goes as one summary
            svc.dispatch_once()
            assert wait_for(lambda: len(app.messages) >= 3)
            summary = app.messages[-1][1]
            assert summary["reason"] == "summary" and summary["title"].startswith("10 ")
            assert count(pool, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL") == 0
            assert count(pool, "SELECT count(*) FROM outbox WHERE summary_of = 10") == 10
        finally:
            svc.stop()
            app.close()


def test_critical_new_incident_is_not_held_by_the_rate_limit(db_url: str, broker) -> None:  # noqa: ANN001
    app = AlertListener(broker, [alerts_topic(GRID1)])
    with pool_for(db_url) as pool:
        clock = ManualClock(T0)
        svc = service(pool, clock, broker=broker, rate=TokenBuckets(capacity=1, per_s=1 / 600))
        svc.start(applier=False, ticker=False, dispatcher=False)
        tag = str(time.monotonic_ns())
        try:
            svc.apply_now([alarm(f"fl:{tag}", category=Category.FIRE_LANE,
                                 severity=Severity.MAJOR)])
            svc.dispatch_once()  # spends the only token
            svc.apply_now([alarm(f"sos:{tag}", ts=T0 + timedelta(seconds=1))])
            svc.dispatch_once()
            assert wait_for(lambda: any(f"sos:{tag}" in m["title"] for _, m in app.messages))
        finally:
            svc.stop()
            app.close()


def test_live_stream_is_scoped_to_the_callers_subtree(db_url: str) -> None:
    users = {"w": Principal("9", "viewer", GRID1)}

    def who(request: Request) -> Principal:
        return users[request.headers["x-user"]]

    with pool_for(db_url) as pool:
        svc = service(pool)
        ctx = AppContext(pool=pool, site=svc.site, tree=svc.tree, alerts=svc, principal=who)
        with TestClient(create_app(ctx)) as client:
            def produce() -> None:
                assert wait_for(lambda: svc.broadcaster.clients == 1)
                svc.apply_now([alarm("sos:other", grid_code="1101050010020201")])
                svc.apply_now([alarm("sos:mine", grid_code=MICRO)])

            t = threading.Thread(target=produce)
            t.start()
            got = None
            with client.stream("GET", "/api/stream", headers={"x-user": "w"}) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        got = json.loads(line[6:])
                        break
            t.join(10)
            assert got is not None
            assert got["incident"]["dedup_key"] == "sos:mine"
            assert got["reason"] == "new"


def test_two_dispatchers_deliver_each_row_once(db_url: str) -> None:
    hook = HookServer(SECRET)
    with pool_for(db_url, size=8) as pool:
        clock = ManualClock(T0)
        kw = {"webhook_urls": [hook.url], "webhook_secret": SECRET,
              "rate": TokenBuckets(capacity=1e6, per_s=1e6)}
        a, b = service(pool, clock, **kw), service(pool, clock, **kw)
        a.apply_now([alarm(f"fl:{i}", category=Category.FIRE_LANE, severity=Severity.MAJOR,
                           ts=T0 + timedelta(seconds=i)) for i in range(60)])
        total = count(pool, "SELECT count(*) FROM outbox")
        assert total >= 60
        settled = []

        def run(svc) -> None:  # noqa: ANN001
            n = 0
            while (k := svc.dispatch_once(limit=7)):
                n += k
            settled.append(n)

        ts = [threading.Thread(target=run, args=(s,)) for s in (a, b)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert sum(settled) == total  # no row was taken by both
        ids = [c["body"]["delivery"] for c in hook.calls]
        assert len(ids) == total and len(set(ids)) == total
        hook.close()


def test_broadcaster_replays_missed_events_and_cuts_off_slow_clients() -> None:
    import asyncio

    from hub.alerts.notifiers.sse import Broadcaster

    async def main() -> None:
        hub = Broadcaster(replay=100, queue_size=4)
        e1 = hub.publish("incident", {"n": 1}, GRID1 + "01")
        hub.publish("incident", {"n": 2}, "11010500100202")
        hub.publish("incident", {"n": 3}, GRID1)
        c = hub.subscribe(GRID1, last_event_id=e1.id)
        got = c.queue.get_nowait()
        assert got is not None and got.data == {"n": 3}  # n=2 is outside the scope
        hub.unsubscribe(c)
        slow, fast = hub.subscribe(""), hub.subscribe("")
        seen: list[int] = []

        async def consume() -> None:
            while (ev := await fast.queue.get()) is not None:
                seen.append(ev.data["n"])

        task = asyncio.create_task(consume())
        for i in range(10):
            hub.publish("incident", {"n": 10 + i}, GRID1)
            await asyncio.sleep(0.001)
        assert slow.closed and not fast.closed and hub.clients == 1
        assert seen == list(range(10, 20))  # the slow one held nobody back
        hub.close_all()
        await asyncio.wait_for(task, 1)
        items = []
        while not slow.queue.empty():
            items.append(slow.queue.get_nowait())
        assert items[-1] is None  # the end marker tells the stream to close

    asyncio.run(main())


def test_changes_from_another_process_reach_this_live_stream(db_url: str) -> None:
    """An API replica (no applier) streams what an alert worker elsewhere commits,
    through PostgreSQL's LISTEN/NOTIFY; the worker does not stream its own twice."""
    import asyncio

    with pool_for(db_url, size=6) as pool:
        worker = service(pool).start(applier=False, ticker=False, dispatcher=False)
        replica = service(pool).start(applier=False, ticker=False, dispatcher=False)
        try:
            assert wait_for(replica.relay.ready.is_set) and wait_for(worker.relay.ready.is_set)

            async def main() -> tuple[list, list]:  # type: ignore[type-arg]
                rc = replica.broadcaster.subscribe("")
                wc = worker.broadcaster.subscribe("")
                [r] = await asyncio.to_thread(worker.apply_now, [alarm("sos:relay")])
                assert r.incident is not None
                await asyncio.to_thread(worker.transition, r.incident.id, "register", "op")
                got: list = []  # type: ignore[type-arg]
                while len(got) < 2:
                    ev = await asyncio.wait_for(rc.queue.get(), 10)
                    got.append(ev.data)
                await asyncio.sleep(0.5)
                own = []
                while not wc.queue.empty():
                    own.append(wc.queue.get_nowait().data)  # type: ignore[union-attr]
                return got, own

            got, own = asyncio.run(main())
            assert [g["reason"] for g in got] == ["new", "transition"]
            assert got[1]["action"] == "register"
            assert got[1]["incident"]["state"] == "registered"
            assert len(own) == 2  # published once, directly, not again via the relay
        finally:
            worker.stop()
            replica.stop()


def test_old_deliveries_alarm_records_and_clips_are_purged(db_url: str, tmp_path: Path) -> None:
    hook = HookServer(SECRET)
    # Event clips: fire-lane ones keep the default 30 days, falls 60.
    site = demo_site().model_copy(update={"clips": ClipsConfig(
        retention_days_by_category={"fall": 60})})
    clips = [clipstore.clip_path(cat, "cam-1", T0, cat) for cat in ("fire_lane", "fall")]
    for rel in clips:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"m" * 1000)
    with pool_for(db_url) as pool:
        clock = ManualClock(T0)
        svc = service(pool, clock, webhook_urls=[hook.url], webhook_secret=SECRET,
                      retention_days=30, site=site, data_dir=tmp_path)
        svc.apply_now([alarm("fl:old", category=Category.FIRE_LANE, severity=Severity.MAJOR)])
        svc.dispatch_once()
        n = count(pool, "SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL")
        assert n >= 1
        clock.advance(29 * 86400)
        assert svc.purge() == {"outbox": 0, "alarms": 0, "clips": 0, "clip_bytes": 0}
        clock.advance(2 * 86400)
        assert svc.purge() == {"outbox": n, "alarms": 1, "clips": 1, "clip_bytes": 1000}
        assert count(pool, "SELECT count(*) FROM incidents") == 1  # the record stays
        assert not (tmp_path / clips[0]).exists() and (tmp_path / clips[1]).exists()
        hook.close()
