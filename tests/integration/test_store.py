"""Storage on a real PostgreSQL: migrations, idempotent batches, presence, queries."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from hub import services
from hub.config import load_site
from hub.protocol import DeviceState, Event, EventType, Reading, Status, Telemetry
from hub.store import readings as store
from hub.store import timescale
from hub.store.db import open_pool
from hub.store.migrations import MigrationError, applied, discover, migrate
from hubtools import loadgen

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


@pytest.fixture
def empty_db(pg_server: services.Postgres):
    name = f"hub_e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    yield services.with_database(pg_server.url, name)
    with psycopg.connect(pg_server.url, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tel(dev: str, seq: int, values: list[tuple[str, float]], ts: datetime = T0) -> Telemetry:
    return Telemetry(device=dev, seq=seq, ts=ts,
                     readings=[Reading(metric=m, value=v, unit="u") for m, v in values])


# ---------------------------------------------------------------- migrations


def test_migrations_apply_in_order_once_and_are_recorded(empty_db):
    labels = [m.label for m in discover()]
    assert labels[0] == "0001_core" and labels == sorted(labels)
    assert migrate(empty_db)[: len(labels)] == labels
    assert migrate(empty_db) == []  # a second run applies nothing
    assert applied(empty_db) == labels
    with psycopg.connect(empty_db) as c:
        assert timescale.storage_path(c) in ("plain", "timescale")
        tables = {r[0] for r in c.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"grid_units", "devices", "presence", "readings", "events",
            "schema_migrations"} <= tables


def test_concurrent_migrations_apply_each_file_once(empty_db):
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(empty_db))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    n = len(discover())
    assert sorted(len(r) >= n for r in results) == [False, False, False, True]
    assert len(applied(empty_db)) == n


def test_a_failing_migration_leaves_nothing_behind(empty_db, tmp_path):
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE a (x int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE b (x int); SELECT no_such_function();")
    with pytest.raises(MigrationError, match="0002_bad"):
        migrate(empty_db, directory=tmp_path)
    with psycopg.connect(empty_db) as c:
        assert c.execute("SELECT to_regclass('a') IS NOT NULL, to_regclass('b') IS NULL"
                         ).fetchone() == (True, True)
        assert [r[0] for r in c.execute("SELECT version FROM schema_migrations")] == [1]


def test_badly_named_or_clashing_migration_files_are_refused(tmp_path):
    (tmp_path / "1_x.sql").write_text("")
    with pytest.raises(MigrationError, match="NNNN_name"):
        discover(tmp_path)
    (tmp_path / "1_x.sql").unlink()
    (tmp_path / "0001_a.sql").write_text("")
    (tmp_path / "0001_b.sql").write_text("")
    with pytest.raises(MigrationError, match="share version 0001"):
        discover(tmp_path)


# ---------------------------------------------------------------- batches


def test_batches_are_idempotent_on_device_and_seq(db_url):
    rx = datetime.now(UTC)
    batch = [(tel("d1", 1, [("temp", 20.5), ("temp", 20.7), ("rh", 40)]), rx),
             (tel("d1", 2, [("temp", 21)]), rx),
             (tel("d2", 1, [("temp", 19)]), rx)]
    events = [(Event(device="d1", seq=3, ts=T0, type=EventType.SOS, data={"k": "v"}), rx)]
    with psycopg.connect(db_url) as c:
        first = store.write_batch(c, batch, events)
        assert tuple(first) == (4, 0)
        assert first.readings_stored == 5
        # The same messages again, plus one new one: only the new one is stored.
        again = store.write_batch(c, [*batch, (tel("d2", 2, [("temp", 18)]), rx)], events)
        assert tuple(again) == (1, 4)
        assert again.readings_stored == 1 and again.readings_duplicate == 5
        assert store.count_readings(c) == 6
        assert store.count_events(c) == 1
        assert store.count_messages(c) == 5
        assert store.duplicate_rows(c) == 0
        # Both readings of one metric in one message are kept.
        vals = [r[0] for r in c.execute(
            "SELECT value FROM readings WHERE device_id='d1' AND seq=1 AND metric='temp'"
            " ORDER BY idx")]
        assert vals == [20.5, 20.7]
        data = c.execute("SELECT data FROM events WHERE device_id='d1'").fetchone()
        assert data == ({"k": "v"},)


def test_a_redelivered_message_within_one_batch_is_stored_once(db_url):
    rx = datetime.now(UTC)
    m = tel("d1", 7, [("temp", 1), ("rh", 2)])
    with psycopg.connect(db_url) as c:
        res = store.write_batch(c, [(m, rx), (m, rx)])
        assert tuple(res) == (1, 1)
        assert store.count_readings(c) == 2


def test_units_needing_copy_escapes_round_trip(db_url):
    rx = datetime.now(UTC)
    units = ["a\tb", "c\\d", "e\nf", "°C", None]
    readings = [Reading(metric="m", value=i + 0.25, unit=u) for i, u in enumerate(units)]
    m = Telemetry(device="d1", seq=1, ts=T0, readings=readings)
    with psycopg.connect(db_url) as c:
        store.write_batch(c, [(m, rx)])
        got = c.execute("SELECT unit, value FROM readings ORDER BY idx").fetchall()
    assert got == [(u, i + 0.25) for i, u in enumerate(units)]


def test_presence_from_status_and_any_message(db_url):
    rx = datetime.now(UTC)
    with psycopg.connect(db_url) as c:
        on = Status(device="d1", seq=5, ts=T0, state=DeviceState.ONLINE)
        store.write_batch(c, [], [], [(on, rx)])
        p = store.presence(c)["d1"]
        assert (p.state, p.since, p.last_seq) == ("online", T0, 5)
        # Data moves last_seen forward, never back, and leaves the state alone.
        store.write_batch(c, [(tel("d1", 9, [("t", 1)], T0 + timedelta(minutes=5)), rx),
                              (tel("d1", 8, [("t", 1)], T0 + timedelta(minutes=4)), rx)])
        p = store.presence(c)["d1"]
        assert (p.state, p.last_seen, p.last_seq) == ("online", T0 + timedelta(minutes=5), 9)
        # The Last Will carries its connection's seq and ts; arriving later it wins.
        will = Status(device="d1", seq=5, ts=T0, state=DeviceState.OFFLINE, reason="lost")
        store.write_batch(c, [], [], [(will, rx)])
        p = store.presence(c)["d1"]
        assert (p.state, p.since, p.reason) == ("offline", rx, "lost")
        assert p.last_seen == T0 + timedelta(minutes=5)
        # A stale online from before does not bring it back.
        old = Status(device="d1", seq=4, ts=T0 - timedelta(hours=1), state=DeviceState.ONLINE)
        store.write_batch(c, [], [], [(old, rx)])
        assert store.presence(c)["d1"].state == "offline"


def test_sync_site_upserts_grid_and_devices(db_url):
    site = load_site(REPO / "deploy" / "sites" / "demo.yaml")
    with psycopg.connect(db_url) as c:
        store.sync_site(c, site)
        store.sync_site(c, site)  # again: same result
        n_units = sum(1 for _ in site.grid.walk())
        assert c.execute("SELECT count(*) FROM grid_units").fetchone() == (n_units,)
        assert c.execute("SELECT count(*) FROM devices").fetchone() == (len(site.devices),)
        assert c.execute("SELECT count(*) FROM presence WHERE state = 'unknown'"
                         ).fetchone() == (len(site.devices),)
        d = site.devices[0]
        row = c.execute("SELECT site, kind, grid_code, location->>'label' FROM devices"
                        " WHERE id = %s", (d.id,)).fetchone()
        assert row == (site.site.id, d.kind, d.grid, d.location.label)
        leaves = c.execute("SELECT count(*) FROM grid_units WHERE level = 16").fetchone()
        assert leaves == (11,)


def test_readings_bucketed_and_latest(db_url):
    rx = datetime.now(UTC)
    msgs = [(tel("d1", i, [("hr", 60 + i), ("spo2", 95)], T0 + timedelta(seconds=20 * i)), rx)
            for i in range(9)]  # every 20 s for 3 minutes
    msgs.append((tel("d2", 0, [("hr", 200)], T0), rx))
    with psycopg.connect(db_url) as c:
        store.write_batch(c, msgs)
        b = store.readings_bucketed(c, "d1", "hr", T0, T0 + timedelta(minutes=3), 60)
        assert [(x.start, x.count, x.min, x.max, x.last) for x in b] == [
            (T0, 3, 60, 62, 62),
            (T0 + timedelta(minutes=1), 3, 63, 65, 65),
            (T0 + timedelta(minutes=2), 3, 66, 68, 68),
        ]
        assert b[0].avg == pytest.approx(61)
        both = store.readings_bucketed(c, "d1", None, T0, T0 + timedelta(minutes=1), 60)
        assert [(x.metric, x.count) for x in both] == [("hr", 3), ("spo2", 3)]
        assert store.latest_readings(c, "d1") == {
            "hr": (T0 + timedelta(seconds=160), 68), "spo2": (T0 + timedelta(seconds=160), 95)}
        with pytest.raises(ValueError):
            store.readings_bucketed(c, "d1", None, T0, T0, 0)


def test_pool_and_large_batch(db_url):
    rx = datetime.now(UTC)
    devs = [f"dev{i}" for i in range(20)]
    msgs = [(Telemetry.model_validate_json(loadgen.telemetry_payload(d, s)), rx)
            for d in devs for s in range(100)]
    pool = open_pool(db_url, 1, 2)
    try:
        with pool.connection() as c:
            res = store.write_batch(c, msgs)
            assert tuple(res) == (2000, 0)
            assert store.count_readings(c, devs) == loadgen.expected_readings(devs, range(100))
    finally:
        pool.close()
