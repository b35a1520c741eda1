"""Web Push subscriptions (migration 0007) and the re-notification rows of the
outbox.

A subscription belongs to a user and to the session that made it: deleting the
session (logout, expiry, password change) deletes it by the foreign key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from hub.store.users import token_digest


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    user_id: int
    endpoint: str
    p256dh: str
    auth: str

    def info(self) -> dict[str, Any]:
        """The ``subscription_info`` pywebpush takes."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def save(conn: psycopg.Connection[Any], user_id: int, session_token: str | None,
         endpoint: str, p256dh: str, auth: str, user_agent: str = "") -> int:
    """Store (or take over) the subscription of ``endpoint``; returns its id. A
    browser re-subscribing after another user's logout is now this user's."""
    row = conn.execute(
        "INSERT INTO push_subscriptions (user_id, session_hash, endpoint, p256dh, auth,"
        " user_agent) VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (endpoint) DO UPDATE SET user_id = EXCLUDED.user_id,"
        " session_hash = EXCLUDED.session_hash, p256dh = EXCLUDED.p256dh,"
        " auth = EXCLUDED.auth, user_agent = EXCLUDED.user_agent, last_error = NULL"
        " RETURNING id",
        (user_id, token_digest(session_token) if session_token else None, endpoint,
         p256dh, auth, user_agent[:200]),
    ).fetchone()
    assert row is not None
    return int(row[0])


def remove(conn: psycopg.Connection[Any], user_id: int, endpoint: str) -> bool:
    cur = conn.execute("DELETE FROM push_subscriptions WHERE user_id = %s AND endpoint = %s",
                       (user_id, endpoint))
    return cur.rowcount > 0


def gone(conn: psycopg.Connection[Any], subscription_id: int) -> None:
    """The push service said the subscription no longer exists (404/410)."""
    conn.execute("DELETE FROM push_subscriptions WHERE id = %s", (subscription_id,))


def for_user(conn: psycopg.Connection[Any], user_id: int) -> list[Subscription]:
    rows = conn.execute(
        "SELECT id, user_id, endpoint, p256dh, auth FROM push_subscriptions"
        " WHERE user_id = %s ORDER BY id", (user_id,)).fetchall()
    return [Subscription(*r) for r in rows]


def for_person(conn: psycopg.Connection[Any], person_id: str) -> list[Subscription]:
    """Every subscription of the enabled users linked to the site's person."""
    rows = conn.execute(
        "SELECT s.id, s.user_id, s.endpoint, s.p256dh, s.auth FROM push_subscriptions s"
        " JOIN users u ON u.id = s.user_id"
        " WHERE u.person_id = %s AND NOT u.disabled ORDER BY s.id", (person_id,)).fetchall()
    return [Subscription(*r) for r in rows]


def subscribed(conn: psycopg.Connection[Any], person_ids: set[str]) -> set[str]:
    """Which of the site's people have a subscription through an enabled user."""
    if not person_ids:
        return set()
    rows = conn.execute(
        "SELECT DISTINCT u.person_id FROM push_subscriptions s JOIN users u ON u.id = s.user_id"
        " WHERE u.person_id = ANY(%s) AND NOT u.disabled", (sorted(person_ids),)).fetchall()
    return {str(r[0]) for r in rows}


def mark(conn: psycopg.Connection[Any], subscription_id: int, now: datetime,
         error: str | None) -> None:
    if error is None:
        conn.execute("UPDATE push_subscriptions SET last_ok_at = %s, last_error = NULL"
                     " WHERE id = %s", (now, subscription_id))
    else:
        conn.execute("UPDATE push_subscriptions SET last_error = %s WHERE id = %s",
                     (error[:300], subscription_id))


def schedule(conn: psycopg.Connection[Any], incident_id: int | None, recipient: str,
             payload: dict[str, Any], now: datetime, at: datetime) -> None:
    """An outbox row of the ``webpush`` channel due at ``at`` (a re-notification)."""
    conn.execute(
        "INSERT INTO outbox (incident_id, channel, recipient, target, payload, created_at,"
        " next_attempt_at) VALUES (%s, 'webpush', %s, NULL, %s, %s, %s)",
        (incident_id, recipient, Jsonb(payload), now, at))


def incident_state(conn: psycopg.Connection[Any], incident_id: int) -> tuple[str, int] | None:
    """The incident's state and version, None when it does not exist."""
    row = conn.execute("SELECT state, version FROM incidents WHERE id = %s",
                       (incident_id,)).fetchone()
    return (str(row[0]), int(row[1])) if row else None
