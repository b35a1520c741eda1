"""Chat robots and the SMS gateway end to end: an SOS's outbox rows reach a local
receiver that checks each vendor's format and signature; a receiver that is down
gets everything once it is back, and the timeline and /metrics say so."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import TypeAdapter

from hub.alerts.notifiers.channels import SECRET_PREFIX, ChannelConfig
from hub.clock import ManualClock
from tests.integration.alerting import (
    GRID1,
    alarm,
    count,
    demo_site,
    pool_for,
    service,
)
from tests.integration.chat_receiver import SECRETS, ChatReceiver, channels, free_port


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in SECRETS.items():
        monkeypatch.setenv(SECRET_PREFIX + k, v)


def _site(base: str) -> Any:
    adapter = TypeAdapter(list[ChannelConfig])
    chans = adapter.validate_python(channels(base, GRID1))
    return demo_site().model_copy(update={"channels": chans})


def _now() -> datetime:
    # The receiver holds the signatures' timestamps to its own clock, as the vendors do.
    return datetime.now(UTC).replace(microsecond=0)


def _delivered(kind: str) -> float:
    return REGISTRY.get_sample_value("hub_notifications_total",
                                     {"channel": kind, "result": "ok"}) or 0.0


def test_each_channel_gets_its_documented_request(db_url: str) -> None:
    recv = ChatReceiver()
    try:
        with pool_for(db_url) as pool:
            now = _now()
            svc = service(pool, ManualClock(now), site=_site(recv.url),
                          public_url="https://hub.example")
            before = _delivered("dingtalk")
            svc.apply_now([alarm("sos:s1", subject="s01", ts=now)])
            svc.dispatch_once()
            # An SOS tells several levels at once; each reaching the grid is a message.
            paths = sorted({c["path"] for c in recv.calls})
            assert paths == ["/dingtalk", "/feishu/fs-hook", "/sms", "/wecom"], paths
            assert [c for c in recv.calls if c["error"]] == []
            texts = [c["body"] for c in recv.calls if c["path"] == "/sms"]
            assert any(b'"to":"13955448177"' in b for b in texts)  # wang-wei, the grid worker
            sms = texts[0]
            assert b"/api/notify/receipts/sms?token=rcpt-1" in sms
            assert "【紧急】".encode() in sms
            assert count(pool, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL") == 0
            assert _delivered("dingtalk") == before + sum(
                c["path"] == "/dingtalk" for c in recv.calls)
    finally:
        recv.close()


def test_a_receiver_down_gets_everything_when_back(db_url: str) -> None:
    port = free_port()
    clock = ManualClock(_now())
    with pool_for(db_url) as pool:
        svc = service(pool, clock, site=_site(f"http://127.0.0.1:{port}"), retry_base_s=2.0,
                      public_url="https://hub.example")
        svc.apply_now([alarm("sos:s1", subject="s01", ts=clock.now())])
        n = count(pool, "SELECT count(*) FROM outbox WHERE channel <> 'mqtt'")
        assert n >= 4
        svc.dispatch_once()  # refused: every channel fails
        assert count(pool, "SELECT count(*) FROM outbox WHERE channel <> 'mqtt'"
                     " AND attempts = 1 AND last_error LIKE '%%unreachable%%'") >= 4
        assert count(pool, "SELECT count(DISTINCT data->>'channel') FROM audit"
                     " WHERE action = 'notify_failed'") == 4
        failed = REGISTRY.get_sample_value("hub_notifications_total",
                                           {"channel": "feishu", "result": "failed"})
        assert failed and failed >= 1
        recv = ChatReceiver(port, fail_first=1)  # back, but one more 502
        try:
            for _ in range(30):  # backoff and the rate limit's wait, on the hub's clock
                clock.advance(10)
                svc.dispatch_once()
            assert sorted({c["path"] for c in recv.calls}) == [
                "/dingtalk", "/feishu/fs-hook", "/sms", "/wecom"]
            assert [c for c in recv.calls if c["error"]] == []
            assert count(pool, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL") == 0
            assert count(pool, "SELECT count(DISTINCT data->>'channel') FROM audit"
                         " WHERE action = 'notify_delivered'") == 4
        finally:
            recv.close()


def test_a_gateway_receipt_goes_into_the_timeline(db_url: str) -> None:
    from fastapi.testclient import TestClient

    from hub.api.app import create_app
    from hub.api.deps import AppContext
    from hub.grid.tree import GridTree

    recv = ChatReceiver()
    try:
        with pool_for(db_url) as pool:
            site = _site(recv.url)
            svc = service(pool, ManualClock(_now()), site=site, public_url="https://hub.example")
            svc.apply_now([alarm("sos:s1", subject="s01", ts=_now())])
            svc.dispatch_once()
            ref = count(pool, "SELECT min(id) FROM outbox WHERE channel = 'sms'")
            client = TestClient(create_app(AppContext(pool, site, GridTree.from_site(site))))
            url = "/api/notify/receipts/sms"
            good = {"reference": ref, "status": "delivered"}
            assert client.post(url, params={"token": "wrong"}, json=good).status_code == 401
            assert client.post(url, json=good).status_code in (401, 422)
            assert client.post(url, params={"token": "rcpt-1"},
                               json={"reference": 10**9, "status": "failed"}).status_code == 404
            assert client.post(url, params={"token": "rcpt-1"}, json=good).status_code == 200
            assert count(pool, "SELECT count(*) FROM audit WHERE action = 'notify_receipt'"
                         " AND data->>'status' = 'delivered'") == 1
            big = {"reference": ref, "status": "failed", "detail": "x" * 8000}
            assert client.post(url, params={"token": "rcpt-1"}, json=big).status_code == 413
    finally:
        recv.close()
