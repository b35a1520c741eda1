"""Issue 15, problems 1-4, in a real headless Chromium against a running hub:

1. the attention bar stays in the viewport at the bottom of every tab, rings
   ("playing", or "click to enable sound" where the browser blocks autoplay after a
   reload), comes back reminder_s after "知道了" while the critical incident is still
   unregistered, and with the console in the background flashes the tab's title and
   shows a desktop notification;
2. cards and detail count down to deadline_at (amber near, red over - checked to the
   second with an injected clock) and name the escalation level;
3. "触发依据" shows the readings that fired the vitals alarm, not the clear's;
4. an SOS about a care subject shows her card with tel: links on the console and on
   the phone, and a worker of another grid cannot read it.

Screenshots (zh/en, 1366 and 390x844) go to $HUB_Q_SHOTS (default var/screenshots)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.domain import Alarm, AlarmState, Category, Severity
from hub.services import Broker
from tests.e2e import seed
from tests.e2e.browser import ARGS, IMAGES, chromium, errors
from tests.e2e.live import PASSWORD, LiveHub, running_hub

SHOTS = Path(os.environ.get("HUB_Q_SHOTS", IMAGES))
REMINDER_S = 10
FIRED = [154.9, 152.5, 152.2]
# The console behind another window (document.hidden), or in front again.
HIDE = """() => { Object.defineProperty(document, 'hidden', { get: () => %s, configurable: true });
                  document.dispatchEvent(new Event('visibilitychange')); }"""


@pytest.fixture
def hub(db_url: str, broker: Broker, site_id: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveHub]:
    monkeypatch.setenv("HUB_CONSOLE_REMINDER_S", str(REMINDER_S))
    with running_hub(db_url, broker, site_id, tmp_path) as h:
        pub = seed.publisher(h)
        seed.devices_online(pub, h)
        seed.incidents(h)
        now = datetime.now(UTC)
        vitals = dict(rule="vitals", category=Category.VITALS, severity=Severity.MAJOR,
                      dedup_key="vitals:s01:heart_rate", grid_code="1101050010020103",
                      subject_id="s01", device_id="wearable-3-2-501",
                      title="3-2-501 王秀英 心率异常")
        h.alerts.apply_now([Alarm(**vitals, state=AlarmState.FIRING,
                                  ts=now - timedelta(minutes=6),
                                  evidence={"metric": "heart_rate", "readings": FIRED,
                                            "low": 40, "high": 130, "consecutive": 3})])
        h.alerts.apply_now([Alarm(**vitals, state=AlarmState.CLEARED,
                                  ts=now - timedelta(minutes=2),
                                  evidence={"metric": "heart_rate", "value": 69.6,
                                            "low": 40, "high": 130})])
        # A camera's fall that got up again, and a fire lane's vision numbers.
        fall = dict(rule="fall", category=Category.FALL, severity=Severity.MAJOR,
                    dedup_key="fall:cam-q:7", grid_code="1101050010020104",
                    title="4号楼门口 跌倒")
        h.alerts.apply_now([Alarm(**fall, state=AlarmState.FIRING,
                                  ts=now - timedelta(minutes=5),
                                  evidence={"reason": "fast change to lying",
                                            "posture": "lying", "box_aspect": 1.85,
                                            "time_down_s": 2.0})])
        h.alerts.apply_now([Alarm(**fall, state=AlarmState.CLEARED,
                                  ts=now - timedelta(minutes=4),
                                  evidence={"reason": "got up", "posture": "upright",
                                            "time_down_s": 0.0})])
        h.alerts.apply_now([Alarm(
            rule="firelane", category=Category.FIRE_LANE, severity=Severity.MAJOR,
            state=AlarmState.FIRING, dedup_key="firelane:cam-q:lane",
            ts=now - timedelta(minutes=9), title="4号楼消防通道 占用",
            grid_code="1101050010020104", zone="lane",
            evidence={"share_of_zone": 0.295, "threshold": 0.12, "dwell_required_s": 60.0,
                      "light_gain": 1.08})])
        h.extra_pub = pub  # type: ignore[attr-defined]
        yield h
        pub.loop_stop()
        pub.disconnect()


@pytest.fixture(scope="module")
def strict_browser(browser: object) -> Iterator[object]:
    """Chromium that, like a desktop browser, blocks sound until the page is clicked
    (launched by the same Playwright as ``browser``)."""
    args = [a for a in ARGS if not a.startswith("--autoplay-policy")]
    b = browser.browser_type.launch(  # type: ignore[attr-defined]
        executable_path=chromium(),
        args=[*args, "--autoplay-policy=document-user-activation-required"])
    yield b
    b.close()


def _login(page: object, url: str, user: str = "operator") -> None:
    page.goto(url)  # type: ignore[attr-defined]
    page.fill("#login-user", user)  # type: ignore[attr-defined]
    page.fill("#login-pass", PASSWORD)  # type: ignore[attr-defined]
    page.click("#login-btn")  # type: ignore[attr-defined]


def _in_viewport(page: object, sel: str) -> bool:
    return page.evaluate(  # type: ignore[attr-defined]
        """(s) => { const r = document.querySelector(s).getBoundingClientRect();
                    return r.height > 0 && r.top >= 0 && r.bottom <= innerHeight; }""", sel)


def _until(page: object, js: str, timeout_s: float) -> None:
    """Poll a predicate by page.evaluate (the console's CSP refuses wait_for_function's
    eval)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(js):  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {js}"
        time.sleep(0.1)


def _sos(h: LiveHub) -> int:
    seed.sos(h.extra_pub, h.site.site.id)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with h.pool.connection() as conn:
            row = conn.execute("SELECT id FROM incidents WHERE category = 'sos' AND state ="
                               " 'reported' ORDER BY id DESC LIMIT 1").fetchone()
        if row:
            return int(row[0])
        time.sleep(0.1)
    raise AssertionError("the SOS made no incident")


def test_attention_bar_sticks_on_every_tab_and_reminds(browser: object, hub: LiveHub) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1366, "height": 560}, locale="zh-CN")  # type: ignore[attr-defined]
    ctx.grant_permissions(["notifications"], origin=hub.url)
    # Desktop notifications are recorded as well as shown.
    ctx.add_init_script("""(() => { const N = window.Notification; window.__notes = [];
        window.Notification = class extends N {
          constructor(t, o) { super(t, o); window.__notes.push(t); } }; })();""")
    page = ctx.new_page()
    errs = errors(page)
    _login(page, hub.url + "/")
    page.wait_for_selector("#wall .card")
    assert page.evaluate("fetch('/api/meta').then(r => r.json()).then(m => m.console.reminder_s)") \
        == REMINDER_S
    # The seeded fall is critical and unregistered: the bar rings (login was a click).
    page.wait_for_selector("#alert-banner:not([hidden])")
    page.wait_for_selector('body[data-audio="playing"]', state="attached")
    # A fall tells the worker and the grid leader at once (its notify_levels: 2).
    assert "已通知至 网格长" in page.inner_text("#alert-text")
    for tab in ("wall", "map", "devices", "stats"):
        page.click(f'#tabs button[data-tab="{tab}"]')
        page.wait_for_timeout(300)
        page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        page.wait_for_timeout(100)
        if tab in ("wall", "stats"):
            assert page.evaluate("scrollY") > 0, f"{tab}: nothing to scroll at 560 px"
        assert _in_viewport(page, "#alert-banner"), f"attention bar scrolled away on {tab}"
        page.screenshot(path=str(SHOTS / f"Q-attention-{tab}-zh-1366.png"))
    page.evaluate("window.scrollTo(0, 0)")
    page.click('#tabs button[data-tab="wall"]')

    # Reload: sound allowed here, so it rings without a click.
    page.reload()
    page.wait_for_selector("#alert-banner:not([hidden])")
    page.wait_for_selector('body[data-audio="playing"]', state="attached")
    assert page.inner_text("#sound-btn") == "🔊 正在响铃"
    # A language switch redraws the header's connection state and the sound button,
    # which keep the words they were drawn in otherwise ("实时" in English).
    page.wait_for_selector("#conn.live")
    page.click('header [data-lang="en"]')
    assert page.inner_text("#sound-btn") == "🔊 Sound on"
    assert page.inner_text("#conn") == "Live"
    page.click('header [data-lang="zh"]')
    assert page.inner_text("#sound-btn") == "🔊 正在响铃"
    assert page.inner_text("#conn") == "实时"

    # "知道了": silent, and back as a reminder after reminder_s while unregistered.
    page.click("#ack-btn")
    assert not page.is_visible("#alert-banner")
    assert page.get_attribute("body", "data-audio") == "idle"
    acked = time.monotonic()
    page.wait_for_selector('#alert-banner[data-reminder="1"]:not([hidden])',
                           timeout=(REMINDER_S + 4) * 1000)
    waited = time.monotonic() - acked
    assert REMINDER_S - 1 <= waited <= REMINDER_S + 3, waited
    assert "提醒" in page.inner_text("#alert-text")
    assert page.get_attribute("body", "data-audio") == "playing"
    page.click("#ack-btn")

    # In the background: a new SOS flashes the title and shows a desktop notification.
    page.evaluate(HIDE % "true")
    title = page.title()
    _sos(hub)
    _until(page, "() => window.__notes.some(t => t.includes('紧急呼叫'))", 5)
    _until(page, "() => document.title.startsWith('【紧急事件')", 3)
    page.evaluate(HIDE % "false")
    _until(page, f"() => document.title === {title!r}", 3)
    assert not errs, errs


def test_blocked_sound_says_click_to_enable(strict_browser: object, hub: LiveHub) -> None:
    ctx = strict_browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")  # type: ignore[attr-defined]
    page = ctx.new_page()
    _login(page, hub.url + "/")
    page.wait_for_selector("#alert-banner:not([hidden])")
    # The console opened again with the session kept but no click on the site yet (a
    # browser restarted overnight): Chromium lets a site that was clicked in this
    # profile play, reloads included, so a fresh profile with the cookie is the case.
    state = ctx.storage_state()
    ctx.close()
    ctx = strict_browser.new_context(  # type: ignore[attr-defined]
        viewport={"width": 1366, "height": 768}, locale="zh-CN", storage_state=state)
    page = ctx.new_page()
    # No waiting for selectors until the page has rung: Playwright's own evaluations
    # count as a user's gesture and would let the page play.
    page.goto(hub.url + "/", wait_until="networkidle")
    page.wait_for_timeout(1500)
    page.wait_for_selector("#alert-banner:not([hidden])")
    page.wait_for_selector('body[data-audio="blocked"]', state="attached", timeout=5000)
    assert page.is_visible("#sound-btn")
    assert page.inner_text("#sound-btn") == "🔇 点击启用声音"
    page.screenshot(path=str(SHOTS / "Q-sound-blocked-zh-1366.png"))
    page.click("#sound-btn")
    page.wait_for_selector('body[data-audio="playing"]', state="attached", timeout=5000)


def test_countdown_turns_amber_then_red_to_the_second(browser: object, hub: LiveHub) -> None:
    page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()  # type: ignore[attr-defined]
    _login(page, hub.url + "/")
    page.wait_for_selector("#wall .card .deadline")
    # A limit of 120 s: amber from 30 s left (the last quarter), red once over.
    got = page.evaluate("""async () => {
        const m = await import('/static/js/incident_extras.js');
        const root = document.createElement('div');
        const at = Date.parse('2026-03-02T02:02:00Z');
        root.innerHTML = '<span class="deadline" data-deadline="2026-03-02T02:02:00Z"'
          + ' data-limit="120" data-kind="accept"></span>';
        const el = root.firstChild, out = [];
        for (const s of [-31, -30, 0, 1]) {
          m.refreshDeadlines(root, at + s * 1000);
          out.push([s, el.classList.contains('near'), el.classList.contains('over'),
                    el.textContent]); }
        return out; }""")
    assert [g[:3] for g in got] == [[-31, False, False], [-30, True, False], [0, True, False],
                                    [1, False, True]]
    assert got[0][3] == "⏱ 签收时限 剩余 0:31" and got[3][3] == "⏱ 签收时限 已超时 0:01"
    # The critical fall tells two levels at once: the worker and the grid leader.
    fall = page.locator('#wall .card[data-category="fall"]:has-text("6-3-601")')
    assert "已通知至 网格长" in fall.locator(".badge.level").inner_text()
    assert "签收时限 剩余" in fall.locator(".deadline").inner_text()
    fall.click()
    page.wait_for_selector("#detail-deadline .deadline")
    assert "网格长" in page.inner_text("#detail-level")
    page.click('header button[data-lang="en"]')
    page.wait_for_selector('#detail-level:has-text("Grid leader")')
    assert page.evaluate("document.querySelector('#detail-deadline')"
                         ".previousElementSibling.textContent") == "Accept by"
    assert "Accept: " in page.inner_text("#detail-deadline")
    assert "Accept: " in fall.locator(".deadline").inner_text()
    page.screenshot(path=str(SHOTS / "Q-countdown-level-en-1366.png"))


def test_firing_numbers_and_resident_card(browser: object, hub: LiveHub) -> None:
    sos = _sos(hub)
    for lang in ("zh", "en"):
        page = browser.new_context(  # type: ignore[attr-defined]
            viewport={"width": 1366, "height": 900}, locale="zh-CN").new_page()
        errs = errors(page)
        page.add_init_script(f"localStorage.setItem('hub.lang', '{lang}')")
        _login(page, hub.url + "/")
        page.click("#ack-btn")
        page.click('#wall .card[data-category="vitals"]')
        page.wait_for_selector("#evidence-kv")
        fired = page.inner_text("#evidence-kv")
        assert "154.9 bpm / 152.5 bpm / 152.2 bpm" in fired, fired
        assert "69.6" not in fired
        latest = page.inner_text("#evidence-latest")
        assert "69.6 bpm" in latest and "154.9" not in latest, latest
        assert ("触发读数" if lang == "zh" else "Readings that fired") in fired
        assert ("心率" if lang == "zh" else "heart rate") in fired
        page.screenshot(path=str(SHOTS / f"Q-vitals-{lang}-1366.png"))
        # The cancelled-looking fall: why it fired, not "got up / upright / 0 s".
        page.click('#wall .card[data-category="fall"]:has-text("4号楼门口")')
        page.wait_for_selector('#detail-title:has-text("4号楼门口")')
        fired, latest = page.inner_text("#evidence-kv"), page.inner_text("#evidence-latest")
        if lang == "zh":
            assert "快速转为躺卧" in fired and "躺卧" in fired and "人体框宽高比" in fired, fired
            assert "已起身" in latest and "直立" in latest and "0 s" in latest, latest
        else:
            assert "fast change to lying" in fired and "Box aspect (w/h)" in fired, fired
            assert "got up" in latest, latest
        assert "1.85" in fired and "2 s" in fired
        page.click('#wall .card[data-category="fire_lane"]:has-text("4号楼")')
        page.wait_for_selector('#detail-title:has-text("4号楼消防通道")')
        fired = page.inner_text("#evidence-kv")
        assert "29.5%" in fired and "12.0%" in fired and "60 s" in fired and "×1.08" in fired
        assert ("占区域比例" if lang == "zh" else "Share of zone") in fired, fired
        assert ("判定停留时长" if lang == "zh" else "Dwell required") in fired, fired
        page.screenshot(path=str(SHOTS / f"Q-firelane-evidence-{lang}-1366.png"))
        page.click(f'#wall .card[data-id="{sos}"]')
        page.wait_for_selector("#resident")
        card = page.inner_text("#resident")
        assert "王秀英" in card
        assert ("3号楼 2 单元 5 层 501 室" if lang == "zh" else "unit 2, floor 5, room 501") in card
        assert page.get_attribute("#resident a.tel", "href") == "tel:13630178607"
        page.screenshot(path=str(SHOTS / f"Q-sos-resident-{lang}-1366.png"))
        assert not errs, errs

    # The phone view of the grid's worker: the same card, click to call.
    for lang in ("zh", "en"):
        m = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,  # type: ignore[attr-defined]
                                has_touch=True, device_scale_factor=2).new_page()
        m.add_init_script(f"localStorage.setItem('hub.lang', '{lang}')")
        _login(m, hub.url + "/m", "wang-wei")
        m.wait_for_selector(f'.item[data-id="{sos}"]').click()
        m.wait_for_selector("#resident a.tel")
        assert m.get_attribute("#resident a.tel", "href") == "tel:13630178607"
        assert "501" in m.inner_text("#resident")
        m.locator("#resident").scroll_into_view_if_needed()
        m.screenshot(path=str(SHOTS / f"Q-phone-resident-{lang}-390.png"))
    # Scoped like the incident: a worker of another grid reads neither.
    other = hub.session("liu-yang")
    assert other.get(f"/api/incidents/{sos}").status_code == 403
    own = hub.session("wang-wei").get(f"/api/incidents/{sos}").json()
    assert own["subject"]["contacts"][0]["phone"] == "13630178607"
    assert own["subject"]["flat"] == {"address": "3-2-501", "building": "3号楼",
                                      "building_no": "3", "unit": "2", "floor": 5,
                                      "room": "501"}
