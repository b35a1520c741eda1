"""The sensing feed and its partition owners on the real database, in one process.

* the ingest's batch files every new message in the feed in its own transaction; a
  redelivered one adds nothing;
* a reader never passes a row that a slower transaction commits later;
* two owners split the partitions, each household's messages reach the one owner of
  its partition, and an owner that lost its lease saves nothing.
(The SIGKILL failover of real worker processes: test_sensing_failover.py.)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg_pool import ConnectionPool

from hub.alerts.sensing_partitions import SensingPartitions
from hub.clock import ManualClock
from hub.config import Site
from hub.domain import Alarm
from hub.grid.tree import GridTree
from hub.protocol import DeviceState, Event, EventType, Reading, Status, Telemetry
from hub.sensing import SensingEngine
from hub.sensing.partitions import household_key, partition_of, partitioner
from hub.store import sensing_feed
from hub.store.readings import write_batch
from hub.store.sensing_feed import START, Feed
from tests.integration.alerting import demo_site, pool_for

PARTS = 4
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def feed_for(site: Site) -> Feed:
    return Feed(site.site.id, partitioner(site, PARTS))


def tel(device: str, seq: int, ts: datetime) -> Telemetry:
    return Telemetry(device=device, seq=seq, ts=ts, readings=[Reading(metric="motion", value=1)])


def door(device: str, seq: int, ts: datetime) -> Event:
    return Event(device=device, seq=seq, ts=ts, type=EventType.DOOR_OPEN)


def rows_of(conn: psycopg.Connection, site: Site, n: int) -> list[sensing_feed.FeedRow]:
    """The feed's rows once ``n`` are readable: a transaction of another test on the
    same server holds the horizon back for a moment."""
    deadline = time.monotonic() + 10
    while True:
        out: list[sensing_feed.FeedRow] = []
        for p in range(PARTS):
            out += sensing_feed.read(conn, site.site.id, p, START)
        if len(out) >= n or time.monotonic() > deadline:
            return out
        time.sleep(0.05)


def read_part(conn: psycopg.Connection, site: Site, part: int, after: sensing_feed.Cursor,
              n: int) -> list[sensing_feed.FeedRow]:
    deadline = time.monotonic() + 10
    while True:
        rows = sensing_feed.read(conn, site.site.id, part, after)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_the_feed_holds_each_new_message_once(db_url: str) -> None:
    site = demo_site()
    feed = feed_for(site)
    t = [(tel("pir-3-2-501", 1, T0), T0), (tel("pir-3-2-501", 2, T0 + timedelta(seconds=1)),
                                          T0 + timedelta(seconds=1))]
    e = [(door("door-3-2-501", 1, T0), T0)]
    s = [(Status(device="pir-3-2-501", seq=0, ts=T0, state=DeviceState.ONLINE), T0)]
    with psycopg.connect(db_url, autocommit=True) as conn:
        res = write_batch(conn, t, e, s, feed=feed)
        assert (res.telemetry_stored, res.events_stored) == (2, 1)
        # A redelivery with one message new: only that one joins the feed.
        t3 = (tel("pir-3-2-501", 3, T0 + timedelta(seconds=2)), T0 + timedelta(seconds=2))
        res = write_batch(conn, [*t, t3], e, (), feed=feed)
        assert (res.telemetry_stored, res.telemetry_duplicate, res.events_duplicate) == (1, 2, 1)
        rows = rows_of(conn, site, 5)
    got = [(type(r.msg).__name__, r.msg.seq) for r in rows if r.msg is not None]
    assert sorted(got) == [("Event", 1), ("Status", 0), ("Telemetry", 1), ("Telemetry", 2),
                           ("Telemetry", 3)]
    # One household, one partition; read in the order committed.
    part = partition_of("s01", PARTS)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert {r.cursor for r in rows} == {r.cursor for r in read_part(conn, site, part,
                                                                        START, 5)}
    assert [r.cursor for r in rows] == sorted(r.cursor for r in rows)


def test_a_reader_never_passes_a_row_committed_later(db_url: str) -> None:
    site = demo_site()
    feed = feed_for(site)
    part = partition_of("s01", PARTS)
    slow = psycopg.connect(db_url)
    with psycopg.connect(db_url, autocommit=True) as fast, psycopg.connect(db_url) as reader:
        # The slow transaction takes its xid (and identity) first, commits last.
        write_in = slow.transaction()
        write_in.__enter__()
        write_batch(slow, [(tel("pir-3-2-501", 1, T0), T0)], feed=feed)
        # Another device of the household: the slow one holds its presence row.
        write_batch(fast, [(tel("door-3-2-501", 2, T0), T0)], feed=feed)
        reader.autocommit = True
        time.sleep(0.5)
        assert sensing_feed.read(reader, site.site.id, part, START) == []
        write_in.__exit__(None, None, None)
        rows = read_part(reader, site, part, START, 2)
        assert [r.msg.seq for r in rows if r.msg is not None] == [1, 2]
        # From the cursor of the first, only the second.
        assert [r.msg.seq for r in read_part(reader, site, part, rows[0].cursor, 1)
                if r.msg is not None] == [2]
    slow.close()


class Applied:
    def __init__(self) -> None:
        self.alarms: list[Alarm] = []

    def __call__(self, alarms: Sequence[Alarm]) -> None:
        self.alarms.extend(alarms)


def owner(pool: ConnectionPool, site: Site, me: str, applied: Applied,
          clock: ManualClock) -> SensingPartitions:
    tree = GridTree.from_site(site)
    sp = SensingPartitions(pool, site, me=me, parts=PARTS, clock=clock, apply=applied,
                           make_engine=lambda s: SensingEngine(s, tree), ttl_s=2.0)
    sp.prepare()
    return sp


def test_two_owners_split_the_households_and_a_lost_lease_saves_nothing(db_url: str) -> None:
    site = demo_site()
    clock = ManualClock(T0 + timedelta(minutes=5))
    got_a, got_b = Applied(), Applied()
    with pool_for(db_url) as pool:
        a = owner(pool, site, "a", got_a, clock)
        b = owner(pool, site, "b", got_b, clock)
        a.lease_round()
        assert sorted(a.owned) == list(range(PARTS))
        b.lease_round()  # a member now: a releases half on its next round
        a.lease_round()
        b.lease_round()
        assert sorted([*a.owned, *b.owned]) == list(range(PARTS))
        assert len(a.owned) == len(b.owned) == PARTS // 2

        # An SOS from every household: each reaches its partition's owner only.
        sos = [(Event(device=d.id, seq=1, ts=T0, type=EventType.SOS), T0)
               for d in site.devices if d.kind == "sos"]
        with psycopg.connect(db_url, autocommit=True) as conn:
            write_batch(conn, (), sos, feed=feed_for(site))
        a.consume_all()
        b.consume_all()
        by_a = {x.subject_id for x in got_a.alarms if x.category == "sos"}
        by_b = {x.subject_id for x in got_b.alarms if x.category == "sos"}
        assert by_a.isdisjoint(by_b)
        assert by_a | by_b == {s.id for s in site.care_subjects}
        assert all(partition_of(s, PARTS) in a.owned for s in by_a)

        # b stops renewing; once its leases expired a takes them over, restored from
        # b's saved state and cursor: nothing consumed again, nothing raised twice.
        time.sleep(2.2)
        a.lease_round()
        assert sorted(a.owned) == list(range(PARTS))
        n = len(got_a.alarms)
        a.consume_all()
        assert len(got_a.alarms) == n
        # b wakes up, still believing it owns its partitions: its save is refused.
        stale = next(iter(b.owned.values()))
        dev = next(d.id for d in site.devices
                   if partition_of(household_key(d), PARTS) == stale.part)
        with psycopg.connect(db_url, autocommit=True) as conn:
            write_batch(conn, [(tel(dev, 9, T0), T0)], feed=feed_for(site))
        b.consume(stale)
        assert stale.part not in b.owned
        with pool.connection() as conn:
            row = conn.execute("SELECT cursor_id FROM sensing_cursors WHERE scope = %s"
                               " AND part = %s", (site.site.id, stale.part)).fetchone()
        assert row is not None and row[0] == a.owned[stale.part].cursor[1]


def test_a_row_whose_message_is_gone_is_counted_and_skipped(db_url: str) -> None:
    """Readings purged by retention before their feed row was consumed: the owner
    logs and counts it and goes on with the rest of the batch."""
    from prometheus_client import REGISTRY

    site = demo_site()
    clock = ManualClock(T0 + timedelta(minutes=5))
    got = Applied()
    part = partition_of("s01", PARTS)
    with pool_for(db_url) as pool, psycopg.connect(db_url, autocommit=True) as conn:
        sp = owner(pool, site, "a", got, clock)
        sp.lease_round()
        write_batch(conn, [(tel("pir-3-2-501", 1, T0), T0)],
                    [(Event(device="sos-3-2-501", seq=1, ts=T0, type=EventType.SOS), T0)],
                    feed=feed_for(site))
        conn.execute("DELETE FROM readings WHERE device_id = 'pir-3-2-501'")
        rows = read_part(conn, site, part, START, 2)
        assert [(r.msg is None, r.error) for r in rows] == [
            (True, "message no longer stored"), (False, None)]
        before = REGISTRY.get_sample_value("hub_sensing_feed_rows_total",
                                           {"outcome": "invalid"}) or 0.0
        assert sp.consume(sp.owned[part]) == 1
        assert [a.category for a in got.alarms] == ["sos"]
        assert REGISTRY.get_sample_value("hub_sensing_feed_rows_total",
                                         {"outcome": "invalid"}) == before + 1
        assert sp.owned[part].cursor == rows[-1].cursor
