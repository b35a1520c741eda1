"""The alert worker around the sensing rules: messages in, incidents out, and the
sensing state surviving a restart through the database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hub.clock import ManualClock
from hub.protocol import Event, EventType
from tests.integration.alerting import T0, count, demo_site, pool_for, service


def _heartbeats(svc, at, seq) -> None:  # noqa: ANN001
    """Every device of household s01 says it is alive (no activity)."""
    msgs = [Event(device=d, seq=seq, ts=at, type=EventType.HEARTBEAT)
            for d in ("pir-3-2-501", "door-3-2-501", "water-3-2-501", "sos-3-2-501",
                      "smoke-3-2-501", "wearable-3-2-501")]
    svc.on_messages(msgs)


START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # 08:00 in Asia/Shanghai, a day window


def test_inactivity_window_survives_a_restart(db_url: str) -> None:
    """Motion at 08:00 local time; the day window is 12 h. The first service dies 6 h
    later; the second one must raise the inactivity alarm at 20:00 from the saved
    state, not 12 h after its own start."""
    with pool_for(db_url) as pool:
        clock = ManualClock(START)
        a = service(pool, clock).start(applier=False, dispatcher=False, relay=False)
        a.on_messages([Event(device="pir-3-2-501", seq=1, ts=START, type=EventType.MOTION)])
        for h in range(1, 7):
            clock.set(START + timedelta(hours=h))
            _heartbeats(a, clock.now(), 10 + h)
            a.tick()
        a.stop()  # saves the sensing state
        assert count(pool, "SELECT count(*) FROM sensing_state") == 1

        clock2 = ManualClock(START + timedelta(hours=6))
        b = service(pool, clock2).start(applier=False, dispatcher=False, relay=False)
        try:
            for h in range(7, 12):
                clock2.set(START + timedelta(hours=h))
                _heartbeats(b, clock2.now(), 10 + h)
                b.tick()
            assert count(pool, "SELECT count(*) FROM incidents"
                         " WHERE category = 'inactivity'") == 0
            clock2.set(START + timedelta(hours=12, seconds=1))
            _heartbeats(b, clock2.now(), 30)
            b.tick()
            assert count(pool, "SELECT count(*) FROM incidents WHERE category = 'inactivity'"
                         " AND subject_id = 's01'") == 1
        finally:
            b.stop()


def test_sos_event_opens_a_critical_incident_and_its_repeat_updates_it(db_url: str) -> None:
    with pool_for(db_url) as pool:
        svc = service(pool, ManualClock(T0))
        ev = Event(device="sos-3-2-501", seq=5, ts=T0, type=EventType.SOS)
        svc.on_messages([ev])
        svc.on_messages([ev])  # redelivered by the broker
        svc.on_messages([Event(device="sos-3-2-501", seq=6, ts=T0 + timedelta(seconds=30),
                               type=EventType.SOS)])
        assert count(pool, "SELECT count(*) FROM incidents") == 1
        assert count(pool, "SELECT severity FROM incidents") == 4
        assert count(pool, "SELECT alarm_count FROM incidents") == 2


def test_bad_alarms_are_counted_not_fatal(db_url: str) -> None:
    from dataclasses import replace
    from datetime import datetime

    from tests.integration.alerting import alarm

    with pool_for(db_url) as pool:
        svc = service(pool)
        naive = replace(alarm("x"), ts=datetime(2026, 1, 1))
        res = svc.apply_now([naive, alarm("good")])
        assert len(res) == 1 and res[0].incident is not None
        assert count(pool, "SELECT count(*) FROM incidents") == 1


def test_sensing_state_is_kept_per_site_and_partition(db_url: str) -> None:
    """Alert workers of different sites, or of different sensing partitions, save
    their sensing state side by side instead of over each other's."""
    site = demo_site()
    other = site.model_copy(update={"site": site.site.model_copy(update={"id": "other"})})
    opts = {"applier": False, "dispatcher": False, "relay": False}
    with pool_for(db_url) as pool:
        clock = ManualClock(START)
        a = service(pool, clock).start(**opts)
        a.on_messages([Event(device="pir-3-2-501", seq=1, ts=START, type=EventType.MOTION)])
        a.stop()
        saved = json.loads(json.dumps(a.sensing.snapshot()))
        for svc in (service(pool, clock, site=other),
                    service(pool, clock, sensing_partition="east")):
            svc.start(**opts).stop()
        with pool.connection() as c:
            rows = dict(c.execute("SELECT name, snapshot FROM sensing_state").fetchall())
        sid = site.site.id
        assert set(rows) == {f"{sid}/main", "other/main", f"{sid}/east"}
        assert rows[f"{sid}/main"] == saved
        assert rows["other/main"] != saved
