"""The family cascades and answer links in PostgreSQL (migration 0010): the pure
cascade's state as JSON with its next deadline, and the links by their hash."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from hub.family.cascade import Cascade


def candidates(conn: psycopg.Connection[Any], categories: Sequence[str], subjects: Sequence[str],
               since: datetime, limit: int = 100) -> list[tuple[int, str]]:
    """Open incidents of these categories about these subjects with no cascade yet."""
    rows = conn.execute(
        "SELECT i.id, i.subject_id FROM incidents i"
        " WHERE i.subject_id = ANY(%s) AND i.category = ANY(%s)"
        " AND i.state NOT IN ('cancelled', 'closed') AND i.opened_at >= %s"
        " AND NOT EXISTS (SELECT 1 FROM family_cascades f WHERE f.incident_id = i.id)"
        " ORDER BY i.id LIMIT %s",
        (list(subjects), list(categories), since, limit)).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def create(conn: psycopg.Connection[Any], incident_id: int, subject_id: str, c: Cascade,
           now: datetime) -> bool:
    """False when another worker started this incident's cascade first."""
    row = conn.execute(
        "INSERT INTO family_cascades (incident_id, subject_id, state, deadline_at, started_at,"
        " updated_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
        (incident_id, subject_id, Jsonb(c.to_json()), c.deadline, now, now)).fetchone()
    return row is not None


def lock_due(conn: psycopg.Connection[Any], now: datetime,
             limit: int = 100) -> list[tuple[int, Cascade]]:
    """Cascades whose window ended, locked for this transaction."""
    rows = conn.execute(
        "SELECT incident_id, state FROM family_cascades WHERE deadline_at <= %s"
        " ORDER BY deadline_at LIMIT %s FOR UPDATE SKIP LOCKED", (now, limit)).fetchall()
    return [(int(r[0]), Cascade.from_json(r[1])) for r in rows]


def lock(conn: psycopg.Connection[Any], incident_id: int) -> Cascade | None:
    row = conn.execute("SELECT state FROM family_cascades WHERE incident_id = %s FOR UPDATE",
                       (incident_id,)).fetchone()
    return Cascade.from_json(row[0]) if row else None


def get(conn: psycopg.Connection[Any], incident_id: int) -> Cascade | None:
    row = conn.execute("SELECT state FROM family_cascades WHERE incident_id = %s",
                       (incident_id,)).fetchone()
    return Cascade.from_json(row[0]) if row else None


def save(conn: psycopg.Connection[Any], incident_id: int, c: Cascade, now: datetime) -> None:
    conn.execute("UPDATE family_cascades SET state = %s, deadline_at = %s, updated_at = %s"
                 " WHERE incident_id = %s", (Jsonb(c.to_json()), c.deadline, now, incident_id))


def add_link(conn: psycopg.Connection[Any], token_hash: bytes, incident_id: int, contact: int,
             expires: datetime) -> None:
    conn.execute("INSERT INTO family_links (token_hash, incident_id, contact, expires_at)"
                 " VALUES (%s, %s, %s, %s)", (token_hash, incident_id, contact, expires))


def use_link(conn: psycopg.Connection[Any], token_hash: bytes, answer: str,
             now: datetime) -> tuple[int, int] | None:
    """Mark an unused, unexpired link used; (incident, contact) or None."""
    row = conn.execute(
        "UPDATE family_links SET used_at = %s, answer = %s WHERE token_hash = %s"
        " AND used_at IS NULL AND expires_at > %s RETURNING incident_id, contact",
        (now, answer, token_hash, now)).fetchone()
    return (int(row[0]), int(row[1])) if row else None


def link_state(conn: psycopg.Connection[Any], token_hash: bytes) -> str | None:
    """``unused``, ``used`` or None (unknown)."""
    row = conn.execute("SELECT used_at FROM family_links WHERE token_hash = %s",
                       (token_hash,)).fetchone()
    if row is None:
        return None
    return "used" if row[0] else "unused"
