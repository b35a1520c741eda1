"""Live view in Chromium: an operator opens the video wall and a camera's live
picture, fed by real JPEG frames published on the real broker, and sees it change
(at least two distinct frames within 3 s); the camera whose alarm is firing has the
red frame; from the console's device list a camera opens on the wall; one camera
large shows its empty-lane reference and the operator renews it. Screenshots
I-live-{zh,en}-{desktop,phone}.png."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.domain import Alarm, AlarmState, Category, Severity
from hub.services import Broker
from hub.vision.worker import VisionWorker
from tests.e2e.browser import IMAGES, errors
from tests.e2e.live import PASSWORD, LiveHub, running_hub
from tests.integration.test_live_view import Camera, _NoPose

LANE, STAIR, OTHER = "cam-b3-lane", "cam-b3-stair2", "cam-b7-stair1"
SHOTS = Path(os.environ.get("HUB_LIVE_SHOTS", IMAGES))
DESKTOP, PHONE = {"width": 1366, "height": 860}, {"width": 390, "height": 844}


@pytest.fixture
def hub(db_url: str, broker: Broker, site_id: str, tmp_path: Path) -> Iterator[LiveHub]:
    with running_hub(db_url, broker, site_id, tmp_path) as h:
        h.alerts.apply_now([Alarm(
            rule="firelane", category=Category.FIRE_LANE, severity=Severity.MAJOR,
            state=AlarmState.FIRING, dedup_key=f"firelane:{LANE}:lane:1",
            ts=datetime.now(UTC), title="3号楼东侧消防通道 占用", grid_code="1101050010020103",
            device_id=LANE, zone="lane", evidence={"share_of_zone": 0.4})])
        yield h


@pytest.fixture
def cameras(hub: LiveHub, broker: Broker) -> Iterator[dict[str, Camera]]:
    cams = {c: Camera(broker, hub.site.site.id, c).run(fps=6) for c in (LANE, STAIR, OTHER)}
    yield cams
    for c in cams.values():
        c.close()


def _login(page: object, url: str, user: str) -> None:
    page.goto(url + "/")  # type: ignore[attr-defined]
    page.fill("#login-user", user)  # type: ignore[attr-defined]
    page.fill("#login-pass", PASSWORD)  # type: ignore[attr-defined]
    page.click("#login-btn")  # type: ignore[attr-defined]
    page.wait_for_selector("#app-view:not([hidden])")  # type: ignore[attr-defined]


def _until(page: object, expr: str, timeout_s: float) -> None:
    """Poll ``expr`` in the page (wait_for_function's eval() is refused by the CSP)."""
    end = time.monotonic() + timeout_s
    while not page.evaluate(expr):  # type: ignore[attr-defined]
        assert time.monotonic() < end, f"not true within {timeout_s} s: {expr}"
        time.sleep(0.1)


# What the operator sees in a tile: the <img> drawn onto a canvas, its pixels hashed.
PIXELS = """(sel) => { const img = document.querySelector(sel);
  if (!img || !img.naturalWidth) return null;
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const px = g.getImageData(0, 0, c.width, c.height).data;
  return Array.from(px.filter((_, i) => i % 97 === 0)).join(','); }"""


def _distinct_frames(page: object, sel: str, seconds: float) -> int:
    seen = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        px = page.evaluate(PIXELS, sel)  # type: ignore[attr-defined]
        if px:
            seen.add(hashlib.sha1(px.encode()).hexdigest())
        time.sleep(0.1)
    return len(seen)


def test_an_operator_watches_cameras_live_and_renews_the_empty_lane(
        browser: object, hub: LiveHub, broker: Broker, cameras: dict[str, Camera]) -> None:
    worker = VisionWorker(hub.site, broker, hub.data_dir, lambda a: None,
                          pose_factory=_NoPose, analysis_threads=1)
    worker.start()
    ctx = browser.new_context(viewport=DESKTOP)  # type: ignore[attr-defined]
    page = ctx.new_page()
    errs = errors(page)
    try:
        _login(page, hub.url, "operator")
        # From the console's device list, the camera's live view.
        page.click("#tabs button[data-tab=devices]")
        page.click(f"#dev-table tr[data-device={LANE}]")
        page.wait_for_selector("#dev-side a.live-link")
        page.screenshot(path=str(SHOTS / "I-console-live-link-zh-desktop.png"))
        page.click("#dev-side a.live-link")
        page.wait_for_url(f"**/live#cam={LANE}")
        tile = "#focus-tile img.live"
        _until(page, f"(document.querySelector('{tile}') || {{}}).naturalWidth > 0", 10)
        assert _distinct_frames(page, tile, 3.0) >= 2
        # The empty-lane reference beside the live picture, renewed by the operator.
        _until(page, "!!document.querySelector('#focus-side .ref img')", 15)
        before = page.inner_text("#focus-side .ref .when")
        time.sleep(1.1)  # the renewed reference is taken from a later frame
        page.once("dialog", lambda d: d.accept())
        page.click("#renew")
        _until(page, "!!document.querySelector('#renew-msg.ok')", 10)
        assert page.inner_text("#focus-side .ref .when") != before
        audit = hub.session("operator").get(f"/api/live/{LANE}/audit").json()
        assert [(a["actor"], a["action"], a["data"]["confirmed"]) for a in audit] == [
            ("operator", "rebaseline", True)]
        page.screenshot(path=str(SHOTS / "I-live-focus-zh-desktop.png"))
        # The wall: every camera live, the one with the firing alarm framed red.
        page.click("#focus-close")
        _until(page, "document.querySelectorAll('#wall .tile').length === 3", 5)
        _until(page, "[...document.querySelectorAll('#wall img.live')]"
                     ".every((i) => i.naturalWidth > 0)", 15)
        firing = page.evaluate(
            "[...document.querySelectorAll('#wall .tile.firing')].map((t) => t.dataset.cam)")
        assert firing == [LANE]
        assert page.evaluate(f"getComputedStyle(document.querySelector("
                             f"'.tile[data-cam={LANE}]')).borderTopColor") == "rgb(255, 59, 48)"
        assert page.evaluate("document.querySelectorAll('#wall svg.zones polygon').length") == 2
        assert _distinct_frames(page, f".tile[data-cam={STAIR}] img.live", 3.0) >= 2
        page.screenshot(path=str(SHOTS / "I-live-zh-desktop.png"))
        page.click("button[data-lang=en]")
        _until(page, "document.querySelector('header h1').textContent === 'Video wall'", 5)
        _until(page, "[...document.querySelectorAll('#wall img.live')]"
                     ".every((i) => i.naturalWidth > 0)", 15)
        page.screenshot(path=str(SHOTS / "I-live-en-desktop.png"))
        page.set_viewport_size(PHONE)
        time.sleep(0.5)
        page.screenshot(path=str(SHOTS / "I-live-en-phone.png"), full_page=True)
        page.click("button[data-lang=zh]")
        _until(page, "[...document.querySelectorAll('#wall img.live')]"
                     ".every((i) => i.naturalWidth > 0)", 15)
        page.screenshot(path=str(SHOTS / "I-live-zh-phone.png"), full_page=True)
        page.evaluate(f"location.hash = 'cam={LANE}'")
        _until(page, "!!document.querySelector('#focus-side .ref img')", 10)
        _until(page, f"(document.querySelector('{tile}') || {{}}).naturalWidth > 0", 10)
        page.screenshot(path=str(SHOTS / "I-live-focus-zh-phone.png"), full_page=True)
        assert not [e for e in errs if "429" not in e], errs
    finally:
        ctx.close()
        worker.stop()


def test_a_grid_worker_of_another_grid_sees_neither_the_camera_nor_its_picture(
        browser: object, hub: LiveHub) -> None:
    # liu-yang works grid 2; the fire-lane camera is in grid 1.
    s = hub.session("liu-yang")
    assert s.get(f"/api/live/{LANE}/mjpeg").status_code == 403
    assert LANE not in {c["id"] for c in s.get("/api/live/cameras").json()}
    ctx = browser.new_context(viewport=DESKTOP)  # type: ignore[attr-defined]
    page = ctx.new_page()
    try:
        page.goto(hub.url + "/")
        page.fill("#login-user", "liu-yang")
        page.fill("#login-pass", PASSWORD)
        page.click("#login-btn")
        page.wait_for_selector("#app-view:not([hidden])")
        page.goto(hub.url + "/live")
        _until(page, "document.querySelectorAll('#wall .tile').length >= 1", 10)
        cams = page.evaluate(
            "[...document.querySelectorAll('#wall .tile')].map((t) => t.dataset.cam)")
        assert cams == [OTHER]
    finally:
        ctx.close()
