"""The notification outbox: delivery at least once.

Rows are written in the same transaction as the incident change that causes them,
so a notification exists if and only if the change committed. A dispatcher leases
due rows (``FOR UPDATE SKIP LOCKED``, so several dispatchers never take the same
row), sends them outside any transaction, then marks them delivered. A dispatcher
that dies mid-send leaves its lease to expire and another one sends again: receivers
see a duplicate rather than nothing (they can drop it by the delivery id).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

CHANNELS = ("mqtt", "webhook")


@dataclass(frozen=True, slots=True)
class OutboxRow:
    channel: str  # mqtt | webhook
    recipient: str  # grid code (mqtt) or person id (webhook)
    payload: dict[str, Any]
    incident_id: int | None = None
    target: str | None = None  # webhook URL


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    incident_id: int | None
    channel: str
    recipient: str
    target: str | None
    payload: dict[str, Any]
    attempts: int
    created_at: datetime

    @property
    def key(self) -> str:
        """What the rate limit counts against: one phone, one app topic, one hook."""
        return f"{self.channel}:{self.recipient}:{self.target or ''}"


def enqueue(conn: psycopg.Connection[Any], rows: Iterable[OutboxRow], now: datetime) -> int:
    rows = list(rows)
    if any(r.channel == "webpush" for r in rows):
        # Web Push rows only for people with a subscription now, in this transaction,
        # so the outbox does not fill with rows that have nobody to go to.
        from hub.store import push

        have = push.subscribed(conn, {r.recipient for r in rows if r.channel == "webpush"})
        rows = [r for r in rows if r.channel != "webpush" or r.recipient in have]
    data = [(r.incident_id, r.channel, r.recipient, r.target, Jsonb(r.payload), now, now)
            for r in rows]
    if not data:
        return 0
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO outbox (incident_id, channel, recipient, target, payload,"
            " created_at, next_attempt_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            data,
        )
    return len(data)


def lease(conn: psycopg.Connection[Any], now: datetime, limit: int = 200,
          lease_s: float = 30.0) -> list[OutboxItem]:
    """Take up to ``limit`` due rows for ``lease_s`` seconds (commits)."""
    with conn.transaction():
        rows = conn.execute(
            """
            UPDATE outbox o SET next_attempt_at = %(until)s
            FROM (SELECT id FROM outbox
                  WHERE delivered_at IS NULL AND NOT failed AND next_attempt_at <= %(now)s
                  ORDER BY next_attempt_at, id
                  LIMIT %(limit)s
                  FOR UPDATE SKIP LOCKED) due
            WHERE o.id = due.id
            RETURNING o.id, o.incident_id, o.channel, o.recipient, o.target, o.payload,
                      o.attempts, o.created_at
            """,
            {"now": now, "until": now + timedelta(seconds=lease_s), "limit": limit},
        ).fetchall()
    items = [OutboxItem(*r) for r in rows]
    items.sort(key=lambda i: i.id)
    return items


def delivered(conn: psycopg.Connection[Any], ids: Sequence[int], now: datetime,
              summary_of: int | None = None) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE outbox SET delivered_at = %s, attempts = attempts + 1, summary_of = %s,"
            " last_error = NULL WHERE id = ANY(%s)",
            (now, summary_of, list(ids)),
        )


def postpone(conn: psycopg.Connection[Any], ids: Sequence[int], until: datetime) -> None:
    """Hold rows back without counting an attempt (the rate limit said wait)."""
    with conn.transaction():
        conn.execute("UPDATE outbox SET next_attempt_at = %s WHERE id = ANY(%s)",
                     (until, list(ids)))


def backoff_s(attempts: int, base_s: float = 2.0, cap_s: float = 600.0) -> float:
    """Delay before the next try after ``attempts`` failed ones: base, 2 base, 4 base..."""
    return float(min(cap_s, base_s * (2 ** max(0, attempts - 1))))


def failed(conn: psycopg.Connection[Any], ids: Sequence[int], error: str, now: datetime,
           base_s: float = 2.0, max_attempts: int = 12) -> bool:
    """Record a failed try and schedule the next. Returns True when the rows were
    given up (after ``max_attempts``); they stay in the table for an operator."""
    with conn.transaction():
        rows = conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = %s"
            " WHERE id = ANY(%s) RETURNING id, attempts",
            (error[:500], list(ids)),
        ).fetchall()
        gave_up = False
        for rid, attempts in rows:
            if attempts >= max_attempts:
                conn.execute("UPDATE outbox SET failed = true WHERE id = %s", (rid,))
                gave_up = True
            else:
                conn.execute(
                    "UPDATE outbox SET next_attempt_at = %s WHERE id = %s",
                    (now + timedelta(seconds=backoff_s(attempts, base_s)), rid),
                )
    return gave_up


def pending(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND NOT failed"
    ).fetchone()
    return int(row[0]) if row else 0


def purge(conn: psycopg.Connection[Any], delivered_before: datetime) -> int:
    """Forget delivered notifications older than ``delivered_before`` (failed ones
    stay for an operator to look at)."""
    cur = conn.execute("DELETE FROM outbox WHERE delivered_at < %s", (delivered_before,))
    return cur.rowcount
