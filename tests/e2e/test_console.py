"""The console and the grid worker's phone view in a real headless Chromium against a
running hub (real PostgreSQL, real MQTT broker, real ingest and alert service):

operator logs in; an SOS pressed on the real broker reaches the wall within 2 s,
rings and flashes until acknowledged; the operator registers and dispatches it; the
grid worker on a phone-sized screen accepts and handles it with a note and a photo;
the operator closes it; the statistics count it. Screenshots go to var/screenshots/
(or $HUB_SCREENSHOTS).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from hub.services import Broker
from tests.e2e import seed
from tests.e2e.browser import IMAGES, errors
from tests.e2e.live import PASSWORD, LiveHub, running_hub


@pytest.fixture
def hub(db_url: str, broker: Broker, site_id: str, tmp_path: Path) -> Iterator[LiveHub]:
    with running_hub(db_url, broker, site_id, tmp_path) as h:
        pub = seed.publisher(h)
        seed.devices_online(pub, h, except_={"water-6-3-601"})
        seed.wearable_history(pub, h)
        seed.incidents(h)
        h.extra_pub = pub  # type: ignore[attr-defined]
        yield h
        pub.loop_stop()
        pub.disconnect()


def _stat(page: object, key: str) -> str:
    return page.locator(f'.stat[data-stat="{key}"] .v').inner_text()  # type: ignore[attr-defined]


def test_sos_to_closed_through_console_and_phone(browser: object, hub: LiveHub,
                                                 tmp_path: Path) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")  # type: ignore[attr-defined]
    page = ctx.new_page()
    errs = errors(page)
    page.goto(hub.url + "/")
    page.fill("#login-user", "operator")
    page.fill("#login-pass", PASSWORD)
    page.click("#login-btn")
    page.wait_for_selector("#wall .card")
    # The seeded fall is critical and unacknowledged: the banner flashes already.
    assert page.is_visible("#alert-banner")
    page.click("#ack-btn")
    assert not page.is_visible("#alert-banner")
    page.wait_for_selector("#conn.live")

    # Statistics before.
    page.click('#tabs button[data-tab="stats"]')
    page.wait_for_selector('.stat[data-stat="handled_in_grid"]')
    handled_before = int(_stat(page, "handled_in_grid"))
    total_before = int(_stat(page, "total"))
    page.click('#tabs button[data-tab="wall"]')

    # An SOS pressed at 3-2-501, published on the real broker.
    t0 = time.monotonic()
    seed.sos(hub.extra_pub, hub.site.site.id)  # type: ignore[attr-defined]
    card = page.wait_for_selector('#wall .card[data-category="sos"]', timeout=2000)
    latency = time.monotonic() - t0
    assert latency <= 2.0, f"SOS took {latency:.2f} s to reach the wall"
    assert "unacked" in (card.get_attribute("class") or "")
    assert page.is_visible("#alert-banner")
    assert "紧急呼叫" in page.inner_text("#alert-text")
    assert page.evaluate("document.querySelector('#alert-banner').getAnimations().length") > 0
    page.screenshot(path=str(IMAGES / "console.png"))

    # Open it (acknowledges it), register, dispatch to the grid worker.
    card.click()
    page.wait_for_selector("#detail-title")
    assert not page.is_visible("#alert-banner")
    page.click('#actions button[data-action="register"]')
    page.click("#act-form button[type=submit]")
    page.wait_for_selector('#actions button[data-action="dispatch"]')
    page.click('#actions button[data-action="dispatch"]')
    options = page.locator('#act-form select[name="assignee"] option').all_inner_texts()
    assert any("王伟" in o for o in options), options
    page.select_option('#act-form select[name="assignee"]', "wang-wei")
    page.fill("#act-form textarea", "请立即上门查看")
    page.click("#act-form button[type=submit]")
    page.wait_for_selector('#detail .badge.st-dispatched')
    page.screenshot(path=str(IMAGES / "incident.png"))
    iid = int(page.locator("#wall .card.selected").get_attribute("data-id") or 0)
    assert iid

    # The grid worker on a phone.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,  # type: ignore[attr-defined]
                                has_touch=True, device_scale_factor=2, locale="zh-CN")
    m = phone.new_page()
    merrs = errors(m)
    m.goto(hub.url + "/m")
    m.fill("#login-user", "wang-wei")
    m.fill("#login-pass", PASSWORD)
    m.click("#login-btn")
    item = m.wait_for_selector(f'.item[data-id="{iid}"]')
    # Most severe and newest first: the fresh SOS leads the list.
    assert m.locator(".item").first.get_attribute("data-id") == str(iid)
    m.screenshot(path=str(IMAGES / "worker-list.png"))
    item.click()
    m.click('button[data-action="accept"]')
    m.wait_for_selector('button[data-action="handle"]')
    m.wait_for_timeout(3600)  # let the confirmation toast fade before the picture
    m.screenshot(path=str(IMAGES / "worker.png"))
    m.click('button[data-action="handle"]')
    m.fill("#handle-note", "已上门，老人摔倒后自行按铃，无外伤，已联系家属")
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), np.full((480, 640, 3), (40, 120, 200), np.uint8))
    m.set_input_files("#handle-photo", str(photo))
    m.click("#handle-submit")
    m.wait_for_selector('#state-badge:text-is("处置")')
    assert not merrs, merrs

    # Back at the console: the live stream updated the detail; close after the check.
    page.wait_for_selector('#detail .badge.st-handled', timeout=5000)
    assert page.locator('#detail .timeline img').count() >= 1  # the worker's photo
    # A life-safety incident is checked on site (核查) by someone else than the
    # handler before it can be closed.
    page.click('#actions button[data-action="verify"]')
    page.fill("#act-form textarea", "现场核查：老人无外伤，家属已到场")
    page.click("#act-form button[type=submit]")
    page.wait_for_selector('#detail .timeline :text("现场核查：老人无外伤，家属已到场")')
    page.click('#actions button[data-action="close"]')
    page.click("#act-form button[type=submit]")
    page.wait_for_selector('#detail .badge.st-closed')

    page.click('#tabs button[data-tab="stats"]')
    page.wait_for_selector(
        f'.stat[data-stat="handled_in_grid"] .v:text-is("{handled_before + 1}")')
    assert int(_stat(page, "total")) == total_before + 1
    page.screenshot(path=str(IMAGES / "stats.png"), full_page=True)

    page.click('#tabs button[data-tab="map"]')
    page.wait_for_selector("#site-svg .bldg.sev-major")  # the fire lane at building 3
    page.click('#site-svg [data-building="B3"]')
    page.wait_for_selector("#map-side h2")
    page.screenshot(path=str(IMAGES / "map.png"))

    page.click('#tabs button[data-tab="devices"]')
    page.click('#dev-table tr[data-device="wearable-3-2-501"]')
    page.wait_for_selector("#readings-chart svg path")
    page.screenshot(path=str(IMAGES / "devices.png"))

    # English is one click away.
    page.click('header button[data-lang="en"]')
    assert page.inner_text('#tabs button[data-tab="wall"]') == "Incidents"
    assert not errs, errs


def test_viewer_sees_no_actions_and_worker_no_other_grid(browser: object, hub: LiveHub) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    page = ctx.new_page()
    page.goto(hub.url + "/")
    page.fill("#login-user", "viewer")
    page.fill("#login-pass", PASSWORD)
    page.click("#login-btn")
    page.wait_for_selector('#wall .card[data-category="fire_lane"]').click()
    page.wait_for_selector("#detail-title")
    assert page.locator("#actions button").count() == 0

    phone = browser.new_context(viewport={"width": 390, "height": 844})  # type: ignore[attr-defined]
    m = phone.new_page()
    m.goto(hub.url + "/m")
    m.fill("#login-user", "liu-yang")  # grid 2
    m.fill("#login-pass", PASSWORD)
    m.click("#login-btn")
    m.wait_for_selector(".item")
    titles = m.locator(".item .title").all_inner_texts()
    assert any("6-3-601" in t for t in titles)
    assert not any("3号楼" in t or "2-1-302" in t for t in titles), titles

    # A wrong password says so, and the page stays on the login form.
    other = browser.new_context().new_page()  # type: ignore[attr-defined]
    other.goto(hub.url + "/")
    other.fill("#login-user", "operator")
    other.fill("#login-pass", "wrong wrong wrong")
    other.click("#login-btn")
    other.wait_for_selector("#login-error:not(:empty)")
    assert other.is_visible("#login-view")
