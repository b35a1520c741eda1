"""Readings, events and presence: batched idempotent writes and the queries on them.

A batch is written in one transaction. Readings are COPied (binary) straight into
their table; when that meets a key already stored (a redelivery), the transaction is
rolled back and the batch goes through session-local staging tables and
``INSERT ... SELECT ... ON CONFLICT DO NOTHING``, so a redelivered message adds
nothing and the caller learns how many were new. Events always take the staging way
(they are few).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import psycopg.errors
from psycopg.types.json import Jsonb

from hub.config import Site
from hub.domain import GridLevel
from hub.protocol import DeviceState, Event, Status, Telemetry
from hub.store import sensing_feed
from hub.store.sensing_feed import Feed

# Session-local staging tables; ON COMMIT DELETE ROWS empties them after every batch.
_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS readings_in (
    device_id text, seq bigint, idx smallint, ts timestamptz, metric text,
    value double precision, unit text, received_at timestamptz
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS events_in (
    device_id text, seq bigint, ts timestamptz, type text, data jsonb,
    received_at timestamptz
) ON COMMIT DELETE ROWS
"""

_MOVE_READINGS = """
WITH ins AS (
    INSERT INTO readings (device_id, seq, idx, ts, metric, value, unit, received_at)
    SELECT device_id, seq, idx, ts, metric, value, unit, received_at FROM readings_in
    ON CONFLICT DO NOTHING
    RETURNING idx
)
SELECT count(*), count(*) FILTER (WHERE idx = 0) FROM ins
"""

# The same, naming the messages that were new (for the sensing feed).
_MOVE_READINGS_KEYS = """
WITH ins AS (
    INSERT INTO readings (device_id, seq, idx, ts, metric, value, unit, received_at)
    SELECT device_id, seq, idx, ts, metric, value, unit, received_at FROM readings_in
    ON CONFLICT DO NOTHING
    RETURNING device_id, seq
)
SELECT device_id, seq, count(*) FROM ins GROUP BY device_id, seq
"""

_MOVE_EVENTS = """
INSERT INTO events (device_id, seq, ts, type, data, received_at)
SELECT device_id, seq, ts, type, data, received_at FROM events_in
ON CONFLICT DO NOTHING
"""
_MOVE_EVENTS_KEYS = _MOVE_EVENTS + "RETURNING device_id, seq\n"

# Any message proves the device alive: last_seen moves forward, never back.
_SEEN = """
INSERT INTO presence (device_id, last_seen, last_seq)
SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::bigint[])
ON CONFLICT (device_id) DO UPDATE SET
    last_seen = greatest(presence.last_seen, EXCLUDED.last_seen),
    last_seq = greatest(presence.last_seq, EXCLUDED.last_seq),
    updated_at = now()
"""

# A status applies only when it is not older than the one already applied, so a
# stale retained message or a late redelivery never flips the state back. On a tie
# (the Last Will carries the seq and ts of its connection's online message) the later
# arrival wins: that is the offline.
_STATUS = """
INSERT INTO presence (device_id, state, since, reason, status_ts, status_seq, last_seen, last_seq)
VALUES (%(device)s, %(state)s, %(since)s, %(reason)s, %(ts)s, %(seq)s, %(ts)s, %(seq)s)
ON CONFLICT (device_id) DO UPDATE SET
    since = CASE WHEN presence.state = EXCLUDED.state THEN presence.since
                 ELSE EXCLUDED.since END,
    state = EXCLUDED.state,
    reason = EXCLUDED.reason,
    status_ts = EXCLUDED.status_ts,
    status_seq = EXCLUDED.status_seq,
    last_seen = greatest(presence.last_seen, EXCLUDED.last_seen),
    last_seq = greatest(presence.last_seq, EXCLUDED.last_seq),
    updated_at = now()
WHERE presence.status_ts IS NULL
   OR (EXCLUDED.status_ts, EXCLUDED.status_seq) >= (presence.status_ts, presence.status_seq)
"""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one batch changed. ``stored``/``duplicates`` count messages (telemetry
    and events); iterating gives ``(stored, duplicates)``."""

    readings_stored: int = 0
    readings_duplicate: int = 0
    telemetry_stored: int = 0
    telemetry_duplicate: int = 0
    events_stored: int = 0
    events_duplicate: int = 0
    statuses: int = 0

    @property
    def stored(self) -> int:
        return self.telemetry_stored + self.events_stored

    @property
    def duplicates(self) -> int:
        return self.telemetry_duplicate + self.events_duplicate

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter((self.stored, self.duplicates))


_COLS = "(device_id, seq, idx, ts, metric, value, unit, received_at)"
_TYPES = ["text", "int8", "int2", "timestamptz", "text", "float8", "text", "timestamptz"]


def _copy_readings(
    cur: psycopg.Cursor, table: str, telemetry: Sequence[tuple[Telemetry, datetime]]
) -> None:
    # Binary COPY: no text to parse on the server, and psycopg's C row writer is
    # as fast as building the text by hand.
    with cur.copy(f"COPY {table} {_COLS} FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(_TYPES)
        write = cp.write_row
        for t, rx in telemetry:
            dev, seq, ts = t.device, t.seq, t.ts
            for i, r in enumerate(t.readings):
                write((dev, seq, i, ts, r.metric, r.value, r.unit, rx))


def write_batch(
    conn: psycopg.Connection,
    telemetry: Sequence[tuple[Telemetry, datetime]],
    events: Sequence[tuple[Event, datetime]] = (),
    statuses: Sequence[tuple[Status, datetime]] = (),
    *,
    feed: Feed | None = None,
) -> WriteResult:
    """Store one batch of validated messages, each with its receive time, in one
    transaction (committed on return). Idempotent on (device, seq).

    The common case - nothing in the batch was stored before - COPies the readings
    straight into their table. Only when that meets a key already present (a
    redelivery) is the transaction rolled back and the batch written the slower way,
    through staging tables and ``ON CONFLICT DO NOTHING``.

    ``feed``: also append every new message (and every status) to the sensing feed
    in the same transaction (``hub.store.sensing_feed``)."""
    try:
        return _write(conn, telemetry, events, statuses, direct=True, feed=feed)
    except psycopg.errors.UniqueViolation:
        return _write(conn, telemetry, events, statuses, direct=False, feed=feed)


def _write(
    conn: psycopg.Connection,
    telemetry: Sequence[tuple[Telemetry, datetime]],
    events: Sequence[tuple[Event, datetime]],
    statuses: Sequence[tuple[Status, datetime]],
    *,
    direct: bool,
    feed: Feed | None = None,
) -> WriteResult:
    n_readings = sum(len(t.readings) for t, _ in telemetry)
    r_stored = t_stored = e_stored = 0
    new_tel: Sequence[tuple[Telemetry, datetime]] = telemetry
    new_evs: Sequence[tuple[Event, datetime]] = events
    with conn.transaction():
        if events or (telemetry and not direct):
            conn.execute(_STAGING)
        if telemetry:
            with conn.cursor() as cur:
                if direct:
                    _copy_readings(cur, "readings", telemetry)
                    r_stored, t_stored = n_readings, len(telemetry)
                elif feed is not None:
                    _copy_readings(cur, "readings_in", telemetry)
                    keys = {(d, s): n for d, s, n in cur.execute(_MOVE_READINGS_KEYS)}
                    r_stored, t_stored = sum(keys.values()), len(keys)
                    new_tel = [(t, rx) for t, rx in telemetry if (t.device, t.seq) in keys]
                else:
                    _copy_readings(cur, "readings_in", telemetry)
                    row = cur.execute(_MOVE_READINGS).fetchone()
                    assert row is not None
                    r_stored, t_stored = int(row[0]), int(row[1])
        if events:
            with conn.cursor() as cur:
                with cur.copy(
                    "COPY events_in (device_id, seq, ts, type, data, received_at) FROM STDIN"
                ) as cp:
                    for e, rx in events:
                        cp.write_row(
                            (e.device, e.seq, e.ts, e.type.value, json.dumps(e.data), rx)
                        )
                if feed is not None:
                    new = {(d, s) for d, s in cur.execute(_MOVE_EVENTS_KEYS)}
                    e_stored = len(new)
                    new_evs = [(e, rx) for e, rx in events if (e.device, e.seq) in new]
                else:
                    cur.execute(_MOVE_EVENTS)
                    e_stored = cur.rowcount
        _touch_presence(conn, telemetry, events)
        for s, rx in statuses:
            conn.execute(
                _STATUS,
                {
                    "device": s.device,
                    "state": s.state.value,
                    # The Last Will's ts is its connection's start: the device went
                    # offline when the broker said so, which is when it reached us.
                    "since": s.ts if s.state is DeviceState.ONLINE else rx,
                    "reason": s.reason,
                    "ts": s.ts,
                    "seq": s.seq,
                },
            )
        if feed is not None:
            # In the order they were received, as the rules would have seen them.
            fed = sorted([*new_tel, *new_evs, *statuses], key=lambda m: m[1])
            sensing_feed.write(conn, feed, fed)
    return WriteResult(
        readings_stored=r_stored,
        readings_duplicate=n_readings - r_stored,
        telemetry_stored=t_stored,
        telemetry_duplicate=len(telemetry) - t_stored,
        events_stored=e_stored,
        events_duplicate=len(events) - e_stored,
        statuses=len(statuses),
    )


def _touch_presence(
    conn: psycopg.Connection,
    telemetry: Sequence[tuple[Telemetry, datetime]],
    events: Sequence[tuple[Event, datetime]],
) -> None:
    latest: dict[str, tuple[datetime, int]] = {}
    for m, _ in (*telemetry, *events):
        cur = latest.get(m.device)
        if cur is None:
            latest[m.device] = (m.ts, m.seq)
        else:
            latest[m.device] = (max(cur[0], m.ts), max(cur[1], m.seq))
    if not latest:
        return
    # Sorted so that concurrent ingest processes lock presence rows in one order.
    devs = sorted(latest)
    conn.execute(_SEEN, (devs, [latest[d][0] for d in devs], [latest[d][1] for d in devs]))


_FORGET_FUTURE = """
UPDATE presence SET
    status_ts = CASE WHEN status_ts > %(bound)s THEN NULL ELSE status_ts END,
    status_seq = CASE WHEN status_ts > %(bound)s THEN NULL ELSE status_seq END,
    since = CASE WHEN since > %(bound)s THEN NULL ELSE since END,
    last_seen = CASE WHEN last_seen > %(bound)s THEN NULL ELSE last_seen END,
    updated_at = now()
WHERE status_ts > %(bound)s OR since > %(bound)s OR last_seen > %(bound)s
RETURNING device_id
"""


def forget_future_presence(conn: psycopg.Connection, bound: datetime) -> list[str]:
    """Drop presence times later than ``bound`` (the hub's clock plus the allowed
    skew); returns the devices changed. Such a time can only have come in before
    device time was bounded at the wire, and it would win forever: a status from
    2099 outranks every later status (the device stays online), a last_seen in 9999
    every later message. Run at ingest start-up; the next message sets them again."""
    with conn.transaction():
        rows = conn.execute(_FORGET_FUTURE, {"bound": bound}).fetchall()
    return [r[0] for r in rows]


# ---------------------------------------------------------------- site


def sync_site(conn: psycopg.Connection, site: Site) -> None:
    """Upsert the site's grid units and devices (run at start-up). Devices no longer
    in the file are kept: their history still refers to them."""
    with conn.transaction():
        units = [(n.code, n.name, parent, int(GridLevel.of_code(n.code))) for n, parent in
                 site.grid.walk()]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO grid_units (code, name, parent_code, level) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name,"
                " parent_code = EXCLUDED.parent_code, level = EXCLUDED.level",
                units,
            )
            cur.executemany(
                "INSERT INTO devices (id, site, kind, grid_code, building, subject_id, location,"
                " heartbeat_s) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET site = EXCLUDED.site, kind = EXCLUDED.kind,"
                " grid_code = EXCLUDED.grid_code, building = EXCLUDED.building,"
                " subject_id = EXCLUDED.subject_id, location = EXCLUDED.location,"
                " heartbeat_s = EXCLUDED.heartbeat_s, updated_at = now()",
                [
                    (d.id, site.site.id, d.kind, d.grid, d.building, d.subject,
                     Jsonb(d.location.model_dump()), d.heartbeat_s)
                    for d in site.devices
                ],
            )
            cur.executemany(
                "INSERT INTO presence (device_id) VALUES (%s) ON CONFLICT DO NOTHING",
                [(d.id,) for d in site.devices],
            )


# ---------------------------------------------------------------- queries


@dataclass(frozen=True, slots=True)
class Bucket:
    metric: str
    start: datetime
    count: int
    min: float
    max: float
    avg: float
    last: float


def readings_bucketed(
    conn: psycopg.Connection,
    device_id: str,
    metric: str | None,
    start: datetime,
    end: datetime,
    bucket_s: float,
) -> list[Bucket]:
    """Readings of one device in ``[start, end)`` aggregated into buckets of
    ``bucket_s`` seconds aligned to the epoch; one row per metric and bucket, ordered
    by metric then time. ``metric=None`` means every metric."""
    if bucket_s <= 0:
        raise ValueError("bucket_s must be positive")
    rows = conn.execute(
        """
        SELECT metric,
               date_bin(make_interval(secs => %(b)s), ts, TIMESTAMPTZ 'epoch') AS bucket,
               count(*), min(value), max(value), avg(value),
               (array_agg(value ORDER BY ts DESC, seq DESC, idx DESC))[1]
        FROM readings
        WHERE device_id = %(d)s AND ts >= %(s)s AND ts < %(e)s
          AND (%(m)s::text IS NULL OR metric = %(m)s::text)
        GROUP BY metric, bucket
        ORDER BY metric, bucket
        """,
        {"b": bucket_s, "d": device_id, "s": start, "e": end, "m": metric},
    ).fetchall()
    return [Bucket(m, b, int(n), lo, hi, avg, last) for m, b, n, lo, hi, avg, last in rows]


def latest_readings(conn: psycopg.Connection, device_id: str) -> dict[str, tuple[datetime, float]]:
    """The newest value of each metric of a device: ``{metric: (ts, value)}``."""
    rows = conn.execute(
        "SELECT DISTINCT ON (metric) metric, ts, value FROM readings WHERE device_id = %s"
        " ORDER BY metric, ts DESC, seq DESC, idx DESC",
        (device_id,),
    ).fetchall()
    return {m: (ts, v) for m, ts, v in rows}


def _device_filter(devices: Iterable[str] | None) -> tuple[str, tuple[Any, ...]]:
    if devices is None:
        return "", ()
    return " WHERE device_id = ANY(%s)", (list(devices),)


def count_readings(conn: psycopg.Connection, devices: Iterable[str] | None = None) -> int:
    where, params = _device_filter(devices)
    row = conn.execute("SELECT count(*) FROM readings" + where, params).fetchone()  # type: ignore[operator]
    return int(row[0]) if row else 0


def count_events(conn: psycopg.Connection, devices: Iterable[str] | None = None) -> int:
    where, params = _device_filter(devices)
    row = conn.execute("SELECT count(*) FROM events" + where, params).fetchone()  # type: ignore[operator]
    return int(row[0]) if row else 0


def count_messages(conn: psycopg.Connection, devices: Iterable[str] | None = None) -> int:
    """Telemetry and event messages stored (a telemetry message is its reading 0)."""
    where, params = _device_filter(devices)
    cond = " AND idx = 0" if where else " WHERE idx = 0"
    row = conn.execute(
        "SELECT (SELECT count(*) FROM readings" + where + cond + ")"  # type: ignore[operator]
        " + (SELECT count(*) FROM events" + where + ")",
        params * 2,
    ).fetchone()
    return int(row[0]) if row else 0


def message_keys(
    conn: psycopg.Connection, devices: Iterable[str] | None = None
) -> dict[str, set[tuple[str, int]]]:
    """``{"telemetry": {(device, seq)}, "event": {...}}`` of what is stored: the
    fault tests compare it with what was sent."""
    where, params = _device_filter(devices)
    cond = " AND idx = 0" if where else " WHERE idx = 0"
    tel = conn.execute("SELECT device_id, seq FROM readings" + where + cond, params).fetchall()  # type: ignore[operator]
    ev = conn.execute("SELECT device_id, seq FROM events" + where, params).fetchall()  # type: ignore[operator]
    return {"telemetry": {(d, int(s)) for d, s in tel}, "event": {(d, int(s)) for d, s in ev}}


def duplicate_rows(conn: psycopg.Connection) -> int:
    """Rows that share a reading or event identity with another row. Always 0 while
    the keys hold; the fault tests check it so that a schema change which drops a
    key cannot pass unnoticed."""
    row = conn.execute(
        "SELECT (SELECT count(*) - count(DISTINCT (device_id, seq, idx)) FROM readings)"
        " + (SELECT count(*) - count(DISTINCT (device_id, seq)) FROM events)"
    ).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True, slots=True)
class Presence:
    device_id: str
    state: str
    since: datetime | None
    last_seen: datetime | None
    last_seq: int | None
    reason: str | None


def presence(conn: psycopg.Connection, devices: Iterable[str] | None = None) -> dict[str, Presence]:
    where, params = _device_filter(devices)
    rows = conn.execute(
        "SELECT device_id, state, since, last_seen, last_seq, reason FROM presence" + where,  # type: ignore[operator]
        params,
    ).fetchall()
    return {r[0]: Presence(*r) for r in rows}
