"""Zigbee2MQTT through the real broker into the real database: payloads as a bridge
publishes them become stored readings, events and presence, the sensing rules see
them, and hostile payloads are refused with counters while the rest flows on."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from hub.config import Site
from hub.domain import AlarmState
from hub.ingest.service import Ingest
from hub.protocol import Event, EventType, Message, Status
from hub.sensing.engine import SensingEngine
from hub.store import readings as store
from hubtools import loadgen

GRID = "11010500100201"


def wait_for(pred, timeout: float = 20.0, every: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(every)
    return pred()


def _site(site_id: str, base: str) -> Site:
    dev = {"grid": GRID, "location": {"x": 0.5, "y": 0.5}, "subject": "s01",
           "heartbeat_s": 3600}
    return Site.model_validate({
        "site": {"id": site_id, "name": "z2m"},
        "grid": loadgen.GRID,
        "care_subjects": [{"id": "s01", "name": "王奶奶", "address": "3-2-501", "grid": GRID,
                           "consent": True}],
        "devices": [{"id": "door-1", "kind": "door", **dev},
                    {"id": "pir-1", "kind": "pir", **dev},
                    {"id": "smoke-1", "kind": "smoke", **dev}],
        "adapters": [{"kind": "zigbee2mqtt", "base_topic": base, "mqtt_user": f"z2m-{site_id}",
                      "devices": {"3-2-501/door": "door-1", "3-2-501/motion": "pir-1",
                                  "3-2-501/smoke": "smoke-1"}}],
    })


@pytest.fixture
def z2m(db_url, broker, site_id):  # type: ignore[no-untyped-def]
    base = f"z2m/{site_id}"
    site = _site(site_id, base)
    seen: list[Message] = []
    ing = Ingest(db_url=db_url, broker=broker, site=site, client_id=f"ing-{site_id}",
                 shared_group=site_id, session_expiry_s=60, batch_wait_ms=20,
                 on_committed=seen.extend)
    ing.start()
    pub = loadgen.Publisher(broker)
    assert ing.wait_connected(10)
    yield site, base, ing, pub, seen
    pub.client.publish(f"{base}/3-2-501/door/availability", b"", retain=True)
    pub.close()
    ing.stop()


def _send(pub: loadgen.Publisher, topic: str, payload: dict | bytes, retain: bool = False
          ) -> None:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    pub.publish(topic, raw, retain=retain)


def test_bridge_payloads_become_readings_events_and_presence(db_url, z2m) -> None:  # type: ignore[no-untyped-def]
    site, base, ing, pub, seen = z2m
    door = {"battery": 91, "voltage": 3005, "contact": True, "linkquality": 120,
            "device_temperature": 25, "power_outage_count": 6}
    motion = {"battery": 100, "voltage": 3055, "illuminance": 15, "occupancy": True,
              "linkquality": 102, "device_temperature": 27}
    _send(pub, f"{base}/3-2-501/door", door)
    _send(pub, f"{base}/3-2-501/door", {**door, "contact": False})  # opened
    # The same state again (a periodic report); an identical payload within the same
    # millisecond would be taken for a redelivery, so this one's link differs.
    _send(pub, f"{base}/3-2-501/door", {**door, "contact": False, "linkquality": 117})
    _send(pub, f"{base}/3-2-501/door", door)  # closed
    _send(pub, f"{base}/3-2-501/motion", motion)
    _send(pub, f"{base}/3-2-501/door/availability", b'{"state":"offline"}', retain=True)
    _send(pub, f"{base}/bridge/state", b'{"state":"online"}')
    assert pub.wait_acked(7)
    assert wait_for(lambda: ing.stats().get("statuses", 0) == 1
                    and ing.stats().get("adapter_ignored", 0) == 1
                    and ing.stats().get("acked", 0) == 6)
    with psycopg.connect(db_url) as c:
        latest = store.latest_readings(c, "door-1")
        assert latest["battery"][1] == 91 and latest["linkquality"][1] == 120
        assert latest["contact"][1] == 1.0
        assert store.count_messages(c, ["door-1"]) == 4 + 2  # 4 telemetry, 2 events
        rows = c.execute("SELECT type FROM events WHERE device_id = %s ORDER BY ts, seq",
                         ("door-1",)).fetchall()
        assert [r[0] for r in rows] == ["door_open", "door_close"]
        assert c.execute("SELECT type, data FROM events WHERE device_id = 'pir-1'"
                         ).fetchall() == [("motion", {"source": "zigbee2mqtt"})]
        assert store.presence(c, ["door-1"])["door-1"].state == "offline"
    assert {m.type for m in seen if isinstance(m, Event)} == {
        EventType.DOOR_OPEN, EventType.DOOR_CLOSE, EventType.MOTION}
    assert any(isinstance(m, Status) and m.device == "door-1" for m in seen)
    assert ing.stats()["rejected_total"] == 0


def test_the_sensing_rules_see_what_the_bridge_sends(z2m) -> None:  # type: ignore[no-untyped-def]
    site, base, ing, pub, seen = z2m
    smoke = {"smoke": False, "battery_low": False, "tamper": False, "battery": 97,
             "smoke_density": 0, "voltage": 3075, "linkquality": 87}
    _send(pub, f"{base}/3-2-501/smoke", smoke)
    _send(pub, f"{base}/3-2-501/smoke", {**smoke, "smoke": True, "smoke_density": 4})
    _send(pub, f"{base}/3-2-501/smoke", smoke)
    assert pub.wait_acked(3)
    assert wait_for(lambda: sum(isinstance(m, Event) for m in seen) == 4)
    engine = SensingEngine(site)
    alarms = [a for m in list(seen) for a in engine.on_message(m)]
    states = [a.state for a in alarms if a.dedup_key == "smoke:smoke-1"]
    # The rules may read the event and the 0/1 reading of one message alike (a repeat
    # of a firing alarm folds into its incident): what counts is fire, then clear.
    changes = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
    assert changes == [AlarmState.FIRING, AlarmState.CLEARED], states


def test_redelivery_with_last_seen_is_stored_once(db_url, broker, site_id) -> None:  # type: ignore[no-untyped-def]
    base = f"z2m/{site_id}"
    site = _site(site_id, base)
    at = (datetime.now(UTC) - timedelta(seconds=5)).isoformat(timespec="milliseconds")
    closed = {"contact": True, "battery": 88, "linkquality": 61,
              "last_seen": (datetime.now(UTC) - timedelta(seconds=9)).isoformat()}
    opened = {**closed, "contact": False, "linkquality": 60, "last_seen": at}
    pub = loadgen.Publisher(broker)

    def ingest(n: int) -> Ingest:
        ing = Ingest(db_url=db_url, broker=broker, site=site, client_id=f"ing{n}-{site_id}",
                     shared_group=f"{site_id}-{n}", session_expiry_s=60, batch_wait_ms=20)
        ing.start()
        assert ing.wait_connected(10)
        return ing

    try:
        first = ingest(1)
        try:
            _send(pub, f"{base}/3-2-501/door", closed)
            for _ in range(3):  # what a broker resending the unacknowledged message delivers
                _send(pub, f"{base}/3-2-501/door", opened)
            assert pub.wait_acked(4)
            assert wait_for(lambda: first.stats().get("acked", 0) == 4)
            assert first.stats()["duplicates"] == 2
        finally:
            first.stop()
        with psycopg.connect(db_url) as c:
            assert store.count_messages(c, ["door-1"]) == 2 + 1  # 2 telemetry + door_open
            ts = c.execute("SELECT ts FROM events WHERE device_id = 'door-1'").fetchone()
            assert ts is not None and ts[0] == datetime.fromisoformat(at)
        # A restarted ingest has forgotten the states: the same two messages delivered
        # again make the same door_open, with the same ts and seq, stored once.
        second = ingest(2)
        try:
            _send(pub, f"{base}/3-2-501/door", closed)
            _send(pub, f"{base}/3-2-501/door", opened)
            assert pub.wait_acked(6)
            assert wait_for(lambda: second.stats().get("acked", 0) == 2)
            assert second.stats()["stored"] == 0 and second.stats()["duplicates"] == 3
        finally:
            second.stop()
        with psycopg.connect(db_url) as c:
            assert store.count_messages(c, ["door-1"]) == 3
    finally:
        pub.close()


def test_hostile_payloads_are_counted_and_the_rest_flows(db_url, z2m) -> None:  # type: ignore[no-untyped-def]
    site, base, ing, pub, seen = z2m
    door = f"{base}/3-2-501/door"
    hostile = [
        (f"{base}/0x00158d0001a2b3c4", b'{"contact": false}'),  # not in the site file
        (f"{base}/garage/availability", b"offline"),
        (door, b"{not json"),
        (door, b"[" * 70_000),
        (door, b'{"battery": NaN}'),
        (door, b"[1,2,3]"),
        (door, b'{"battery": "abc", "linkquality": 1e999, "voltage": -3}'),
        (door, json.dumps({"contact": False, "last_seen": "2099-01-01T00:00:00Z"}).encode()),
    ]
    for t, p in hostile:
        pub.publish(t, p)
    _send(pub, f"{base}/3-2-501/motion", {"occupancy": True, "battery": 100})
    assert pub.wait_acked(len(hostile) + 1)
    # Refused messages are acknowledged at once, the motion once it is committed.
    assert wait_for(lambda: ing.stats().get("acked", 0) == 1)
    rej = ing.stats()["rejected"]
    assert rej == {"unknown_device": 2, "bad_json": 2, "oversized": 1, "invalid": 4,
                   "ts_future": 1}, rej
    with psycopg.connect(db_url) as c:
        assert store.count_messages(c, ["door-1"]) == 0
        assert store.count_messages(c, ["pir-1"]) == 2  # its telemetry and motion
