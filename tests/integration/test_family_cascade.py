"""Family first on the real database: an SOS about a resident tells her first
contact by SMS (through a local gateway), no answer in the window tells the second,
who answers "on my way" through the real one-time link after the hub restarted."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from hub.alerts.notifiers.channels import SECRET_PREFIX, ChannelConfig, FamilyConfig
from hub.api.app import create_app
from hub.api.deps import AppContext, Principal
from hub.clock import ManualClock
from hub.config import Contact
from hub.grid.tree import GridTree
from tests.integration.alerting import T0, alarm, count, demo_site, pool_for, service
from tests.integration.chat_receiver import SECRETS, ChatReceiver

LINK = re.compile(rb"/api/family/([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)")


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {**SECRETS, "FAMILY_LINK": "family-key"}.items():
        monkeypatch.setenv(SECRET_PREFIX + k, v)


def _site(base: str) -> Any:
    site = demo_site()
    sms = TypeAdapter(ChannelConfig).validate_python(
        {"kind": "sms", "name": "family-sms", "url": f"{base}/sms", "auth_env": "SMS_AUTH",
         "receipt_env": "SMS_RECEIPT",
         "body": '{{"to":"{phone}","text":"{message}","callback":"{callback}"}}'})
    subjects = [s.model_copy(update={"emergency_contacts": [
        Contact(name="李明", phone="13800000001", relation="儿子"),
        Contact(name="王芳", phone="13800000002", relation="女儿")]}) if s.id == "s01" else s
        for s in site.care_subjects]
    return site.model_copy(update={
        "channels": [sms], "care_subjects": subjects,
        "family": FamilyConfig(channel="family-sms", window_s=300)})


def _texts(recv: ChatReceiver, phone: str) -> list[bytes]:
    return [c["body"] for c in recv.calls if f'"to":"{phone}"'.encode() in c["body"]]


def test_no_answer_then_the_second_contact_is_on_the_way(db_url: str) -> None:
    recv = ChatReceiver()
    clock = ManualClock(T0)
    try:
        with pool_for(db_url) as pool:
            site = _site(recv.url)
            svc = service(pool, clock, site=site, public_url="https://hub.example")
            [applied] = svc.apply_now([alarm("sos:s01", subject="s01")])
            inc = count(pool, "SELECT max(id) FROM incidents")
            assert svc.family.step(T0) == 1
            svc.dispatch_once(T0)
            first = _texts(recv, "13800000001")
            assert len(first) == 1 and "【紧急】王秀英".encode() in first[0]
            assert LINK.search(first[0]) and b"https://hub.example/api/family/" in first[0]
            assert svc.family.step(T0 + timedelta(seconds=299)) == 0
            assert _texts(recv, "13800000002") == []
            assert svc.family.step(T0 + timedelta(seconds=300)) == 1
            clock.set(T0 + timedelta(seconds=300))
            svc.dispatch_once()
            [second] = _texts(recv, "13800000002")
            m = LINK.search(second)
            assert m is not None
            token = m.group(1).decode()

            # The hub restarts: the cascade's state is in the database.
            svc2 = service(pool, clock, site=site, public_url="https://hub.example")
            client = TestClient(create_app(AppContext(
                pool, site, GridTree.from_site(site), alerts=svc2,
                principal=lambda r: Principal("1", "operator", ""))))
            page = client.get(f"/api/family/{token}")
            assert page.status_code == 200 and "我在路上" in page.text
            assert page.text.index("我在路上") < page.text.index("I am on my way")
            clock.set(T0 + timedelta(seconds=420))
            ok = client.post(f"/api/family/{token}", data={"answer": "on_my_way"})
            assert ok.status_code == 200 and "已收到" in ok.text
            again = client.post(f"/api/family/{token}", data={"answer": "cannot_go"})
            assert again.status_code == 409
            forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
            assert client.get(f"/api/family/{forged}").status_code == 404
            assert client.post(f"/api/family/{token}", data={"answer": "x" * 2000}
                               ).status_code == 413
            with pool.connection() as conn:
                actions = [r[0] for r in conn.execute(
                    "SELECT action FROM audit WHERE incident_id = %s AND action LIKE"
                    " 'family_%%' ORDER BY id", (inc,)).fetchall()]
            assert actions == ["family_notified", "family_no_answer", "family_notified",
                               "family_answer"]
            assert count(pool, "SELECT count(*) FROM audit WHERE action = 'family_answer'"
                         " AND data->>'answer' = 'on_my_way' AND data->>'contact' = '1'") == 1
            # An answer never closes the incident, and the cascade waits for no one now.
            assert count(pool, "SELECT count(*) FROM incidents WHERE id = %s AND state"
                         " IN ('cancelled', 'closed')", inc) == 0
            assert svc2.family.step(T0 + timedelta(seconds=5000)) == 0
            # The operator sees who was told and who answered.
            fam = client.get(f"/api/incidents/{inc}").json()["family"]
            assert fam["outcome"] == "coming" and fam["cancel_candidate"] is None
            assert [(c["name"], c["timed_out"], c["answer"]) for c in fam["contacts"]] == [
                ("李明", True, None), ("王芳", False, "on_my_way")]
            assert "13800000001" not in str(fam)
            assert applied is not None
    finally:
        recv.close()


def test_she_is_fine_is_a_cancel_candidate_and_the_page_is_rate_limited(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.api.routers import family as family_route
    from hub.ratelimit import TokenBuckets

    recv = ChatReceiver()
    clock = ManualClock(T0)
    try:
        with pool_for(db_url) as pool:
            site = _site(recv.url)
            svc = service(pool, clock, site=site, public_url="https://hub.example")
            svc.apply_now([alarm("sos:s01", subject="s01")])
            inc = count(pool, "SELECT max(id) FROM incidents")
            svc.family.step(T0)
            svc.dispatch_once(T0)
            [text] = _texts(recv, "13800000001")
            m = LINK.search(text)
            assert m is not None
            token = m.group(1).decode()
            monkeypatch.setattr(family_route, "LIMIT", TokenBuckets(10, 1 / 6))
            client = TestClient(create_app(AppContext(
                pool, site, GridTree.from_site(site), alerts=svc,
                principal=lambda r: Principal("1", "operator", ""))))
            ok = client.post(f"/api/family/{token}", data={"answer": "false_alarm"})
            assert ok.status_code == 200
            fam = client.get(f"/api/incidents/{inc}").json()["family"]
            assert fam["outcome"] == "false_alarm"
            assert fam["cancel_candidate"] == "李明: 她没事，误报"
            assert count(pool, "SELECT count(*) FROM incidents WHERE id = %s AND state"
                         " = 'reported'", inc) == 1  # not cancelled by the answer
            # The second contact is never told: the cascade ended.
            assert svc.family.step(T0 + timedelta(seconds=600)) == 0
            codes = [client.get("/api/family/nope.nope").status_code for _ in range(12)]
            assert codes[:9] == [404] * 9 and codes[-1] == 429
    finally:
        recv.close()


def test_without_the_link_secret_no_cascade_starts(db_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_PREFIX + "FAMILY_LINK")
    with pool_for(db_url) as pool:
        svc = service(pool, ManualClock(T0), site=_site("http://127.0.0.1:9"))
        svc.apply_now([alarm("sos:s01", subject="s01")])
        assert svc.family.step(T0) == 0 and svc.family.step(T0) == 0
        assert count(pool, "SELECT count(*) FROM family_cascades") == 0
        monkeypatch.setenv(SECRET_PREFIX + "FAMILY_LINK", "k")
        assert svc.family.step(T0 + timedelta(seconds=5)) == 1  # set later: it starts
