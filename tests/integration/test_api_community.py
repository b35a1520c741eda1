"""The community filter: GET /api/communities, and ``community`` on /api/incidents
and /api/stats, inside the caller's scope."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from hub.alerts.service import AlertService
from hub.api.app import create_app
from hub.api.deps import AppContext, Principal
from hub.clock import ManualClock
from tests.integration.alerting import T0, alarm, pool_for, service

COMMUNITY = "110105001002"  # the demo compound's
OTHER = "110105001003"  # the next community of the street (hub demo --sites 2's)
GRID2 = "11010500100202"
USERS = {
    "admin": Principal("1", "admin", ""),
    "op-grid2": Principal("3", "operator", GRID2),
    "op-other": Principal("4", "operator", OTHER),
}


def _who(request: Request) -> Principal:
    return USERS[request.headers["x-user"]]


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with pool_for(db_url) as pool:
        svc: AlertService = service(pool, ManualClock(T0 + timedelta(minutes=5)),
                                    data_dir=tmp_path)
        svc.apply_now([alarm("sos:a", grid_code="1101050010020101"),
                       alarm("sos:b", grid_code="1101050010020201")])
        ctx = AppContext(pool=pool, site=svc.site, tree=svc.tree, alerts=svc,
                         data_dir=tmp_path, principal=_who)
        with TestClient(create_app(ctx)) as c:
            yield c


def _codes(c: TestClient, user: str, q: str) -> list[str]:
    r = c.get(f"/api/incidents?{q}", headers={"x-user": user})
    assert r.status_code == 200, r.text
    return sorted(i["grid_code"] for i in r.json()["items"])


def test_communities_in_scope(client: TestClient) -> None:
    got = client.get("/api/communities", headers={"x-user": "admin"}).json()
    assert [(c["code"], c["site_id"]) for c in got] == [(COMMUNITY, "demo")]
    # A grid's operator sees the community holding the grid; another's, none here.
    assert [c["code"] for c in client.get("/api/communities",
                                          headers={"x-user": "op-grid2"}).json()] == [COMMUNITY]
    assert client.get("/api/communities", headers={"x-user": "op-other"}).json() == []


def test_incidents_and_stats_by_community(client: TestClient) -> None:
    both = ["1101050010020101", "1101050010020201"]
    assert _codes(client, "admin", "") == both
    assert _codes(client, "admin", f"community={COMMUNITY}") == both
    assert _codes(client, "admin", f"community={OTHER}") == []
    assert _codes(client, "admin", f"community={COMMUNITY}&grid={GRID2}") == [both[1]]
    # The community holds the operator's grid: still only what the grid sees.
    assert _codes(client, "op-grid2", f"community={COMMUNITY}") == [both[1]]
    r = client.get(f"/api/incidents?community={OTHER}", headers={"x-user": "op-grid2"})
    assert r.status_code == 403
    r = client.get(f"/api/incidents?community={COMMUNITY}&grid=11010500100301",
                   headers={"x-user": "admin"})
    assert r.status_code == 422 and "not inside community" in r.text
    assert client.get("/api/incidents?community=1101050010",
                      headers={"x-user": "admin"}).status_code == 422
    q = (f"since={(T0 - timedelta(days=1)).isoformat()}"
         f"&until={(T0 + timedelta(days=1)).isoformat()}").replace("+", "%2B")
    all_ = client.get(f"/api/stats?{q}&community={COMMUNITY}", headers={"x-user": "admin"})
    none = client.get(f"/api/stats?{q}&community={OTHER}", headers={"x-user": "admin"})
    assert all_.status_code == 200 and none.status_code == 200
    assert all_.json()["totals"]["total"] == 2
    assert none.json()["totals"]["total"] == 0
    assert all_.json()["scope"] == COMMUNITY
