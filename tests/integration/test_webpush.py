"""Web Push through the outbox on real PostgreSQL, to a local push service that
checks the VAPID JWT and decrypts the RFC 8291 payload (hubtools.pushrecv):
re-notification of a critical life-safety incident on the hub's clock, to the
second, until it is accepted; a 410 removes the subscription; a push service that
is down gets everything once it is back."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg_pool import ConnectionPool

from hub.alerts.service import AlertService
from hub.clock import ManualClock
from hub.domain import Category, Severity
from hub.store import push, users
from hubtools.pushrecv import PushService
from tests.e2e.live import running_hub
from tests.integration.alerting import GRID1, T0, alarm, count, pool_for, service

WORKER = "wang-wei"  # GRID1's grid worker in the demo site


def _subscribe(pool: ConnectionPool, svc: AlertService, recv: PushService, name: str) -> int:
    with pool.connection() as conn:
        uid = users.create_user(conn, f"u-{name}", "a-long-test-password-1", "grid_worker",
                                GRID1, person_id=WORKER).id
        sub = recv.phone(name).subscription(recv.url)
        push.save(conn, uid, None, sub["endpoint"], sub["keys"]["p256dh"], sub["keys"]["auth"])
    return uid


def _svc(pool: ConnectionPool, clock: ManualClock, tmp_path: Path) -> AlertService:
    return service(pool, clock, data_dir=tmp_path)


@pytest.fixture(autouse=True)
def _renotify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_PUSH_RENOTIFY_S", "300")
    monkeypatch.setenv("HUB_PUSH_RENOTIFY_TIMES", "2")


def _mine(recv: PushService) -> list[int]:
    return [r.payload["again"] for r in recv.received if r.phone == "p1"]


def test_critical_sos_renotifies_every_300_s_at_most_twice(db_url: str, tmp_path: Path) -> None:
    with pool_for(db_url) as pool:
        clock = ManualClock(T0)
        svc = _svc(pool, clock, tmp_path)
        recv = PushService(hub_key=svc.webpush.keys.public_key).start()
        try:
            _subscribe(pool, svc, recv, "p1")
            svc.apply_now([alarm("sos:renotify")])
            svc.dispatch_once()
            assert _mine(recv) == [0]
            first = recv.received[0]
            assert first.payload["requireInteraction"] and first.payload["renotify"]
            assert first.payload["vibrate"][0] >= 200
            assert first.claims["aud"] == recv.url and first.headers["urgency"] == "high"
            clock.advance(299)
            svc.dispatch_once()
            assert _mine(recv) == [0]  # one second early: nothing
            clock.advance(1)
            svc.dispatch_once()
            assert _mine(recv) == [0, 1]
            clock.advance(300)
            svc.dispatch_once()
            assert _mine(recv) == [0, 1, 2]
            clock.advance(3000)
            svc.dispatch_once()
            assert _mine(recv) == [0, 1, 2]  # bounded: HUB_PUSH_RENOTIFY_TIMES
            assert not recv.refused
        finally:
            recv.stop()
            svc.stop()


def test_renotification_stops_once_accepted(db_url: str, tmp_path: Path) -> None:
    with pool_for(db_url) as pool:
        clock = ManualClock(T0)
        svc = _svc(pool, clock, tmp_path)
        recv = PushService(hub_key=svc.webpush.keys.public_key).start()
        try:
            _subscribe(pool, svc, recv, "p1")
            svc.apply_now([alarm("sos:accepted")])
            svc.dispatch_once()
            iid = recv.received[0].payload["incident_id"]
            svc.transition(iid, "register", "operator")
            svc.transition(iid, "dispatch", "operator", assignee=WORKER)
            svc.dispatch_once()  # "dispatched to me"
            assert [r.payload["reason"] for r in recv.received] == ["new", "transition"]
            clock.advance(300)
            svc.dispatch_once()  # the "new" one moved on (registered); the dispatch rings
            assert [(r.payload["reason"], r.payload["again"]) for r in recv.received][2:] == [
                ("transition", 1)]
            svc.transition(iid, "accept", WORKER)
            clock.advance(300)
            svc.dispatch_once()
            assert len(recv.received) == 3
            assert count(pool, "SELECT count(*) FROM outbox WHERE channel = 'webpush'"
                               " AND delivered_at IS NULL") == 0
        finally:
            recv.stop()
            svc.stop()


def test_gone_subscription_is_removed(db_url: str, tmp_path: Path) -> None:
    with pool_for(db_url) as pool:
        svc = _svc(pool, ManualClock(T0), tmp_path)
        recv = PushService(hub_key=svc.webpush.keys.public_key).start()
        try:
            _subscribe(pool, svc, recv, "p1")
            recv.gone.add("p1")
            svc.apply_now([alarm("fl:gone", category=Category.FIRE_LANE,
                                 severity=Severity.MAJOR)])
            svc.dispatch_once()
            assert count(pool, "SELECT count(*) FROM push_subscriptions") == 0
            # Nothing left to retry for a phone that is gone.
            assert count(pool, "SELECT count(*) FROM outbox WHERE channel = 'webpush'"
                               " AND delivered_at IS NULL") == 0
        finally:
            recv.stop()
            svc.stop()


def test_push_service_down_then_back_loses_nothing(db_url: str, tmp_path: Path) -> None:
    with pool_for(db_url) as pool:
        clock = ManualClock(T0)
        svc = service(pool, clock, data_dir=tmp_path, retry_base_s=2.0)
        recv = PushService(hub_key=svc.webpush.keys.public_key).start()
        try:
            _subscribe(pool, svc, recv, "p1")
            recv.stop()  # down: connections refused
            for i in range(3):
                svc.apply_now([alarm(f"fl:down{i}", ts=T0 + timedelta(seconds=i),
                                     category=Category.FIRE_LANE, severity=Severity.MAJOR)])
            svc.dispatch_once()
            with pool.connection() as conn:
                err = conn.execute("SELECT last_error FROM push_subscriptions").fetchone()
            assert err is not None and "Connection" in err[0]
            recv.start()  # the same port
            clock.advance(2)
            svc.dispatch_once()
            # Each alarm arrives, on its own or in the rate limit's summary.
            shown = " ".join(r.payload["title"] + " " + r.payload["body"] for r in recv.received)
            assert all(f"fl:down{i}" in shown for i in range(3)), shown
            assert count(pool, "SELECT count(*) FROM outbox WHERE channel = 'webpush'"
                               " AND delivered_at IS NULL") == 0
        finally:
            recv.stop()
            svc.stop()


def test_subscription_api_refuses_bad_input_and_logout_removes(db_url: str, broker: Any,
                                                                site_id: str,
                                                                tmp_path: Path) -> None:
    with running_hub(db_url, broker, site_id, tmp_path) as hub:
        c = hub.session(WORKER)
        key = c.get("/api/push/key").json()["public_key"]
        assert len(key) == 87
        good = PushService().phone("x").subscription("https://push.example.org")
        bad = [
            {**good, "endpoint": "ftp://push.example.org/x"},
            {**good, "keys": {**good["keys"], "p256dh": good["keys"]["p256dh"][:40]}},
            {**good, "keys": {**good["keys"], "auth": "not base64 !"}},
            {**good, "endpoint": "https://p.example.org/" + "a" * 3000},
            {"endpoint": good["endpoint"]},
        ]
        for body in bad:
            r = c.post("/api/push/subscriptions", json=body)
            assert r.status_code == 422, (body, r.text)
        assert c.post("/api/push/subscriptions", json=good).status_code == 201
        assert c.post("/api/push/subscriptions", json=good).status_code == 201  # same one
        assert c.get("/api/push/subscriptions").json() == [
            {"id": c.get("/api/push/subscriptions").json()[0]["id"], "host": "push.example.org"}]
        assert httpx.post(hub.url + "/api/push/subscriptions", json=good).status_code == 401
        c.post("/api/auth/logout").raise_for_status()
        assert count(hub.pool, "SELECT count(*) FROM push_subscriptions") == 0
        sw = httpx.get(hub.url + "/m/sw.js")
        assert sw.status_code == 200 and sw.headers["service-worker-allowed"] == "/m"
        assert sw.headers["content-type"].startswith("text/javascript")
