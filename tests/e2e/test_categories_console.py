"""A category that a plug-in registers reaches the browser with its labels, icon and
colour, touching no console code: the console and the phone view draw categories,
states and the actions a state allows from GET /api/meta. Real headless Chromium
against a running hub; screenshots (zh/en, desktop/phone, console and /m) go to
var/screenshots/ (or $HUB_SCREENSHOTS) as categories-*.png."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub import categories
from hub.categories import CategoryInfo, CategoryRegistry, Labels, load_plugins
from hub.domain import Alarm, AlarmState, Severity
from hub.services import Broker
from tests.e2e import seed
from tests.e2e.browser import IMAGES, errors
from tests.e2e.live import PASSWORD, LiveHub, running_hub

PLUG = CategoryInfo(code="plug_crowding", case_code="0311", name_zh="人员聚集",
                    name_en="Crowding", severity="major", accept_s=600, handle_s=1800,
                    icon="👥", colour="#7c3aed",
                    evidence_labels={"count": Labels(zh="人数", en="People in the zone")})
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
         "device_scale_factor": 2}


@pytest.fixture
def hub(db_url: str, broker: Broker, site_id: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveHub]:
    load_plugins()
    reg = CategoryRegistry(categories.REGISTRY)
    monkeypatch.setattr(categories, "REGISTRY", reg)
    monkeypatch.setattr("hub.config.REGISTRY", reg)
    categories.register(PLUG)  # what a detector module does at import
    with running_hub(db_url, broker, site_id, tmp_path) as h:
        seed.incidents(h)
        now = datetime.now(UTC)
        (res,) = h.alerts.apply_now([Alarm(
            rule="crowding", category=PLUG.code, severity=Severity.MAJOR,
            state=AlarmState.FIRING, dedup_key="crowding:cam-lane-b3:gate:1",
            ts=now - timedelta(minutes=2), title="3号楼门口 人员聚集 (9 人)",
            grid_code="1101050010020103", device_id="cam-lane-b3", zone="gate",
            evidence={"count": 9, "threshold": 6, "dwell_s": 95.0})])
        iid = res.incident.id
        for act in ("register", "dispatch"):
            h.alerts.transition(iid, act, "seed", assignee="wang-wei")
        h.plug_id = iid  # type: ignore[attr-defined]
        yield h


def _login(page: object, url: str, user: str) -> None:
    page.goto(url)  # type: ignore[attr-defined]
    page.fill("#login-user", user)  # type: ignore[attr-defined]
    page.fill("#login-pass", PASSWORD)  # type: ignore[attr-defined]
    page.click("#login-btn")  # type: ignore[attr-defined]


def _shot(page: object, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / f"categories-{name}.png"))  # type: ignore[attr-defined]


def test_console_shows_a_plugin_category_with_its_labels(browser: object, hub: LiveHub) -> None:
    iid = hub.plug_id  # type: ignore[attr-defined]
    for size, kw in (("desktop", {"viewport": DESKTOP}), ("phone", PHONE)):
        ctx = browser.new_context(locale="zh-CN", **kw)  # type: ignore[attr-defined]
        page = ctx.new_page()
        errs = errors(page)
        _login(page, hub.url + "/", "operator")
        badge = page.wait_for_selector(
            f'#wall .card[data-id="{iid}"] .badge.cat[data-category="plug_crowding"]')
        assert badge.inner_text().strip() == "👥 人员聚集"
        assert badge.get_attribute("style") == "border-color:#7c3aed"
        # The filter lists it, from the registry, after the built-ins.
        options = page.locator("#f-category option").all_inner_texts()
        assert options[0] == "全部" and options[-1] == "人员聚集", options
        assert "紧急呼叫" in options and "设备离线" in options
        states = page.locator("#f-state option").all_inner_texts()
        assert states == ["全部", "上报", "立案", "派遣", "签收", "处置", "结案", "作废", "挂账"]
        page.select_option("#f-category", "plug_crowding")
        page.wait_for_selector('#wall .card[data-category="fall"]', state="detached")
        assert page.locator("#wall .card").count() == 1
        page.select_option("#f-category", "")
        page.wait_for_selector('#wall .card[data-category="fall"]')
        if size == "desktop":
            page.click(f'#wall .card[data-id="{iid}"]')
            page.wait_for_selector("#detail-title")
            assert page.inner_text("#detail .badge.st-dispatched") == "派遣"
            # The lifecycle says what a dispatched incident allows; the operator's
            # role narrows it (accepting and returning are the worker's); the case
            # flow's park and supervise come from GET /api/meta too.
            acts = page.locator("#actions button").all_inner_texts()
            assert acts == ["派遣", "备注", "挂账", "督办"], acts
            assert page.locator("#detail .timeline").inner_text().count("派遣") >= 1
            assert "人数" in page.inner_text("#detail")  # the plug-in's evidence label
        _shot(page, f"console-zh-{size}")
        page.locator('header button[data-lang="en"]').dispatch_event("click")
        page.wait_for_selector(f'#wall .card[data-id="{iid}"] .badge.cat:text("Crowding")')
        assert "Crowding" in page.locator("#f-category option").all_inner_texts()
        if size == "desktop":
            page.wait_for_selector('#detail .badge.st-dispatched:text-is("Dispatched")')
            assert page.locator("#actions button").all_inner_texts() == [
                "Dispatch", "Comment", "Park until review", "Supervise (overdue)"]
        _shot(page, f"console-en-{size}")
        if size == "desktop":
            # Evidence labels are per category: the crowding plug-in's "threshold" and
            # "dwell_s" do not rename the fire lane's.
            page.click('#wall .card[data-category="fire_lane"]')
            page.wait_for_selector('#evidence-kv dt:text-is("Dwell (s)")')
            assert "Threshold" in page.locator("#evidence-kv dt").all_inner_texts()
            # A maintenance incident is dispatched to property staff first.
            page.click('#wall .card[data-category="device_offline"]')
            page.wait_for_selector("#detail-title:has-text('水表')")
            page.click('#actions button[data-action="register"]')
            page.click("#act-form button[type=submit]")
            page.wait_for_selector('#actions button[data-action="dispatch"]')
            page.click('#actions button[data-action="dispatch"]')
            people = page.locator('#act-form select[name="assignee"] option').all_inner_texts()
            assert people[1].startswith("徐海涛 (物业) · property"), people
        page.evaluate("localStorage.removeItem('hub.lang')")
        assert not errs, errs
        ctx.close()


def test_phone_view_shows_a_plugin_category_and_its_actions(browser: object,
                                                            hub: LiveHub) -> None:
    iid = hub.plug_id  # type: ignore[attr-defined]
    for size, kw in (("phone", PHONE), ("desktop", {"viewport": DESKTOP})):
        ctx = browser.new_context(locale="zh-CN", **kw)  # type: ignore[attr-defined]
        m = ctx.new_page()
        errs = errors(m)
        _login(m, hub.url + "/m", "wang-wei")
        item = m.wait_for_selector(f'.item[data-id="{iid}"]')
        assert "👥 人员聚集" in item.inner_text()
        _shot(m, f"m-list-zh-{size}")
        item.click()
        m.wait_for_selector("#detail h2")
        assert m.inner_text("#state-badge") == "派遣"
        # Dispatched: the lifecycle allows accept and return; the phone offers exactly those.
        assert m.locator("button[data-action]").all_inner_texts() == ["签收", "退回"]
        _shot(m, f"m-zh-{size}")
        m.click("#lang-toggle")
        m.wait_for_selector('#state-badge:text-is("Dispatched")')
        assert "Crowding" in m.inner_text("#detail .tags")
        assert "People in the zone" in m.inner_text("#detail")
        assert m.locator("button[data-action]").all_inner_texts() == ["Accept",
                                                                      "Return to dispatcher"]
        _shot(m, f"m-en-{size}")
        m.evaluate("localStorage.removeItem('hub.lang')")
        assert not errs, errs
        ctx.close()
