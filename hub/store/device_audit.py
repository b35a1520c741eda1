"""The device audit trail: what people did to a device (an operator renewing a
camera's empty-lane reference), append-only like the incidents' audit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True, slots=True)
class DeviceAuditEntry:
    device_id: str
    at: datetime
    actor: str
    action: str
    data: dict[str, Any]
    source: str | None = None
    id: int = 0


def record(conn: psycopg.Connection[Any], e: DeviceAuditEntry) -> int:
    row = conn.execute(
        "INSERT INTO device_audit (device_id, at, actor, action, data, source)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (e.device_id, e.at, e.actor, e.action, Jsonb(e.data), e.source)).fetchone()
    assert row is not None
    return int(row[0])


def for_device(conn: psycopg.Connection[Any], device_id: str,
               limit: int = 50) -> list[DeviceAuditEntry]:
    rows = conn.execute(
        "SELECT id, device_id, at, actor, action, data, source FROM device_audit"
        " WHERE device_id = %s ORDER BY id DESC LIMIT %s", (device_id, limit)).fetchall()
    return [DeviceAuditEntry(device_id=r[1], at=r[2], actor=r[3], action=r[4], data=r[5],
                             source=r[6], id=r[0]) for r in rows]
