"""The console's device page and statistics in a real headless Chromium against a
running hub: every row of the device table carries its type and grid (not only the
first), the side panel shows the selected device; the stacked "by grid" bar adds up
to the grid's total even when an open incident has escalated."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.services import Broker
from tests.e2e import seed
from tests.e2e.browser import errors
from tests.e2e.live import PASSWORD, LiveHub, running_hub

SHOTS = Path("/work/notes/shots")


@pytest.fixture
def hub(db_url: str, broker: Broker, site_id: str, tmp_path: Path) -> Iterator[LiveHub]:
    with running_hub(db_url, broker, site_id, tmp_path) as h:
        pub = seed.publisher(h)
        seed.devices_online(pub, h, except_={"water-6-3-601"})
        seed.wearable_history(pub, h)
        seed.incidents(h)
        yield h
        pub.loop_stop()
        pub.disconnect()


def _login(browser: object, hub: LiveHub, lang: str = "zh-CN",
           viewport: tuple[int, int] = (1366, 900)) -> object:
    ctx = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},  # type: ignore[attr-defined]
                              locale=lang)
    page = ctx.new_page()
    page.goto(hub.url + "/")
    page.fill("#login-user", "operator")
    page.fill("#login-pass", PASSWORD)
    page.click("#login-btn")
    page.wait_for_selector("#wall .card")
    return page


def test_every_device_row_has_type_and_grid(browser: object, hub: LiveHub) -> None:
    page = _login(browser, hub)
    errs = errors(page)
    page.click('#tabs button[data-tab="devices"]')  # type: ignore[attr-defined]
    page.wait_for_selector("#dev-table tbody tr:nth-child(2)")  # type: ignore[attr-defined]
    rows = page.locator("#dev-table tbody tr")  # type: ignore[attr-defined]
    assert rows.count() >= 2
    for i in range(rows.count()):
        row = rows.nth(i)
        dev = next(d for d in hub.site.devices if d.id == row.get_attribute("data-device"))
        cells = row.locator("td")
        assert cells.count() == 5, (i, dev.id, row.inner_html())
        kind = cells.nth(2).inner_text().strip()
        grid = cells.nth(3).inner_text().strip()
        assert kind and kind != dev.kind, (i, dev.id, kind)  # a translated name, not the code
        assert grid, (i, dev.id)
    assert not errs, errs


def test_stacked_by_grid_bar_adds_up_to_grid_total(browser: object, hub: LiveHub) -> None:
    # An open incident that has escalated counted once as escalated and once as open.
    with hub.pool.connection() as conn:
        conn.execute("UPDATE incidents SET escalations = 1 WHERE dedup_key = 'inactivity:s02'")
    page = _login(browser, hub)
    errs = errors(page)
    page.click('#tabs button[data-tab="stats"]')  # type: ignore[attr-defined]
    page.wait_for_selector("#chart-units svg rect[data-group]", state="attached")  # type: ignore[attr-defined]
    sums: dict[str, float] = {}
    for r in page.locator("#chart-units svg rect[data-group]").all():  # type: ignore[attr-defined]
        g = r.get_attribute("data-group")
        sums[g] = sums.get(g, 0) + float(r.get_attribute("data-value"))
    totals = {t.get_attribute("data-group"): float(t.get_attribute("data-total"))
              for t in page.locator("#chart-units svg text[data-total]").all()}  # type: ignore[attr-defined]
    assert sums and sums == totals, (sums, totals)
    # And the totals are the API's per-grid totals.
    c = hub.session("operator")
    grid = page.input_value("#s-grid")  # type: ignore[attr-defined]
    s = c.get("/api/stats", params={"grid": grid} if grid else {}).json()
    c.close()
    api_totals = sorted(float(u["total"]) for u in s["by_unit"].values())
    assert sorted(totals.values()) == api_totals
    assert not errs, errs


def test_device_search_filters_and_side_panel(browser: object, hub: LiveHub) -> None:
    page = _login(browser, hub)
    errs = errors(page)
    page.click('#tabs button[data-tab="devices"]')  # type: ignore[attr-defined]
    page.wait_for_selector("#dev-table tbody tr[data-device]")  # type: ignore[attr-defined]
    n_all = page.locator("#dev-table tbody tr[data-device]").count()  # type: ignore[attr-defined]
    page.fill("#dev-q", "wearable-3-2")  # type: ignore[attr-defined]
    ids = [r.get_attribute("data-device")
           for r in page.locator("#dev-table tbody tr[data-device]").all()]  # type: ignore[attr-defined]
    assert ids == ["wearable-3-2-501"]
    page.fill("#dev-q", "")  # type: ignore[attr-defined]
    page.select_option("#dev-health", "offline")  # type: ignore[attr-defined]
    ids = [r.get_attribute("data-device")
           for r in page.locator("#dev-table tbody tr[data-device]").all()]  # type: ignore[attr-defined]
    assert ids == ["water-6-3-601"], ids  # the one seeded silent
    page.select_option("#dev-health", "")  # type: ignore[attr-defined]
    page.select_option("#dev-kind", "wearable")  # type: ignore[attr-defined]
    kinds = {r.get_attribute("data-device").split("-")[0]
             for r in page.locator("#dev-table tbody tr[data-device]").all()}  # type: ignore[attr-defined]
    assert kinds == {"wearable"}
    page.select_option("#dev-kind", "")  # type: ignore[attr-defined]
    assert page.locator("#dev-table tbody tr[data-device]").count() == n_all  # type: ignore[attr-defined]
    # The side panel: details, latest values with units, the chart with a legend
    # (swatch, label in words) and the vitals rule's limits as threshold lines.
    page.click('#dev-table tr[data-device="wearable-3-2-501"]')  # type: ignore[attr-defined]
    page.wait_for_selector("#dev-side #readings-chart svg path")  # type: ignore[attr-defined]
    side = page.inner_text("#dev-side")  # type: ignore[attr-defined]
    assert "wearable-3-2-501" in side and "手环" in side and "bpm" in side
    legend = page.inner_text("#dev-side .chart-legend")  # type: ignore[attr-defined]
    assert "心率" in legend and "heart_rate" not in legend
    assert page.locator("#dev-side .chart-legend i").count() >= 2  # type: ignore[attr-defined]
    lines = {float(x.get_attribute("data-threshold"))
             for x in page.locator("#dev-side line.threshold").all()}  # type: ignore[attr-defined]
    r = hub.site.rules.vitals
    assert {r.heart_rate[0], r.heart_rate[1], r.spo2[0]} <= lines
    assert not errs, errs


def _flap_fall(hub: LiveHub, cycles: int = 7) -> None:
    """The seeded fall's alarm clears and fires again every 12 s for about 3 minutes,
    then an SOS of the same resident is grouped with it."""
    from datetime import UTC, datetime, timedelta

    from hub.domain import Alarm, AlarmState, Category, Severity

    now = datetime.now(UTC) - timedelta(minutes=3)
    a = hub.alerts
    for i in range(cycles * 2):
        a.apply_now([Alarm(
            rule="fall", category=Category.FALL, severity=Severity.CRITICAL,
            state=AlarmState.CLEARED if i % 2 == 0 else AlarmState.FIRING,
            dedup_key="fall:s03", ts=now + timedelta(seconds=12 * i + 1),
            title="6-3-601 老人跌倒", grid_code="1101050010020202", subject_id="s03",
            evidence={"posture": "lying" if i % 2 else "upright"})])
    a.apply_now([Alarm(
        rule="sos", category=Category.SOS, severity=Severity.CRITICAL,
        state=AlarmState.FIRING, dedup_key="sos:s03", ts=datetime.now(UTC),
        title="6-3-601 紧急按钮", grid_code="1101050010020202", subject_id="s03",
        device_id="sos-6-3-601", evidence={})])


def test_flapping_alarm_collapses_and_group_link_opens(browser: object, hub: LiveHub) -> None:
    _flap_fall(hub)
    c = hub.session("operator")
    incs = c.get("/api/incidents", params={"limit": 50}).json()
    c.close()
    items = incs["items"] if isinstance(incs, dict) else incs
    fall = next(i for i in items if i["category"] == "fall")
    sos = next(i for i in items if i["category"] == "sos")
    page = _login(browser, hub)
    errs = errors(page)
    page.click(f'#wall .card[data-id="{fall["id"]}"]')  # type: ignore[attr-defined]
    page.wait_for_selector("#detail .timeline li.flap")  # type: ignore[attr-defined]
    flap = page.locator("#detail .timeline li.flap")  # type: ignore[attr-defined]
    assert flap.count() == 1
    assert int(flap.get_attribute("data-flap-rows")) == 14  # 7 clears, 7 refires
    summary = flap.locator("summary").inner_text()
    assert "告警反复 7 次" in summary
    # The alarms' times (about 3 minutes), not when the hub wrote the rows.
    first, last = summary.split("(")[1].rstrip(")").split("–")
    assert first != last, summary
    assert not flap.locator("details ul").is_visible()  # collapsed
    flap.locator("summary").click()
    assert flap.locator("details ul > li").count() == 14
    page.screenshot(path=str(SHOTS / "R-timeline-zh-1366.png"), full_page=True)  # type: ignore[attr-defined]
    # The SOS was grouped with the fall: its timeline links to the fall, which opens.
    page.click(f'#wall .card[data-id="{sos["id"]}"]')  # type: ignore[attr-defined]
    link = page.locator(f'#detail a[data-open-incident="{fall["id"]}"]')  # type: ignore[attr-defined]
    link.wait_for()
    assert f"与事件 {fall['id']} 关联" in link.inner_text()
    link.click()
    page.wait_for_selector("#detail .timeline li.flap")  # type: ignore[attr-defined]
    assert page.inner_text("#detail dl.kv dd").strip() == str(fall["id"])  # type: ignore[attr-defined]
    assert not errs, errs


def test_stats_trend_and_exports(browser: object, hub: LiveHub) -> None:
    page = _login(browser, hub)
    errs = errors(page)
    page.click('#tabs button[data-tab="stats"]')  # type: ignore[attr-defined]
    page.wait_for_selector("#chart-trend svg rect[data-group]", state="attached")  # type: ignore[attr-defined]
    trend = sum(float(r.get_attribute("data-value"))
                for r in page.locator("#chart-trend svg rect[data-group]").all())  # type: ignore[attr-defined]
    assert trend == float(page.inner_text('.stat[data-stat="total"] .v'))  # type: ignore[attr-defined]
    with page.expect_download() as d:  # type: ignore[attr-defined]
        page.click("#s-xlsx")  # type: ignore[attr-defined]
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(Path(d.value.path()).read_bytes()))
    assert "by grid unit" in wb.sheetnames and "per day" in wb.sheetnames
    day_rows = list(wb["per day"].iter_rows(min_row=3, values_only=True))
    assert sum(r[-1] for r in day_rows) == trend
    with page.expect_download() as d:  # type: ignore[attr-defined]
        page.click("#s-csv")  # type: ignore[attr-defined]
    text = Path(d.value.path()).read_text(encoding="utf-8-sig")
    assert "按网格 / by grid unit" in text
    assert not errs, errs


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_screenshots(browser: object, hub: LiveHub, lang: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for w, h in ((1366, 900), (390, 844)):
        page = _login(browser, hub, viewport=(w, h))
        errs = errors(page)
        page.click(f'header button[data-lang="{lang}"]')  # type: ignore[attr-defined]
        page.click('#tabs button[data-tab="devices"]')  # type: ignore[attr-defined]
        page.click('#dev-table tr[data-device="wearable-3-2-501"]')  # type: ignore[attr-defined]
        page.wait_for_selector("#dev-side #readings-chart svg path")  # type: ignore[attr-defined]
        page.screenshot(path=str(SHOTS / f"R-devices-{lang}-{w}.png"), full_page=True)  # type: ignore[attr-defined]
        page.click('#tabs button[data-tab="stats"]')  # type: ignore[attr-defined]
        page.wait_for_selector("#chart-trend svg rect[data-group]", state="attached")  # type: ignore[attr-defined]
        page.screenshot(path=str(SHOTS / f"R-stats-{lang}-{w}.png"), full_page=True)  # type: ignore[attr-defined]
        assert not errs, errs
        page.context.close()  # type: ignore[attr-defined]
