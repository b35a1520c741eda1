"""An incident's event clip plays in Chromium, in the console's detail and on the
phone view: the clip is written by the vision worker's encoder (hub.vision.clips)
from JPEG frames, the incident names it in its evidence, and the browser fetches it
through GET /api/incidents/{id}/clip with the user's session. The test checks what
an operator sees: a duration, and playback that advances. A clip still being
recorded shows a note and loads by itself once written. Screenshots clip-*.png."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from hub.domain import Alarm, AlarmState, Category, Severity
from hub.services import Broker
from hub.vision import clipstore
from hub.vision.clips import ClipFrame, encode_mp4
from tests.e2e.browser import IMAGES, errors
from tests.e2e.live import PASSWORD, LiveHub, running_hub

GRID = "1101050010020103"  # wang-wei's grid in the demo site
CAMERA = "cam-lane-b3"
CLIP_S = 6.0


def frames(t0: datetime, seconds: float = CLIP_S, fps: float = 5.0) -> list[ClipFrame]:
    """A ball crossing a floor, as a camera's JPEG frames."""
    out = []
    for i in range(int(seconds * fps) + 1):
        img = np.full((240, 320, 3), (90, 100, 110), np.uint8)
        cv2.circle(img, (20 + i * 9, 120), 18, (30, 30, 220), -1)
        ok, buf = cv2.imencode(".jpg", img)
        assert ok
        out.append(ClipFrame(t0 + timedelta(seconds=i / fps), buf.tobytes(), 320, 240))
    return out


def fall(h: LiveHub, ts: datetime, key: str, clip_to: datetime) -> tuple[int, Path]:
    rel = clipstore.clip_path(Category.FALL, CAMERA, ts, "fall")
    (res,) = h.alerts.apply_now([Alarm(
        rule="fall", category=Category.FALL, severity=Severity.MAJOR, state=AlarmState.FIRING,
        dedup_key=key, ts=ts, title="3号楼门口 有人跌倒", grid_code=GRID, device_id=CAMERA,
        evidence={"time_down_s": 4.0, "clip": {
            "path": rel, "from": (ts - timedelta(seconds=3)).isoformat(),
            "to": clip_to.isoformat()}})])
    iid = res.incident.id
    for act in ("register", "dispatch"):
        h.alerts.transition(iid, act, "seed", assignee="wang-wei")
    return iid, h.data_dir / rel


@pytest.fixture
def hub(db_url: str, broker: Broker, site_id: str, tmp_path: Path) -> Iterator[LiveHub]:
    with running_hub(db_url, broker, site_id, tmp_path) as h:
        ts = datetime.now(UTC) - timedelta(minutes=5)
        iid, path = fall(h, ts, f"fall:{CAMERA}:1", ts + timedelta(seconds=3))
        assert encode_mp4(frames(ts - timedelta(seconds=3)), path) > 0
        h.clip_id = iid  # type: ignore[attr-defined]
        yield h


def _login(page: object, url: str, user: str) -> None:
    page.goto(url)  # type: ignore[attr-defined]
    page.fill("#login-user", user)  # type: ignore[attr-defined]
    page.fill("#login-pass", PASSWORD)  # type: ignore[attr-defined]
    page.click("#login-btn")  # type: ignore[attr-defined]


VIDEO = "document.querySelector('#evidence-clip')"


def _until(page: object, expr: str, timeout_s: float) -> None:
    """Poll ``expr`` in the page until it is true. Playwright's wait_for_function
    evaluates its predicate with eval() inside the page, which the console's CSP
    (script-src 'self') forbids; evaluate() is not subject to it."""
    end = time.monotonic() + timeout_s
    while not page.evaluate(expr):  # type: ignore[attr-defined]
        assert time.monotonic() < end, f"not true within {timeout_s} s: {expr}"
        time.sleep(0.1)


def _plays(page: object) -> float:
    """Wait for the clip's metadata, play it (muted, as autoplay policies want) and
    wait for its time to move; returns the duration."""
    _until(page, f"!!{VIDEO} && {VIDEO}.readyState >= 1 && {VIDEO}.duration > 0", 15)
    duration = page.evaluate(f"{VIDEO}.duration")  # type: ignore[attr-defined]
    page.evaluate(f"{VIDEO}.muted = true")  # type: ignore[attr-defined]
    page.evaluate(f"{VIDEO}.play()")  # type: ignore[attr-defined]
    _until(page, f"{VIDEO}.currentTime > 0.5", 10)
    return float(duration)


def test_the_console_plays_an_incident_s_clip_and_waits_for_one_being_recorded(
        browser: object, hub: LiveHub) -> None:
    iid = hub.clip_id  # type: ignore[attr-defined]
    ctx = browser.new_context(locale="zh-CN", viewport={"width": 1440, "height": 900})  # type: ignore[attr-defined]
    page = ctx.new_page()
    errs = errors(page)
    _login(page, hub.url + "/", "operator")
    page.click(f'#wall .card[data-id="{iid}"]')
    page.wait_for_selector("#detail-title")
    duration = _plays(page)
    assert duration == pytest.approx(CLIP_S, abs=0.5), duration
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / "clip-console-zh.png"))

    # A fall whose clip is still being recorded: the note says so, and the player
    # finds the clip once the encoder has written it.
    ts = datetime.now(UTC) - timedelta(seconds=5)
    pending, path = fall(hub, ts, f"fall:{CAMERA}:2", ts + timedelta(seconds=30))
    page.click(f'#wall .card[data-id="{pending}"]', timeout=15000)
    page.wait_for_selector("#clip-note:not([hidden])")
    assert page.inner_text("#clip-note") == "录像生成中，稍后自动刷新…"
    assert encode_mp4(frames(ts - timedelta(seconds=3)), path) > 0
    assert _plays(page) > 0
    assert page.is_hidden("#clip-note")
    # The 404s of the pending clip are the browser's own resource errors; nothing else.
    assert not [e for e in errs if "404" not in e], errs
    ctx.close()


def test_the_phone_view_plays_the_clip(browser: object, hub: LiveHub) -> None:
    iid = hub.clip_id  # type: ignore[attr-defined]
    ctx = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844},  # type: ignore[attr-defined]
                              is_mobile=True, has_touch=True)
    m = ctx.new_page()
    errs = errors(m)
    _login(m, hub.url + "/m", "wang-wei")
    m.click(f'.item[data-id="{iid}"]')
    m.wait_for_selector("#detail h2")
    assert _plays(m) == pytest.approx(CLIP_S, abs=0.5)
    IMAGES.mkdir(parents=True, exist_ok=True)
    m.screenshot(path=str(IMAGES / "clip-m-zh-phone.png"))
    assert not errs, errs
    ctx.close()
