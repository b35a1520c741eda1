"""Statistics through the API: the stacked bar's shares add up to the total, the
trend per day and per week of the site's time zone, and the CSV and Excel exports,
scoped to the caller's grids."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from hub.alerts.service import AlertService
from hub.api.deps import Principal
from hub.domain import Severity
from tests.integration.alerting import GRID1, T0, alarm
from tests.integration.api_support import H, api_env

GRID2 = "11010500100202"
USERS = {"op": Principal("2", "operator", ""), "op-grid2": Principal("3", "operator", GRID2)}
SINCE = (T0 - timedelta(days=2)).isoformat()
UNTIL = (T0 + timedelta(days=2)).isoformat()
PERIOD = {"since": SINCE, "until": UNTIL}


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, AlertService]]:
    with api_env(db_url, tmp_path, USERS) as e:
        yield e


def _mixed(svc: AlertService) -> None:
    """In grid 1: one closed in the grid, one cancelled, two open that escalated,
    one open fresh; in grid 2 one open. (Water: an SOS needs an on-site check
    before closing.)"""
    ids = [r.incident.id for r in svc.apply_now(
        [alarm(f"water:{i}", ts=T0 + timedelta(seconds=i), category="water",
               severity=Severity.MINOR) for i in range(4)]) if r.incident]
    svc.transition(ids[0], "register", "op")
    svc.transition(ids[0], "dispatch", "op", assignee="wang-wei")
    svc.transition(ids[0], "accept", "wang-wei")
    svc.transition(ids[0], "handle", "wang-wei", reason="helped up")
    svc.transition(ids[0], "close", "op")
    svc.transition(ids[1], "cancel", "op", reason="false alarm")
    svc.clock.advance(3600)  # type: ignore[attr-defined]
    assert svc.tick()  # ids[2] and ids[3] ran out of their accept time: escalated
    # A fresh one after the escalation, and one in grid 2.
    svc.apply_now([alarm("sos:late", ts=svc.clock.now()),
                   alarm("sos:g2", ts=svc.clock.now(), grid_code=GRID2 + "01")])


def test_stacked_shares_add_up_to_each_grid_total(env: tuple[TestClient, AlertService]) -> None:
    client, svc = env
    _mixed(svc)
    s = client.get("/api/stats", params={**PERIOD, "grid": GRID1[:12]}, headers=H("op")).json()
    g1 = s["by_unit"][GRID1]
    assert g1["total"] == 5 and s["by_unit"][GRID2]["total"] == 1
    # escalated and open overlap: adding them counts the escalated open ones twice.
    assert g1["handled_in_grid"] + g1["escalated"] + g1["open"] > g1["total"]
    for f in [*s["by_unit"].values(), s["totals"]]:
        assert (f["handled_in_grid"] + f["escalated_kept"] + f["open_in_grid"]
                + f["cancelled"]) == f["total"], f


def test_trend_counts_per_day_and_week_of_the_site_time_zone(
        env: tuple[TestClient, AlertService]) -> None:
    client, svc = env
    assert svc.site.site.timezone == "Asia/Shanghai"  # UTC+8 all year
    # 2026-03-01 23:00 UTC is 03-02 07:00 in Beijing; 03-02 16:30 UTC is 03-03 00:30.
    svc.clock.advance(16 * 3600)  # type: ignore[attr-defined]
    svc.apply_now([alarm("sos:a", ts=T0 - timedelta(hours=10)), alarm("sos:b", ts=T0),
                   alarm("fl:c", ts=T0 + timedelta(hours=7, minutes=30), category="fire_lane")])
    r = client.get("/api/stats/trend", params=PERIOD, headers=H("op"))
    assert r.status_code == 200, r.text
    assert r.json()["points"] == [
        {"start": "2026-03-02", "counts": {"sos": 2}},
        {"start": "2026-03-03", "counts": {"fire_lane": 1}},
    ]
    w = client.get("/api/stats/trend", params={**PERIOD, "bucket": "week"},
                   headers=H("op")).json()
    assert date(2026, 3, 2).weekday() == 0
    assert w["points"] == [{"start": "2026-03-02", "counts": {"fire_lane": 1, "sos": 2}}]
    assert client.get("/api/stats/trend", params={"bucket": "month"},
                      headers=H("op")).status_code == 422


def test_exports_hold_the_statistics_of_my_grids_only(
        env: tuple[TestClient, AlertService]) -> None:
    client, svc = env
    _mixed(svc)
    r = client.get("/api/stats/export", params={**PERIOD, "format": "xlsx"},
                   headers=H("op"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert 'filename="stats-site-' in r.headers["content-disposition"]
    wb = load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["period", "totals", "by category", "by grid unit", "per day"]
    totals = list(wb["totals"].iter_rows(min_row=3, values_only=True))
    assert totals[0][0] == 6  # total
    per_day = list(wb["per day"].iter_rows(min_row=3, values_only=True))
    assert sum(row[-1] for row in per_day) == 6
    # An operator of grid 2 gets grid 2's figures, never grid 1's.
    r = client.get("/api/stats/export", params=PERIOD, headers=H("op-grid2"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    start = rows.index(["按网格 / by grid unit"])
    units = [row[0] for row in rows[start + 2:] if row][:1]
    assert units and all(u.startswith(GRID2) for u in units)
    tot = rows[rows.index(["合计 / totals"]) + 2]
    assert tot[0] == "1"
    assert client.get("/api/stats/export", params={"grid": GRID1},
                      headers=H("op-grid2")).status_code == 403
    assert client.get("/api/stats/export", params={"format": "pdf"},
                      headers=H("op")).status_code == 422
