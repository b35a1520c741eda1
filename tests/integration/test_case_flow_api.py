"""The case flow of GB/T 30428.8 through the HTTP API on a real database: return,
park with its review date, supervise, verify before close, each with its audit row,
its notification and its role rule; and the statistics that count them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub.alerts.service import AlertService
from hub.api.deps import Principal
from hub.domain import Category, Severity
from tests.integration.alerting import GRID1, MICRO, T0, alarm, count
from tests.integration.api_support import api_env

USERS = {
    "op": Principal("op", "operator", GRID1, person_id="zhao-min"),  # the grid leader
    "micro": Principal("mo", "operator", MICRO),  # at the case's own micro-grid
    "street": Principal("street", "operator", "110105001", person_id="zhou-street"),
    "worker": Principal("w1", "grid_worker", GRID1, person_id="wang-wei"),
    "worker2": Principal("w2", "grid_worker", GRID1, person_id="li-na"),
}


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, AlertService]]:
    # A webhook URL that is never called (nothing dispatches here): its outbox rows
    # name each person told.
    with api_env(db_url, tmp_path, USERS, webhook_urls=["http://127.0.0.1:9/never"],
                 webhook_secret="s") as e:
        yield e


def act(client: TestClient, iid: int, user: str, action: str, **body: Any) -> Any:
    return client.post(f"/api/incidents/{iid}/transitions", headers={"x-user": user},
                       json={"action": action, **body})


def audit(svc: AlertService, iid: int, action: str) -> list[tuple[Any, ...]]:
    with svc.pool.connection() as c:
        return c.execute("SELECT actor, reason, data, from_state, to_state FROM audit"
                         " WHERE incident_id = %s AND action = %s ORDER BY id",
                         (iid, action)).fetchall()


def told(svc: AlertService, iid: int, person: str) -> int:
    return count(svc.pool, "SELECT count(*) FROM outbox WHERE incident_id = %s AND"
                 " channel = 'webhook' AND recipient = %s", iid, person)


def opened(svc: AlertService, key: str, category: str = Category.WATER) -> int:
    (res,) = svc.apply_now([alarm(key, category=category, severity=Severity.MINOR)])
    assert res.incident is not None and res.incident.id is not None
    return res.incident.id


def test_return_goes_back_to_the_dispatcher(env: tuple[TestClient, AlertService]) -> None:
    client, svc = env
    iid = opened(svc, "water:r")
    assert act(client, iid, "op", "register").status_code == 200
    assert act(client, iid, "op", "dispatch", assignee="wang-wei").status_code == 200
    # Someone else than the assignee may not return it; a return needs a reason.
    r = act(client, iid, "worker2", "return", reason="不归我")
    assert r.status_code == 403 and "only the assignee" in r.json()["detail"]
    assert act(client, iid, "op", "return", reason="x").status_code == 403
    assert act(client, iid, "worker", "return").status_code == 409
    before = told(svc, iid, "zhao-min")
    r = act(client, iid, "worker", "return", reason="住户不在本网格")
    assert r.status_code == 200, r.text
    d = r.json()
    assert (d["incident"]["state"], d["incident"]["assignee"]) == ("registered", None)
    assert d["timeline"][-1]["action"] == "return"
    assert d["timeline"][-1]["reason"] == "住户不在本网格"
    ((actor, reason, data, frm, to),) = audit(svc, iid, "return")
    assert (actor, frm, to) == ("wang-wei", "dispatched", "registered")
    assert data == {"returned_by": "wang-wei", "dispatcher": "zhao-min"}
    assert told(svc, iid, "zhao-min") == before + 1  # the dispatcher is told


def test_park_until_its_review_date(env: tuple[TestClient, AlertService]) -> None:
    client, svc = env
    iid = opened(svc, "water:p")
    act(client, iid, "op", "register")
    act(client, iid, "op", "dispatch", assignee="wang-wei")
    review = T0 + timedelta(days=2)
    assert act(client, iid, "worker", "park", reason="x",
               review_at=review.isoformat()).status_code == 403
    r = act(client, iid, "op", "park", reason="需街道协调",
            review_at=(T0 + timedelta(days=366)).isoformat())
    assert r.status_code == 409 and "within a year" in r.json()["detail"]
    assert act(client, iid, "op", "park", reason="需街道协调",
               review_at="2026-03-04T09:00:00").status_code == 422  # no time zone
    r = act(client, iid, "op", "park", reason="需街道协调", review_at=review.isoformat())
    assert r.status_code == 200, r.text
    inc = r.json()["incident"]
    assert inc["state"] == "parked" and inc["deadline_at"] is None
    assert inc["review_at"].startswith("2026-03-04T09:00:00")
    ((actor, _, data, _, to),) = audit(svc, iid, "park")
    assert (actor, to, data["review_at"]) == ("zhao-min", "parked", review.isoformat())
    s = client.get("/api/stats", params={"since": (T0 - timedelta(days=1)).isoformat(),
                                         "until": (T0 + timedelta(days=1)).isoformat()},
                   headers={"x-user": "op"}).json()["totals"]
    assert (s["parked"], s["open"]) == (1, 1)  # parked still counts as open
    # One second early nothing happens; at the review date it is back, with a reminder.
    before = told(svc, iid, "zhao-min")
    svc.clock.set(review - timedelta(seconds=1))  # type: ignore[attr-defined]
    svc.tick()
    assert audit(svc, iid, "review") == []
    svc.clock.set(review)  # type: ignore[attr-defined]
    svc.tick()
    ((actor, _, data, frm, to),) = audit(svc, iid, "review")
    assert (actor, frm, to) == ("system", "parked", "registered")
    assert told(svc, iid, "zhao-min") == before + 1
    d = client.get(f"/api/incidents/{iid}", headers={"x-user": "op"}).json()
    assert (d["incident"]["state"], d["incident"]["review_at"]) == ("registered", None)


def test_supervise_an_overdue_case_from_above(env: tuple[TestClient, AlertService]) -> None:
    client, svc = env
    iid = opened(svc, "water:s")
    act(client, iid, "op", "register")
    act(client, iid, "op", "dispatch", assignee="wang-wei")
    r = act(client, iid, "street", "supervise", reason="请今日办结")
    assert r.status_code == 409 and "not overdue" in r.json()["detail"]
    accept_s = svc.site.category(Category.WATER).accept_s
    svc.clock.advance(accept_s)  # type: ignore[attr-defined]
    # The case's own grid unit is not above it (the grid leader over its micro-grid is).
    r = act(client, iid, "micro", "supervise", reason="请今日办结")
    assert r.status_code == 403 and "above" in r.json()["detail"]
    before = told(svc, iid, "wang-wei")
    r = act(client, iid, "street", "supervise", reason="请今日办结")
    assert r.status_code == 200, r.text
    assert r.json()["incident"]["supervised_by"] == "zhou-street"
    assert r.json()["incident"]["state"] == "dispatched"
    assert told(svc, iid, "wang-wei") == before + 1  # the assignee is reminded
    ((actor, reason, _, _, _),) = audit(svc, iid, "supervise")
    assert (actor, reason) == ("zhou-street", "请今日办结")


def test_verify_before_close_by_someone_else(env: tuple[TestClient, AlertService]) -> None:
    client, svc = env
    iid = opened(svc, "fl:v", category=Category.FIRE_LANE)
    act(client, iid, "op", "register")
    act(client, iid, "op", "dispatch", assignee="wang-wei")
    act(client, iid, "worker", "accept")
    assert act(client, iid, "worker", "handle", note="车辆已挪走").status_code == 200
    r = act(client, iid, "op", "close", reason="ok")
    assert r.status_code == 409 and "on-site check" in r.json()["detail"]
    assert act(client, iid, "worker", "verify", reason="属实").status_code == 403
    r = act(client, iid, "op", "verify", reason="现场核查：通道已畅通")
    assert r.status_code == 200, r.text
    assert r.json()["incident"]["verified_by"] == "zhao-min"
    assert act(client, iid, "op", "close", reason="核查通过").status_code == 200
    ((actor, reason, _, frm, to),) = audit(svc, iid, "verify")
    assert (actor, reason, frm, to) == ("zhao-min", "现场核查：通道已畅通", "handled",
                                        "handled")


def test_stats_count_the_case_flow(env: tuple[TestClient, AlertService]) -> None:
    client, svc = env
    a, b, c = (opened(svc, f"water:st{i}") for i in range(3))
    for iid in (a, b, c):
        act(client, iid, "op", "register")
    # a: returned once, then handled inside the grid and closed: self-handled.
    act(client, a, "op", "dispatch", assignee="wang-wei")
    act(client, a, "worker", "return", reason="请改派")
    act(client, a, "op", "dispatch", assignee="wang-wei")
    act(client, a, "worker", "accept")
    act(client, a, "worker", "handle", note="已修")
    assert act(client, a, "op", "close", reason="ok").status_code == 200
    # b: dispatched to the street's person, outside the grid: transferred.
    assert act(client, b, "op", "dispatch", assignee="zhou-street").status_code == 200
    # c: overdue, supervised.
    act(client, c, "op", "dispatch", assignee="wang-wei")
    svc.clock.advance(svc.site.category(Category.WATER).accept_s)  # type: ignore[attr-defined]
    assert act(client, c, "street", "supervise", reason="请今日办结").status_code == 200
    s = client.get("/api/stats", params={"since": (T0 - timedelta(days=1)).isoformat()},
                   headers={"x-user": "street"}).json()
    t = s["totals"]
    got = {k: t[k] for k in ("total", "returned", "parked", "supervised", "self_handled",
                             "transferred")}
    assert got == {"total": 3, "returned": 1, "parked": 0, "supervised": 1,
                   "self_handled": 1, "transferred": 1}
    assert s["by_unit"][MICRO[:12]]["returned"] == 1
