"""Silences (maintenance windows, muted devices or zones) as the engine takes them,
read from the ``silences`` table."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import psycopg

from hub.alerts.policy import Silence

log = logging.getLogger(__name__)


def load_silences(conn: psycopg.Connection[Any], now: datetime) -> list[Silence]:
    """Silences not ended a day before ``now``; a row the engine could not use (an
    unknown category) is logged and skipped rather than failing the others."""
    rows = conn.execute(
        "SELECT id, device_id, zone, subject_id, category, grid_code, starts_at,"
        " ends_at, reason, created_by, maintenance FROM silences"
        " WHERE ends_at > %s ORDER BY id", (now - timedelta(days=1),),
    ).fetchall()
    out = []
    for r in rows:
        try:
            out.append(Silence(
                id=str(r[0]), device_id=r[1], zone=r[2], subject_id=r[3],
                category=r[4] or None, grid_code=r[5], start=r[6],
                end=r[7], reason=r[8], created_by=r[9], maintenance=r[10]))
        except ValueError as e:
            log.warning("ignoring an unusable silence", extra={"silence": r[0],
                                                               "error": str(e)})
    return out
