"""Notes in an incident's timeline (the append-only ``audit`` table) for what the
notifiers did: a delivery that failed or was given up, a gateway's receipt, each
step of the family cascade. The incident's state is unchanged, so the row names it
as both from and to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def note(conn: psycopg.Connection[Any], incident_id: int, at: datetime, action: str, *,
         actor: str = "system:notify", reason: str | None = None,
         data: dict[str, Any] | None = None) -> bool:
    """Append one row; False when the incident does not exist."""
    row = conn.execute(
        "INSERT INTO audit (incident_id, at, actor, action, from_state, to_state, reason,"
        " data, source) SELECT id, %s, %s, %s, state, state, %s, %s, 'system'"
        " FROM incidents WHERE id = %s RETURNING id",
        (at, actor, action, reason, Jsonb(data or {}), incident_id)).fetchone()
    return row is not None
