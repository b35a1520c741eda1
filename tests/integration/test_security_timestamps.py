"""Device time that cannot be true. One message from the year 9999 used to be stored,
and from then on every sensing tick failed with an OverflowError, site-wide and
across restarts: an SOS elsewhere raised nothing, a device going offline raised
nothing. A status from 2099 froze a device's presence online. Issue 11, hole 2.

The class: every device timestamp is bounded at the wire (not beyond the hub's
clock plus the allowed skew, not before the floor), rejections are counted by
reason, the rules contain a failure to the one device or household it concerns,
and state that already holds such a time (a saved snapshot, the presence table)
recovers."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from hub import metrics
from hub.clock import ManualClock
from hub.domain import AlarmState, Category
from hub.ingest.service import Ingest
from hub.protocol import DeviceState, Event, EventType, Kind, ProtocolError, Status, topic
from hub.sensing import SensingEngine
from hub.store import readings as store
from hubtools import loadgen
from tests.integration.alerting import count, demo_site, pool_for, service
from tests.integration.ingest_support import wait_for

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 09:00 in Asia/Shanghai
FAR = "9999-12-31T23:00:00+00:00"  # the probe's timestamp
# s01 (3-2-501) is the household whose data is poisoned; s02 (2-1-302) is elsewhere.
POISONED, ELSEWHERE = "s01", "s02"


def _ev(device: str, seq: int, ts: datetime, type_: EventType = EventType.MOTION) -> Event:
    return Event(device=device, seq=seq, ts=ts, type=type_)


def _rejected(reason: str) -> float:
    return metrics.MESSAGES_REJECTED.labels(reason)._value.get()  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the bound itself


def test_the_bound_is_the_hub_clock_plus_skew_and_a_floor() -> None:
    from hub.protocol import TS_FLOOR, check_device_time

    clock = ManualClock(NOW)
    ok = [clock.now(), clock.now() + timedelta(seconds=300), clock.now() - timedelta(days=30),
          TS_FLOOR]
    for ts in ok:
        check_device_time(ts, clock.now(), 300)
    for ts, why in ((clock.now() + timedelta(seconds=301), "ts_future"),
                    (datetime.fromisoformat(FAR), "ts_future"),
                    (datetime.fromisoformat("9999-12-31T23:59:59-23:59"), "ts_future"),
                    (datetime(1970, 1, 1, tzinfo=UTC), "ts_past"),
                    (TS_FLOOR - timedelta(microseconds=1), "ts_past")):
        with pytest.raises(ProtocolError) as e:
            check_device_time(ts, clock.now(), 300)
        assert e.value.reason == why, ts
    assert TS_FLOOR == datetime(2020, 1, 1, tzinfo=UTC)


def test_the_skew_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.config import Settings

    assert Settings().max_clock_skew_s == 300
    monkeypatch.setenv("HUB_MAX_CLOCK_SKEW_S", "30")
    assert Settings().max_clock_skew_s == 30


# ---------------------------------------------------------------- the wire


def test_ingest_rejects_impossible_device_time_and_counts_it(db_url, broker, site_id) -> None:
    site = loadgen.make_site(site_id, 3)
    a, b, c = (d.id for d in site.devices)
    seen: list[Any] = []
    before = {r: _rejected(r) for r in ("ts_future", "ts_past")}
    ing = Ingest(db_url=db_url, broker=broker, site=site, client_id=f"ing-{site_id}",
                 shared_group=site_id, session_expiry_s=60, batch_wait_ms=10,
                 on_committed=seen.extend)
    ing.start()
    pub = loadgen.Publisher(broker)
    now = datetime.now(UTC)
    raw = {"v": 1, "type": "motion", "data": {}}
    sent = [
        (a, Kind.EVENT, {**raw, "device": a, "seq": 1, "ts": FAR}),
        (a, Kind.EVENT, {**raw, "device": a, "seq": 2,
                         "ts": (now + timedelta(hours=1)).isoformat()}),
        (b, Kind.STATUS, {"v": 1, "device": b, "seq": 3, "ts": "2099-01-01T00:00:00+00:00",
                          "state": "online"}),
        (b, Kind.TELEMETRY, {"v": 1, "device": b, "seq": 4, "ts": "1970-01-01T00:00:00+00:00",
                             "readings": [{"metric": "temp", "value": 20.0}]}),
        (c, Kind.EVENT, {**raw, "device": c, "seq": 5, "ts": "2019-12-31T23:59:59+00:00"}),
        # Within the skew, and a day old: both taken.
        (c, Kind.EVENT, {**raw, "device": c, "seq": 6,
                         "ts": (now + timedelta(seconds=60)).isoformat()}),
        (c, Kind.EVENT, {**raw, "device": c, "seq": 7,
                         "ts": (now - timedelta(days=1)).isoformat()}),
    ]
    try:
        assert ing.wait_connected(10)
        for dev, kind, body in sent:
            pub.publish(topic(site_id, dev, kind), json.dumps(body).encode())
        assert pub.wait_acked(len(sent))
        assert wait_for(lambda: ing.stats().get("stored", 0) == 2
                        and ing.stats()["rejected_total"] == 5, 20)
        assert ing.stats()["rejected"] == {"ts_future": 3, "ts_past": 2}
        assert _rejected("ts_future") - before["ts_future"] == 3
        assert _rejected("ts_past") - before["ts_past"] == 2
        assert sorted(m.seq for m in seen) == [6, 7]
        with psycopg.connect(db_url) as conn:
            assert store.count_events(conn, [a, b, c]) == 2
            p = store.presence(conn, [b])[b]  # as sync_site made it: nothing applied
            assert (p.state, p.last_seen, p.last_seq) == ("unknown", None, None)
    finally:
        pub.close()
        ing.stop()


def test_presence_frozen_by_a_stored_future_status_recovers(db_url, broker, site_id) -> None:
    """A presence row written before the bound existed (status from 2099, online)
    no longer outranks every later status."""
    site = loadgen.make_site(site_id, 1)
    dev = site.devices[0].id
    ing = Ingest(db_url=db_url, broker=broker, site=site, client_id=f"ing-{site_id}",
                 shared_group=site_id, session_expiry_s=60, batch_wait_ms=10)
    with psycopg.connect(db_url, autocommit=True) as conn:
        store.sync_site(conn, site)
        conn.execute(
            "UPDATE presence SET state = 'online', since = %s, status_ts = %s, status_seq = 1,"
            " last_seen = %s, last_seq = 1 WHERE device_id = %s",
            (datetime(2099, 1, 1, tzinfo=UTC), datetime(2099, 1, 1, tzinfo=UTC),
             datetime(9999, 12, 31, tzinfo=UTC), dev))
    ing.start()
    pub = loadgen.Publisher(broker)
    try:
        assert ing.wait_connected(10)
        off = Status(device=dev, seq=2, ts=datetime.now(UTC), state=DeviceState.OFFLINE,
                     reason="lwt")
        pub.publish(topic(site_id, dev, Kind.STATUS), off.model_dump_json().encode())
        assert pub.wait_acked(1)
        assert wait_for(lambda: ing.stats().get("statuses", 0) == 1, 20)
        with psycopg.connect(db_url) as conn:
            p = store.presence(conn, [dev])[dev]
        assert p.state == "offline"
        assert p.last_seen is not None and p.last_seen.year == datetime.now(UTC).year
    finally:
        pub.close()
        ing.stop()


# ---------------------------------------------------------------- the rules


def _poisoned_snapshot() -> dict[str, Any]:
    """The sensing state as an alert worker saved it after the probe's message: the
    poisoned household's motion sensor and its activity in the year 9999, another
    device's status in 2099. Every other household is live."""
    site = demo_site()
    eng = SensingEngine(site)
    for i, d in enumerate(site.devices):
        if d.kind != "camera":
            eng.on_message(_ev(d.id, i, NOW - timedelta(seconds=30), EventType.HEARTBEAT),
                           received_at=NOW - timedelta(seconds=30))
    snap = json.loads(json.dumps(eng.snapshot()))
    far = {"$dt": FAR}
    presence, activity = snap["rules"]["offline"], snap["rules"]["inactivity"]["subjects"]
    presence["pir-3-2-501"]["last_seen"] = far
    activity[POISONED]["last_activity"] = far
    activity[POISONED]["last_activity_device"] = "pir-3-2-501"
    presence["door-3-2-501"]["status_ts"] = {"$dt": "2099-01-01T00:00:00+00:00"}
    presence["door-3-2-501"]["status_seq"] = 9
    return snap


def test_a_restored_future_timestamp_stops_no_rule_elsewhere(caplog) -> None:  # noqa: ANN001
    site = demo_site()
    eng = SensingEngine(site)
    eng.restore(_poisoned_snapshot())
    clock = ManualClock(NOW)
    with caplog.at_level(logging.WARNING):
        eng.tick(clock.now())  # raised OverflowError before the fix
    # An SOS elsewhere raises its alarm.
    sos = eng.on_message(_ev("sos-2-1-302", 900, clock.now(), EventType.SOS),
                         received_at=clock.now())
    assert [(a.category, a.subject_id) for a in sos] == [(Category.SOS, ELSEWHERE)]
    # So does an SOS in the poisoned household itself.
    sos = eng.on_message(_ev("sos-3-2-501", 901, clock.now(), EventType.SOS),
                         received_at=clock.now())
    assert (Category.SOS, POISONED) in [(a.category, a.subject_id) for a in sos]
    # A device elsewhere that falls silent is reported offline by a later tick.
    clock.advance(3 * 3600)
    alarms = eng.tick(clock.now())
    offline = {a.device_id for a in alarms if a.category is Category.DEVICE_OFFLINE
               and a.state is AlarmState.FIRING}
    assert "pir-2-1-302" in offline
    # The poisoned household recovered too: its sensors' silence counts again.
    assert "pir-3-2-501" in offline
    # The repair was logged, naming what it dropped.
    repaired = [r for r in caplog.records if "future" in r.getMessage()]
    assert any(getattr(r, "device", None) == "pir-3-2-501" for r in repaired)
    assert any(getattr(r, "subject", None) == POISONED for r in repaired)


def test_a_future_status_in_saved_state_no_longer_freezes_presence() -> None:
    site = demo_site()
    eng = SensingEngine(site)
    eng.restore(_poisoned_snapshot())
    clock = ManualClock(NOW)
    eng.tick(clock.now())
    will = Status(device="door-3-2-501", seq=10, ts=clock.now(), state=DeviceState.OFFLINE,
                  reason="lwt")
    eng.on_message(will, received_at=clock.now())
    clock.advance(3600)
    alarms = eng.tick(clock.now())
    door = [a for a in alarms if a.device_id == "door-3-2-501"
            and a.category is Category.DEVICE_OFFLINE]
    # Offline because of its Last Will, not only because its heartbeats stopped: the
    # Will is no longer outranked by the status from 2099.
    assert [a.evidence["reason"] for a in door] == ["lwt"]


def test_one_households_failure_is_contained_logged_and_counted(caplog) -> None:  # noqa: ANN001
    """Any failure, not only an overflow: one household's rule raising leaves the
    others' rules running, and says which household failed."""
    site = demo_site()
    failures: list[tuple[str, str]] = []
    eng = SensingEngine(site)
    eng.on_problem = lambda kind, ident: failures.append((kind, ident))
    for i, d in enumerate(site.devices):
        if d.kind != "camera":
            eng.on_message(_ev(d.id, i, NOW, EventType.MOTION), received_at=NOW)
    rule = eng.rule("inactivity")
    real = rule.check

    def broken(s, now):  # noqa: ANN001, ANN202
        if s.id == POISONED:
            raise RuntimeError("a bug that only this household's data reaches")
        return real(s, now)

    rule.check = broken  # type: ignore[attr-defined]
    later = NOW + timedelta(hours=13)  # every household is past its 12 h day window
    alarms = []
    with caplog.at_level(logging.ERROR):
        # Heartbeats bring every household's data time up to now: the first of them
        # makes the inactivity of each household due, the tick finds nothing more.
        for i, d in enumerate(site.devices):
            if d.kind != "camera":
                alarms += eng.on_message(_ev(d.id, 500 + i, later, EventType.HEARTBEAT),
                                         received_at=later)
        alarms += eng.tick(later)
    inactive = {a.subject_id for a in alarms if a.category is Category.INACTIVITY}
    others = {s.id for s in site.care_subjects} - {POISONED}
    assert inactive == others
    assert ("subject_failed", POISONED) in failures
    assert any(getattr(r, "subject", None) == POISONED for r in caplog.records)
    # Its own SOS still gets through although its household check fails.
    sos = eng.on_message(_ev("sos-3-2-501", 999, later, EventType.SOS), received_at=later)
    assert [a.category for a in sos] == [Category.SOS]


def test_a_device_check_failure_is_contained(caplog) -> None:  # noqa: ANN001
    site = demo_site()
    failures: list[tuple[str, str]] = []
    eng = SensingEngine(site)
    eng.on_problem = lambda kind, ident: failures.append((kind, ident))
    for i, d in enumerate(site.devices):
        if d.kind != "camera":
            eng.on_message(_ev(d.id, i, NOW, EventType.HEARTBEAT), received_at=NOW)
    rule = eng.rule("offline")
    real = rule.check_device

    def broken(dev, now):  # noqa: ANN001, ANN202
        if dev.id == "pir-3-2-501":
            raise OverflowError("date value out of range")
        return real(dev, now)

    rule.check_device = broken  # type: ignore[attr-defined]
    with caplog.at_level(logging.ERROR):
        alarms = eng.tick(NOW + timedelta(hours=3))
    offline = {a.device_id for a in alarms if a.category is Category.DEVICE_OFFLINE}
    assert "pir-2-1-302" in offline and "pir-3-2-501" not in offline
    assert ("device_failed", "pir-3-2-501") in failures
    assert any(getattr(r, "device", None) == "pir-3-2-501" for r in caplog.records)


def test_the_engine_ignores_impossible_time_it_is_handed() -> None:
    """The ingest rejects such messages; a message from any other path (a bridge, a
    replay with receive times) is bounded by the rules too."""
    site = demo_site()
    problems: list[tuple[str, str]] = []
    eng = SensingEngine(site)
    eng.on_problem = lambda kind, ident: problems.append((kind, ident))
    bad = Event(device="pir-3-2-501", seq=1, ts=datetime.fromisoformat(FAR),
                type=EventType.MOTION)
    assert eng.on_message(bad, received_at=NOW) == []
    eng.tick(NOW + timedelta(hours=1))
    assert ("message_ignored", "pir-3-2-501") in problems


# ---------------------------------------------------------------- the alert worker


def test_the_alert_worker_keeps_raising_incidents_after_a_future_message(db_url: str) -> None:
    """The probe end to end below the ingest: the message reaches the alert worker
    (stored before the bound existed, or through a path without it), the worker
    saves its state and restarts; SOS elsewhere still opens an incident, and
    offline devices elsewhere are still reported."""
    from hub.alerts.service import SENSING_PROBLEMS

    repaired = SENSING_PROBLEMS.labels("future_ts_repaired")
    before = repaired._value.get()  # type: ignore[attr-defined]
    with pool_for(db_url) as pool:
        clock = ManualClock(NOW)
        a = service(pool, clock).start(applier=False, dispatcher=False, relay=False)
        site = demo_site()
        a.on_messages([_ev(d.id, i, NOW, EventType.HEARTBEAT)
                       for i, d in enumerate(site.devices) if d.kind != "camera"])
        # What the probe's message left behind, in the live engine.
        a.sensing.restore(_poisoned_snapshot())
        a.tick()
        a.stop()  # saves the sensing state, 9999 included before the fix

        clock2 = ManualClock(NOW + timedelta(seconds=5))
        b = service(pool, clock2).start(applier=False, dispatcher=False, relay=False)
        try:
            b.tick()
            b.on_messages([_ev("sos-2-1-302", 900, clock2.now(), EventType.SOS)])
            assert count(pool, "SELECT count(*) FROM incidents WHERE category = 'sos'"
                         " AND subject_id = %s", ELSEWHERE) == 1
            clock2.advance(3 * 3600)
            b.tick()
            assert count(pool, "SELECT count(*) FROM incidents"
                         " WHERE category = 'device_offline'") > 0
        finally:
            b.stop()
    # Counted on /metrics: the household and the device whose times were dropped.
    assert repaired._value.get() - before >= 2  # type: ignore[attr-defined]


# ---------------------------------------------------------------- frames


def test_frames_with_impossible_time_are_rejected_by_the_vision_worker(tmp_path) -> None:  # noqa: ANN001
    """A frame's ts times the fire lane's dwell and becomes its alarm's time: a
    camera's frame from 9999 is refused like a sensor's message, and counted."""
    from hub.protocol import FrameMeta, encode_frame
    from hub.services import Broker
    from hub.vision import metrics as vm
    from hub.vision.worker import VisionWorker

    site = demo_site()
    cam = next(d.id for d in site.devices if d.kind == "camera")
    w = VisionWorker(site, Broker("127.0.0.1", 1), tmp_path, lambda a: None,
                     pose_factory=lambda: None, analyzer_factory=lambda d: None)
    name = topic(site.site.id, cam, Kind.FRAME)

    def frame(seq: int, ts: datetime) -> bytes:
        meta = FrameMeta(device=cam, seq=seq, ts=ts, width=320, height=240)
        return encode_frame(meta, b"\xff\xd8 a jpeg")

    before = vm.FRAMES_REJECTED.labels("ts_future")._value.get()  # type: ignore[attr-defined]
    assert w.submit(name, frame(1, datetime.fromisoformat(FAR))) == "ts_future"
    assert w.submit(name, frame(2, datetime(1970, 1, 1, tzinfo=UTC))) == "ts_past"
    assert w.submit(name, frame(3, datetime.now(UTC))) == "queued"
    assert w.rejected == {"ts_future": 1, "ts_past": 1}
    after = vm.FRAMES_REJECTED.labels("ts_future")._value.get()  # type: ignore[attr-defined]
    assert after - before == 1
