"""Incident statistics per grid unit and period, as grid governance counts them:
how many by category, how many handled inside the grid vs. escalated, median time
to accept and to close, and the share cancelled as false alarms; the case flow's
returned (退回), parked (挂账, open) and supervised (督办) cases; self-handled (closed
inside the grid, 小事不出网格) vs transferred (escalated, or dispatched to someone
outside the case's grid)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

_CHILD_LEN = {0: 6, 6: 9, 9: 12, 12: 14, 14: 16, 16: 16}

_SQL = """
WITH flow AS (
    SELECT i.*,
           EXISTS (SELECT 1 FROM audit a WHERE a.incident_id = i.id
                   AND a.action = 'return')                            AS was_returned,
           EXISTS (SELECT 1 FROM audit a WHERE a.incident_id = i.id
                   AND a.action = 'supervise')                         AS was_supervised,
           (i.escalations > 0 OR EXISTS (
               SELECT 1 FROM audit a WHERE a.incident_id = i.id AND a.action = 'dispatch'
               AND (a.data ->> 'outside_grid')::boolean))              AS was_transferred
    FROM incidents i
    WHERE starts_with(coalesce(i.grid_code, ''), %(scope)s)
      AND i.opened_at >= %(since)s AND i.opened_at < %(until)s
)
SELECT {group} AS key,
       count(*)                                                        AS total,
       count(*) FILTER (WHERE state NOT IN ('cancelled', 'closed'))    AS open,
       count(*) FILTER (WHERE state = 'closed')                        AS closed,
       count(*) FILTER (WHERE state = 'cancelled')                     AS cancelled,
       count(*) FILTER (WHERE state = 'closed' AND escalations = 0)    AS handled_in_grid,
       count(*) FILTER (WHERE escalations > 0)                         AS escalated,
       count(*) FILTER (WHERE state NOT IN ('cancelled', 'closed')
                          AND escalations = 0)                         AS open_in_grid,
       count(*) FILTER (WHERE state <> 'cancelled' AND escalations > 0) AS escalated_kept,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY
           extract(epoch FROM accepted_at - opened_at))
           FILTER (WHERE accepted_at IS NOT NULL)                      AS median_accept_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY
           extract(epoch FROM closed_at - opened_at))
           FILTER (WHERE state = 'closed')                             AS median_close_s,
       count(*) FILTER (WHERE was_returned)                            AS returned,
       count(*) FILTER (WHERE state = 'parked')                        AS parked,
       count(*) FILTER (WHERE was_supervised)                          AS supervised,
       count(*) FILTER (WHERE state = 'closed' AND NOT was_transferred) AS self_handled,
       count(*) FILTER (WHERE was_transferred)                         AS transferred
FROM flow
GROUP BY 1 ORDER BY 1
"""


def _row(r: dict[str, Any]) -> dict[str, Any]:
    total = int(r["total"])
    done = int(r["closed"]) + int(r["cancelled"])
    return {
        "total": total,
        "open": int(r["open"]),
        "closed": int(r["closed"]),
        "cancelled": int(r["cancelled"]),
        "handled_in_grid": int(r["handled_in_grid"]),
        "escalated": int(r["escalated"]),
        # A partition of total for a stacked bar (escalated and open overlap):
        # handled_in_grid + escalated_kept + open_in_grid + cancelled == total.
        "open_in_grid": int(r["open_in_grid"]),
        "escalated_kept": int(r["escalated_kept"]),
        "median_accept_s": None if r["median_accept_s"] is None else float(r["median_accept_s"]),
        "median_close_s": None if r["median_close_s"] is None else float(r["median_close_s"]),
        # Share of finished incidents that were false alarms.
        "false_share": (int(r["cancelled"]) / done) if done else None,
        "returned": int(r["returned"]),
        "parked": int(r["parked"]),
        "supervised": int(r["supervised"]),
        "self_handled": int(r["self_handled"]),
        "transferred": int(r["transferred"]),
    }


def incident_stats(conn: psycopg.Connection[Any], scope: str, since: datetime,
                   until: datetime) -> dict[str, Any]:
    """Totals, by category and by child grid unit of ``scope`` ("" = whole site)."""
    args = {"scope": scope, "since": since, "until": until}
    child_len = _CHILD_LEN.get(len(scope), len(scope))
    with conn.cursor(row_factory=dict_row) as cur:
        total = cur.execute(_SQL.format(group="''"), args).fetchall()
        by_cat = cur.execute(_SQL.format(group="category"), args).fetchall()
        by_unit = cur.execute(
            _SQL.format(group=f"left(coalesce(grid_code, ''), {child_len})"), args
        ).fetchall()
    empty = {"total": 0, "open": 0, "closed": 0, "cancelled": 0, "handled_in_grid": 0,
             "escalated": 0, "open_in_grid": 0, "escalated_kept": 0,
             "median_accept_s": None, "median_close_s": None,
             "false_share": None, "returned": 0, "parked": 0, "supervised": 0,
             "self_handled": 0, "transferred": 0}
    return {
        "scope": scope,
        "since": since,
        "until": until,
        "totals": _row(total[0]) if total else empty,
        "by_category": {r["key"]: _row(r) for r in by_cat},
        "by_unit": {r["key"]: _row(r) for r in by_unit if r["key"]},
    }


Bucket = Literal["day", "week"]

_TREND_SQL = """
SELECT date_trunc(%(bucket)s, opened_at AT TIME ZONE %(tz)s) AS start, category, count(*) AS n
FROM incidents
WHERE starts_with(coalesce(grid_code, ''), %(scope)s)
  AND opened_at >= %(since)s AND opened_at < %(until)s
GROUP BY 1, 2 ORDER BY 1, 2
"""


def incident_trend(conn: psycopg.Connection[Any], scope: str, since: datetime,
                   until: datetime, bucket: Bucket, tz: str = "UTC"
                   ) -> list[dict[str, Any]]:
    """Incidents per day or ISO week (Monday) of first alarm, by category, in the
    time zone ``tz`` (a day is the site's day, not UTC's). Buckets without an
    incident are left out; each row is ``{start: date, counts: {category: n}}``."""
    args = {"scope": scope, "since": since, "until": until, "bucket": bucket, "tz": tz}
    out: dict[date, dict[str, int]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for r in cur.execute(_TREND_SQL, args):
            out.setdefault(r["start"].date(), {})[r["category"]] = int(r["n"])
    return [{"start": k, "counts": v} for k, v in out.items()]
