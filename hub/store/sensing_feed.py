"""The sensing feed: what the ingest committed, for the sensing rules, in order.

The ingest writes one row per new telemetry, event and status message in the same
transaction as the message itself (``hub.store.readings.write_batch(feed=...)``), so
the feed holds exactly what was committed, whichever ingest worker committed it, and
a redelivered message (already stored) adds no row.

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


_KINDS: dict[type, str] = {Telemetry: "telemetry", Event: "event", Status: "status"}


def write(conn: psycopg.Connection, feed: Feed,
          messages: Sequence[tuple[Message, datetime]]) -> None:
    """Append ``messages`` (each with its receive time) inside the caller's
    transaction."""
    if not messages:
        return
    with conn.cursor() as cur, cur.copy(
        "COPY sensing_feed (scope, part, device_id, kind, msg, received_at) FROM STDIN"
    ) as cp:
        for m, rx in messages:
            cp.write_row((feed.scope, feed.part_of(m.device), m.device, _KINDS[type(m)],
                          m.model_dump_json(), rx))


_READ = """
SELECT xid::text::bigint, id, device_id, kind, msg::text, received_at FROM sensing_feed
WHERE scope = %(scope)s AND part = %(part)s
  AND (xid, id) > (%(xid)s::text::xid8, %(id)s)
  AND xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY xid, id
LIMIT %(limit)s
"""


def read(conn: psycopg.Connection, scope: str, part: int, after: Cursor,
         limit: int = 1000) -> list[FeedRow]:
    """The next committed rows of a partition after ``after``, oldest first."""
    out: list[FeedRow] = []
    rows = conn.execute(_READ, {"scope": scope, "part": part, "xid": str(after[0]),
                                "id": after[1], "limit": limit}).fetchall()
    for xid, rid, device, kind, text, rx in rows:
        try:
            msg: Message | None = decode_json(Kind(kind), text.encode(), device)
            err = None
        except (ProtocolError, ValueError) as e:
            msg, err = None, str(e)[:200]
        out.append(FeedRow((int(xid), int(rid)), msg, rx, device, err))
    return out


def purge(conn: psycopg.Connection, scope: str, part: int, upto: Cursor) -> int:
    """Drop a partition's rows up to its saved cursor (consumed)."""
    cur = conn.execute(
        "DELETE FROM sensing_feed WHERE scope = %s AND part = %s"
        " AND (xid, id) <= (%s::text::xid8, %s)", (scope, part, str(upto[0]), upto[1]))
    return cur.rowcount
