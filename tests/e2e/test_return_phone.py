"""退回 from the phone view: a grid worker gives a dispatched incident back to the
dispatcher with a reason, in real headless Chromium against a running hub; the
incident is registered again with no assignee and the reason in its timeline."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.domain import Alarm, AlarmState, Category, Severity
from hub.services import Broker
from tests.e2e.browser import errors
from tests.e2e.live import PASSWORD, LiveHub, running_hub

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


@pytest.fixture
def hub(db_url: str, broker: Broker, site_id: str, tmp_path: Path) -> Iterator[LiveHub]:
    with running_hub(db_url, broker, site_id, tmp_path) as h:
        (res,) = h.alerts.apply_now([Alarm(
            rule="water", category=Category.WATER, severity=Severity.MINOR,
            state=AlarmState.FIRING, dedup_key="water:return:1",
            ts=datetime.now(UTC) - timedelta(minutes=3), title="3-2-501 用水异常",
            grid_code="1101050010020103")])
        for act in ("register", "dispatch"):
            h.alerts.transition(res.incident.id, act, "zhao-min", assignee="wang-wei")
        h.return_id = res.incident.id  # type: ignore[attr-defined]
        yield h


def test_worker_returns_a_dispatch_with_a_reason(browser: object, hub: LiveHub) -> None:
    iid = hub.return_id  # type: ignore[attr-defined]
    ctx = browser.new_context(locale="zh-CN", **PHONE)  # type: ignore[attr-defined]
    m = ctx.new_page()
    errs = errors(m)
    m.goto(hub.url + "/m")
    m.fill("#login-user", "wang-wei")
    m.fill("#login-pass", PASSWORD)
    m.click("#login-btn")
    m.click(f'.item[data-id="{iid}"]')
    m.wait_for_selector("#detail h2")
    assert m.locator("button[data-action]").all_inner_texts() == ["签收", "退回"]
    m.click('button[data-action="return"]')
    m.fill("#return-reason", "住户已搬离本网格，请改派")
    m.click("#return-submit")
    m.wait_for_selector('#state-badge:text-is("立案")')
    assert "住户已搬离本网格，请改派" in m.inner_text("#detail .timeline")
    with hub.pool.connection() as conn:
        state, assignee = conn.execute(
            "SELECT state, assignee FROM incidents WHERE id = %s", (iid,)).fetchone()
        (actor, reason) = conn.execute(
            "SELECT actor, reason FROM audit WHERE incident_id = %s AND action = 'return'",
            (iid,)).fetchone()
    assert (state, assignee, actor, reason) == ("registered", None, "wang-wei",
                                                "住户已搬离本网格，请改派")
    assert not errs, errs
    ctx.close()
