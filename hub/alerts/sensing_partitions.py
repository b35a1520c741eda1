"""The sensing rules run by partition owners, fed from what the ingest committed.

The households are split into ``parts`` partitions (``hub.sensing.partitions``).
Each partition has one owner at a time among the alert workers: a lease in
PostgreSQL (``hub.store.leases``, kind ``sensing``), renewed every ``renew_s``, fair
shares balanced between the live workers. For each partition it holds, a worker:

1. restores the partition's sensing engine from its saved state and cursor
   (``sensing_cursors``) when it takes the lease;
2. reads the partition's feed rows after the cursor (``hub.store.sensing_feed``:
   every message any ingest committed, in commit order) and runs the rules on them,
   with the time the ingest received each as the sign of life;
3. runs the rules' deadlines every ``tick_s`` on the hub's clock;
4. applies the alarms those raise (``apply``: one transaction, committed on return,
   idempotent by alarm id) and only then saves the state with the cursor, in one
   transaction fenced by the lease (a worker that lost the lease saves nothing).

A worker killed at any point leaves the last saved state and cursor: the next owner
replays the rows after it and repeats the same alarms (the same ids: the store keeps
them once). Nothing is held only in memory after the cursor moved past it. A failure
to apply or save reloads the partition from the database and tries again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from hub.alerts.metrics import BAD_ALARMS
from hub.clock import Clock
from hub.config import Site
from hub.domain import Alarm
from hub.sensing.partitions import partition_site
from hub.store import sensing_feed
from hub.store.leases import LeaseTable
from hub.store.sensing_feed import START, Cursor

log = logging.getLogger(__name__)

OWNED = Gauge("hub_sensing_partitions_owned", "Sensing partitions this worker holds")
FED = Counter("hub_sensing_feed_rows_total", "Sensing feed rows consumed", ["outcome"])
RELOADS = Counter("hub_sensing_partition_reloads_total",
                  "Partitions reloaded from their saved state after a failure")

PURGE_EVERY_S = 60.0


def default_worker_id() -> str:
    """This process in the leases: host, process id and a random part (a restarted
    process with a reused pid is a new worker, its predecessor's leases expire)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class _Partition:
    part: int
    engine: Any
    cursor: Cursor
    purged_at: float = 0.0


class SensingPartitions:
    """``make_engine(site)``: a sensing engine for a partition's view of the site;
    ``apply(alarms)``: apply alarms durably, raising when it could not; ``batch``:
    feed rows (ingest batches) read at once."""

    def __init__(self, pool: ConnectionPool, site: Site, *, me: str, parts: int,
                 make_engine: Callable[[Site], Any],
                 apply: Callable[[Sequence[Alarm]], Any], clock: Clock,
                 ttl_s: float = 6.0, renew_s: float | None = None, poll_s: float = 0.2,
                 tick_s: float = 1.0, batch: int = 50) -> None:
        self.pool = pool
        self.site = site
        self.scope = site.site.id
        self.parts = parts
        self.make_engine = make_engine
        self.apply = apply
        self.clock = clock
        self.renew_s = renew_s if renew_s is not None else ttl_s / 3
        self.poll_s = poll_s
        self.tick_s = tick_s
        self.batch = batch
        self.leases = LeaseTable(pool, "sensing", self.scope, me, ttl_s)
        self.owned: dict[int, _Partition] = {}
        self._keys = [str(p) for p in range(parts)]
        self._lock = threading.Lock()

    # ------------------------------------------------------------ set-up

    def prepare(self) -> None:
        """Create the partitions' lease and cursor rows; refuse a partition count
        other than the one the rows were made with (the ingest files messages by it)."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO sensing_cursors (scope, part, parts) SELECT %s, p, %s"
                " FROM generate_series(0, %s - 1) p ON CONFLICT DO NOTHING",
                (self.scope, self.parts, self.parts))
            other = conn.execute(
                "SELECT DISTINCT parts FROM sensing_cursors WHERE scope = %s AND parts <> %s",
                (self.scope, self.parts)).fetchall()
        if other:
            raise RuntimeError(
                f"site {self.scope!r} was partitioned into {other[0][0]} sensing partitions,"
                f" this worker is set to {self.parts} (HUB_SENSING_PARTS must match everywhere)")
        self.leases.ensure(self._keys)

    # ------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        """The partition owner's thread until ``stop``; then it gives its leases back."""
        next_round = next_tick = 0.0
        while not stop.is_set():
            t = time.monotonic()
            try:
                if t >= next_round:
                    self.lease_round()
                    next_round = t + self.renew_s
                busy = self.consume_all()
                if t >= next_tick:
                    self.tick_all()
                    next_tick = t + self.tick_s
            except Exception:  # noqa: BLE001 - the database is away; the next round retries
                log.exception("sensing partitions round failed")
                busy = False
            if not busy:
                stop.wait(self.poll_s)
        try:
            self.leave()
        except Exception:  # noqa: BLE001 - the leases then expire on their own
            log.exception("could not give the sensing leases back")

    def lease_round(self) -> None:
        r = self.leases.round(self._keys)
        with self._lock:
            for key in r.lost:
                self.owned.pop(int(key), None)
            for key in sorted(r.gained, key=int):
                self.owned[int(key)] = self._load(int(key))
            OWNED.set(len(self.owned))

    def consume_all(self) -> bool:
        """One read of every owned partition; True when any read was full (more
        waiting)."""
        more = False
        for p in self._owned_now():
            try:
                more = self.consume(p) >= self.batch or more
            except Exception:  # noqa: BLE001 - reload and replay from the saved cursor
                self._reload(p, "consume")
        return more

    def tick_all(self) -> None:
        now = self.clock.now()
        for p in self._owned_now():
            try:
                self.tick(p, now)
            except Exception:  # noqa: BLE001
                self._reload(p, "tick")

    def leave(self) -> None:
        self.leases.leave()
        with self._lock:
            self.owned.clear()
            OWNED.set(0)

    # ------------------------------------------------------------ one partition

    def consume(self, p: _Partition) -> int:
        with self.pool.connection() as conn:
            rows = sensing_feed.read(conn, self.scope, p.part, p.cursor, self.batch)
        if not rows:
            return 0
        alarms: list[Alarm] = []
        for row in rows:
            if row.msg is None:
                FED.labels("invalid").inc()
                log.warning("sensing feed row does not validate; skipped",
                            extra={"device": row.device_id, "partition": p.part,
                                   "error": row.error})
                continue
            try:
                alarms += p.engine.on_message(row.msg, received_at=row.received_at)
                FED.labels("ok").inc()
            except Exception:  # noqa: BLE001 - one odd message must not stop the rest
                FED.labels("error").inc()
                BAD_ALARMS.labels("sensing_error").inc()
                log.exception("sensing rule failed on a message",
                              extra={"device": row.device_id, "partition": p.part})
        if alarms:
            self.apply(alarms)
        self._save(p, rows[-1].cursor)
        return len({r.cursor for r in rows})

    def tick(self, p: _Partition, now: Any) -> list[Alarm]:
        alarms = list(p.engine.tick(now))
        if alarms:
            self.apply(alarms)
            self._save(p, p.cursor)
        return alarms

    def _save(self, p: _Partition, cursor: Cursor) -> None:
        doc = p.engine.snapshot()
        purge = time.monotonic() - p.purged_at > PURGE_EVERY_S
        with self.pool.connection() as conn, conn.transaction():
            if not self.leases.holds(conn, str(p.part)):
                # Taken over (this worker was too slow to renew): the new owner goes
                # on from the last saved cursor; this one stops.
                with self._lock:
                    self.owned.pop(p.part, None)
                log.warning("sensing partition lost before its save; dropped",
                            extra={"partition": p.part})
                return
            conn.execute(
                "UPDATE sensing_cursors SET cursor_xid = %s::text::xid8, cursor_id = %s,"
                " state = %s, saved_at = now() WHERE scope = %s AND part = %s",
                (str(cursor[0]), cursor[1], Jsonb(doc), self.scope, p.part))
            if purge:
                sensing_feed.purge(conn, self.scope, p.part, cursor)
        p.cursor = cursor
        if purge:
            p.purged_at = time.monotonic()

    def _load(self, part: int) -> _Partition:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT cursor_xid::text::bigint, cursor_id, state FROM sensing_cursors"
                " WHERE scope = %s AND part = %s", (self.scope, part)).fetchone()
        engine = self.make_engine(partition_site(self.site, part, self.parts))
        cursor = START
        if row is not None:
            cursor = (int(row[0]), int(row[1]))
            if row[2]:
                try:
                    engine.restore(row[2])
                except Exception:  # noqa: BLE001 - start fresh rather than not at all
                    log.exception("could not restore a sensing partition; starting fresh",
                                  extra={"partition": part})
        log.info("sensing partition loaded", extra={
            "partition": part, "cursor": f"{cursor[0]}:{cursor[1]}",
            "subjects": len(engine.site.care_subjects) if hasattr(engine, "site") else None})
        return _Partition(part, engine, cursor)

    def _reload(self, p: _Partition, where: str) -> None:
        RELOADS.inc()
        log.exception("sensing partition failed; reloading from its saved state",
                      extra={"partition": p.part, "during": where})
        try:
            fresh = self._load(p.part)
        except Exception:  # noqa: BLE001 - database away: the next round tries again
            log.exception("could not reload a sensing partition", extra={"partition": p.part})
            return
        with self._lock:
            if p.part in self.owned:
                self.owned[p.part] = fresh

    def _owned_now(self) -> list[_Partition]:
        with self._lock:
            return [self.owned[k] for k in sorted(self.owned)]
