"""GET /api/meta over a real database and alert service: the categories (a plug-in's
included) and the lifecycle the console draws from; alarms of a plug-in category
become incidents the API lists and filters; an unregistered category is refused at
the inlet with a counter, and a silence naming one with a 422."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY as METRICS

from hub import categories
from hub.alerts.service import AlertService
from hub.api.deps import Principal
from hub.categories import CategoryInfo, CategoryRegistry, Labels, load_plugins
from hub.domain import Category, Severity
from tests.integration.alerting import T0, alarm, count
from tests.integration.api_support import api_env

USERS = {"op": Principal("2", "operator", ""), "viewer": Principal("4", "viewer", "")}
PLUG = CategoryInfo(code="plug_crowding", case_code="0311", name_zh="人员聚集",
                    name_en="Crowding", severity="major", accept_s=420, handle_s=1800,
                    icon="👥", colour="#7c3aed",
                    evidence_labels={"count": Labels(zh="人数", en="People")})


@pytest.fixture
def env(db_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, AlertService]]:
    load_plugins()
    reg = CategoryRegistry(categories.REGISTRY)
    monkeypatch.setattr(categories, "REGISTRY", reg)
    monkeypatch.setattr("hub.config.REGISTRY", reg)
    categories.register(PLUG)  # as a detector module does at import
    with api_env(db_url, tmp_path, USERS, api_docs=False) as e:
        yield e


def rejected(reason: str) -> float:
    return METRICS.get_sample_value("hub_alarms_rejected_total", {"reason": reason}) or 0.0


def test_meta_serves_categories_and_lifecycle(env: tuple[TestClient, AlertService]) -> None:
    client, _ = env
    assert client.get("/api/meta").status_code == 401
    r = client.get("/api/meta", headers={"x-user": "viewer"})
    assert r.status_code == 200, r.text
    m = r.json()
    cats = {c["code"]: c for c in m["categories"]}
    assert {c.value for c in Category} | {"plug_crowding"} <= set(cats)
    assert cats["sos"]["labels"] == {"zh": "紧急呼叫", "en": "SOS"}
    assert cats["sos"]["life_safety"] and cats["sos"]["severity"] == "critical"
    assert cats["device_offline"]["route"] == "property"
    assert cats["plug_crowding"] == {
        "code": "plug_crowding", "case_code": "0311",
        "labels": {"zh": "人员聚集", "en": "Crowding"}, "severity": "major",
        "life_safety": False, "verify_required": False, "route": "grid", "icon": "👥",
        "colour": "#7c3aed",
        "inhibits": [], "groups": True,
        "evidence_labels": {"count": {"zh": "人数", "en": "People"}},
        "sla": {"accept_s": 420.0, "handle_s": 1800.0, "notify_levels": 1, "group_s": 300.0}}
    states = {s["code"]: s for s in m["lifecycle"]["states"]}
    assert states["handled"]["actions"] == ["close", "reopen", "comment", "verify"]
    assert states["parked"]["open"] and states["parked"]["actions"] == ["comment", "resume"]
    assert states["reported"]["labels"] == {"zh": "上报", "en": "Reported"}
    assert not states["cancelled"]["open"]
    moves = {t["action"]: t for t in m["lifecycle"]["transitions"]}
    assert moves["accept"]["from"] == ["dispatched"] and moves["accept"]["to"] == "accepted"
    assert m["lifecycle"]["actions"]["escalate"]["en"] == "Escalated (time limit)"
    assert m["severities"] == ["critical", "major", "minor", "info"]


def test_plugin_category_flows_to_the_api_and_unknown_is_refused(
        env: tuple[TestClient, AlertService]) -> None:
    client, svc = env
    before = rejected("unknown_category")
    applied = svc.apply_now([
        alarm("crowd:cam1:z1:1", category="plug_crowding", severity=Severity.MAJOR),
        alarm("sos:a", ts=T0 + timedelta(seconds=1)),
        alarm("nope:1", category="not_registered", severity=Severity.MAJOR),
    ])
    assert len(applied) == 2  # the unregistered one never reached the engine
    assert rejected("unknown_category") == before + 1
    assert count(svc.pool, "SELECT count(*) FROM incidents") == 2
    assert count(svc.pool, "SELECT count(*) FROM incident_alarms WHERE dedup_key = 'nope:1'") == 0

    r = client.get("/api/incidents", params={"category": "plug_crowding"},
                   headers={"x-user": "op"})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(i["category"], i["dedup_key"]) for i in items] == [
        ("plug_crowding", "crowd:cam1:z1:1")]
    inc = items[0]
    d = client.get(f"/api/incidents/{inc['id']}", headers={"x-user": "op"}).json()
    assert d["allowed_actions"] == ["register", "cancel", "comment"]
    # The plug-in's time limit runs: dispatch starts its accept_s of 420 s.
    url = f"/api/incidents/{inc['id']}/transitions"
    r = client.post(url, json={"action": "register", "expected_version": inc["version"]},
                    headers={"x-user": "op"})
    assert r.status_code == 200, r.text
    r = client.post(url, json={"action": "dispatch", "assignee": "wang-wei"},
                    headers={"x-user": "op"})
    assert r.status_code == 200, r.text
    got = client.get(f"/api/incidents/{inc['id']}", headers={"x-user": "op"}).json()
    deadline = datetime.fromisoformat(got["incident"]["deadline_at"])
    assert deadline == svc.clock.now() + timedelta(seconds=420)
    assert got["incident"]["deadline_kind"] == "accept"


def test_silence_for_a_category_must_name_a_registered_one(
        env: tuple[TestClient, AlertService]) -> None:
    client, _ = env
    body = {"start": T0.isoformat(), "end": (T0 + timedelta(hours=1)).isoformat(),
            "reason": "施工"}
    r = client.post("/api/silences", json={**body, "category": "not_registered"},
                    headers={"x-user": "op"})
    assert r.status_code == 422 and "unknown category 'not_registered'" in r.json()["detail"]
    r = client.post("/api/silences", json={**body, "category": "plug_crowding"},
                    headers={"x-user": "op"})
    assert r.status_code == 201, r.text
    assert r.json()["category"] == "plug_crowding"
