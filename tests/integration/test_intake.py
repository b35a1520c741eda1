"""12345 hotline intake on a real database: the token and nothing else, one incident
per external ticket id, category and grid unit validated, bounded fields, and each
lifecycle step reported back to a local receiver through the outbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient

from hub.alerts.service import AlertService
from hub.api.app import create_app
from hub.api.deps import AppContext, Principal
from hub.clock import ManualClock
from tests.integration.alerting import MICRO, T0, HookServer, count, pool_for, service

TOKEN = "intake-t0ken-for-tests"
SECRET = "hook-secret"
OP = Principal("op", "operator", "", person_id="zhao-min")
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def _who(request: Request) -> Principal:
    if request.headers.get("x-user") != "op":
        raise HTTPException(401, "not logged in")
    return OP


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, AlertService, HookServer]]:
    hook = HookServer(SECRET)
    with pool_for(db_url) as pool:
        svc = service(pool, ManualClock(T0), data_dir=tmp_path, webhook_secret=SECRET,
                      intake_status_url=hook.url)
        ctx = AppContext(pool=pool, site=svc.site, tree=svc.tree, alerts=svc, data_dir=tmp_path,
                         principal=_who, extra={"intake_token": TOKEN})
        with TestClient(create_app(ctx)) as client:
            yield client, svc, hook
    hook.close()


def ticket(**kw: Any) -> dict[str, Any]:
    return {"ticket_id": "12345-2026-000417", "category": "water", "grid_code": MICRO,
            "title": "3号楼2单元 楼道漏水", "description": "居民来电：楼道天花板漏水",
            "address": "3-2", **kw}


def test_same_ticket_twice_is_one_incident(env: tuple[TestClient, AlertService, Any]) -> None:
    client, svc, _ = env
    r1 = client.post("/api/intake/tickets", json=ticket(), headers=BEARER)
    assert r1.status_code == 201, r1.text
    assert r1.json()["created"] is True and r1.json()["state"] == "reported"
    r2 = client.post("/api/intake/tickets", json=ticket(title="重复推送"), headers=BEARER)
    assert r2.status_code == 200, r2.text
    assert r2.json()["created"] is False
    assert r2.json()["incident_id"] == r1.json()["incident_id"]
    assert count(svc.pool, "SELECT count(*) FROM incidents WHERE dedup_key LIKE 'intake:%%'") == 1
    d = client.get(f"/api/incidents/{r1.json()['incident_id']}", headers={"x-user": "op"})
    assert d.json()["incident"]["category"] == "water"
    assert d.json()["incident"]["evidence"]["ticket_id"] == "12345-2026-000417"


@pytest.mark.parametrize(("body", "msg"), [
    (ticket(category="no_such_thing"), "unknown category 'no_such_thing'"),
    (ticket(grid_code="1101050099990101"), "unknown grid unit '1101050099990101'"),
])
def test_unknown_category_or_grid_is_422(env: tuple[TestClient, AlertService, Any],
                                         body: dict[str, Any], msg: str) -> None:
    client, svc, _ = env
    r = client.post("/api/intake/tickets", json=body, headers=BEARER)
    assert r.status_code == 422 and msg in r.json()["detail"], r.text
    assert count(svc.pool, "SELECT count(*) FROM intake_tickets") == 0


@pytest.mark.parametrize("body", [
    ticket(title="x" * 121), ticket(description="x" * 2001), ticket(ticket_id="../etc"),
    ticket(surprise=1), ticket(reported_at="2026-03-02T09:00:00"),
])
def test_bounded_fields(env: tuple[TestClient, AlertService, Any], body: dict[str, Any]) -> None:
    client, _, _ = env
    assert client.post("/api/intake/tickets", json=body, headers=BEARER).status_code == 422


def test_the_token_is_its_own_scope(env: tuple[TestClient, AlertService, Any]) -> None:
    client, _, _ = env
    assert client.post("/api/intake/tickets", json=ticket()).status_code == 401
    assert client.post("/api/intake/tickets", json=ticket(),
                       headers={"Authorization": "Bearer wrong"}).status_code == 401
    # The intake token is no login: it reaches no other route.
    assert client.get("/api/incidents", headers=BEARER).status_code == 401
    big = ticket(description="x" * 2000, address="y" * 20000)
    assert client.post("/api/intake/tickets", json=big, headers=BEARER).status_code == 413


def test_each_step_is_reported_back(env: tuple[TestClient, AlertService, HookServer]) -> None:
    client, svc, hook = env
    iid = client.post("/api/intake/tickets", json=ticket(), headers=BEARER).json()["incident_id"]
    for action, kw in (("register", {}), ("dispatch", {"assignee": "wang-wei"})):
        r = client.post(f"/api/incidents/{iid}/transitions", headers={"x-user": "op"},
                        json={"action": action, **kw})
        assert r.status_code == 200, r.text
    for _ in range(5):
        svc.dispatch_once()
        svc.clock.advance(60)  # type: ignore[attr-defined]
    steps = []
    for c in hook.calls:
        b = c["body"]
        assert c["valid"], "status webhook not signed"
        for m in b.get("notifications", [b]):
            if m.get("type") == "intake_status":
                steps.append((m["ticket_id"], m["action"], m["state"]))
    # Each step is reported once; the outbox does not promise their order across rows
    # due at the same moment (each message says its state, so a receiver can tell).
    assert sorted(steps) == sorted([("12345-2026-000417", "register", "registered"),
                                    ("12345-2026-000417", "dispatch", "dispatched")]), hook.calls
