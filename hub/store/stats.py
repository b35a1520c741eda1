"""Incident statistics per grid unit and period, as grid governance counts them:
how many by category, how many handled inside the grid vs. escalated, median time
to accept and to close, and the share cancelled as false alarms."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

_CHILD_LEN = {0: 6, 6: 9, 9: 12, 12: 14, 14: 16, 16: 16}

_SQL = """
SELECT {group} AS key,
       count(*)                                                        AS total,
       count(*) FILTER (WHERE state NOT IN ('cancelled', 'closed'))    AS open,
       count(*) FILTER (WHERE state = 'closed')                        AS closed,
       count(*) FILTER (WHERE state = 'cancelled')                     AS cancelled,
       count(*) FILTER (WHERE state = 'closed' AND escalations = 0)    AS handled_in_grid,
       count(*) FILTER (WHERE escalations > 0)                         AS escalated,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY
           extract(epoch FROM accepted_at - opened_at))
           FILTER (WHERE accepted_at IS NOT NULL)                      AS median_accept_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY
           extract(epoch FROM closed_at - opened_at))
           FILTER (WHERE state = 'closed')                             AS median_close_s
FROM incidents
WHERE starts_with(coalesce(grid_code, ''), %(scope)s)
  AND opened_at >= %(since)s AND opened_at < %(until)s
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
        "median_accept_s": None if r["median_accept_s"] is None else float(r["median_accept_s"]),
        "median_close_s": None if r["median_close_s"] is None else float(r["median_close_s"]),
        # Share of finished incidents that were false alarms.
        "false_share": (int(r["cancelled"]) / done) if done else None,
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
             "escalated": 0, "median_accept_s": None, "median_close_s": None,
             "false_share": None}
    return {
        "scope": scope,
        "since": since,
        "until": until,
        "totals": _row(total[0]) if total else empty,
        "by_category": {r["key"]: _row(r) for r in by_cat},
        "by_unit": {r["key"]: _row(r) for r in by_unit if r["key"]},
    }
