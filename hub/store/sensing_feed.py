"""The sensing feed: what the ingest committed, for the sensing rules, in order.

The ingest writes one row per new telemetry, event and status message in the same
transaction as the message itself (``hub.store.readings.write_batch(feed=...)``), so
the feed holds exactly what was committed, whichever ingest worker committed it, and
a redelivered message (already stored) adds nothing. A row holds one batch's
messages of one partition, in the order received; a telemetry or event message is
named by (device, seq) and the reader takes it from the readings or events table, a
status is carried whole (presence keeps no history).

Rows are read per partition in ``(xid, id)`` order, only below the oldest
transaction still in progress (``pg_snapshot_xmin``): every transaction below it has
ended, so no row can later appear behind the reader's cursor, while an identity
value alone is taken before commit and may become visible after a larger one. A
transaction left open for long (any writer's, not only the ingest's) therefore holds
the sensing rules back until it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from hub.protocol import Event, Kind, Message, ProtocolError, Status, Telemetry, decode_json

Cursor = tuple[int, int]  # (xid, id) of the last row consumed
START: Cursor = (0, 0)


@dataclass(frozen=True, slots=True)
class Feed:
    """Where the ingest writes: ``scope`` (the site id) and ``part_of`` (device id ->
    partition, ``hub.sensing.partitions.partitioner``)."""

    scope: str
    part_of: Callable[[str], int]


@dataclass(frozen=True, slots=True)
class FeedRow:
    cursor: Cursor
    msg: Message | None  # None: the stored payload no longer validates (counted)
    received_at: datetime
    device_id: str
    error: str | None = None


_KINDS: dict[type, str] = {Telemetry: "t", Event: "e", Status: "s"}
_KIND_NAMES = {"t": "telemetry", "e": "event", "s": "status"}

# Binary parameters (%b): psycopg dumps the arrays three times faster than as text.
_WRITE = """
INSERT INTO sensing_feed (scope, part, devices, seqs, kinds, received_at, statuses)
VALUES (%s, %s, %b::text[], %b::bigint[], %s, %s, %s)
"""


def write(conn: psycopg.Connection, feed: Feed,
          messages: Sequence[tuple[Message, datetime]]) -> None:
    """Append ``messages`` (each with its receive time, in the order received)
    inside the caller's transaction: one row per partition they fall in."""
    if not messages:
        return
    parts: dict[int, list[tuple[Message, datetime]]] = {}
    for m, rx in messages:
        parts.setdefault(feed.part_of(m.device), []).append((m, rx))
    rows = []
    for part in sorted(parts):  # one order for every ingest: no lock-order surprises
        ms = parts[part]
        statuses = {str(i): m.model_dump(mode="json")
                    for i, (m, _) in enumerate(ms, 1) if isinstance(m, Status)}
        rows.append((feed.scope, part, [m.device for m, _ in ms], [m.seq for m, _ in ms],
                     "".join(_KINDS[type(m)] for m, _ in ms), max(rx for _, rx in ms),
                     Jsonb(statuses) if statuses else None))
    with conn.cursor() as cur:
        cur.executemany(_WRITE, rows)


# A telemetry message is rebuilt from its readings (in their order in the message),
# an event from its row; either is validated again as it came off the wire.
_READ = """
WITH batch AS (
  SELECT xid, id, devices, seqs, kinds, received_at, statuses FROM sensing_feed
  WHERE scope = %(scope)s AND part = %(part)s
    AND (xid, id) > (%(xid)s::text::xid8, %(id)s)
    AND xid < pg_snapshot_xmin(pg_current_snapshot())
  ORDER BY xid, id
  LIMIT %(limit)s
)
SELECT b.xid::text::bigint, b.id, u.device_id, substr(b.kinds, u.ord::int, 1),
  b.received_at,
  CASE substr(b.kinds, u.ord::int, 1)
    WHEN 't' THEN (
      SELECT json_build_object('v', 1, 'device', r.device_id, 'seq', r.seq, 'ts', min(r.ts),
        'readings', json_agg(json_build_object('metric', r.metric, 'value', r.value,
                                               'unit', r.unit) ORDER BY r.idx))
      FROM readings r WHERE r.device_id = u.device_id AND r.seq = u.seq
      GROUP BY r.device_id, r.seq)
    WHEN 'e' THEN (
      SELECT json_build_object('v', 1, 'device', e.device_id, 'seq', e.seq, 'ts', e.ts,
        'type', e.type, 'data', e.data)
      FROM events e WHERE e.device_id = u.device_id AND e.seq = u.seq)
    ELSE (b.statuses -> u.ord::text)::json
  END::text
FROM batch b
CROSS JOIN LATERAL unnest(b.devices, b.seqs) WITH ORDINALITY AS u(device_id, seq, ord)
ORDER BY b.xid, b.id, u.ord
"""


def read(conn: psycopg.Connection, scope: str, part: int, after: Cursor,
         limit: int = 50) -> list[FeedRow]:
    """The messages of the next committed rows (at most ``limit`` ingest batches) of
    a partition after ``after``, oldest first; a row's messages share its cursor."""
    out: list[FeedRow] = []
    rows = conn.execute(_READ, {"scope": scope, "part": part, "xid": str(after[0]),
                                "id": after[1], "limit": limit}).fetchall()
    for xid, rid, device, kind, rx, text in rows:
        msg: Message | None = None
        if text is None:  # its readings or event row is gone (retention)
            err: str | None = "message no longer stored"
        else:
            try:
                msg = decode_json(Kind(_KIND_NAMES[kind]), text.encode(), device)
                err = None
            except (ProtocolError, ValueError) as e:
                err = str(e)[:200]
        out.append(FeedRow((int(xid), int(rid)), msg, rx, device, err))
    return out


def purge(conn: psycopg.Connection, scope: str, part: int, upto: Cursor) -> int:
    """Drop a partition's rows up to its saved cursor (consumed)."""
    cur = conn.execute(
        "DELETE FROM sensing_feed WHERE scope = %s AND part = %s"
        " AND (xid, id) <= (%s::text::xid8, %s)", (scope, part, str(upto[0]), upto[1]))
    return cur.rowcount
