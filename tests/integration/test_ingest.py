"""Ingest end to end: a real broker, a real database, the real client."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hub.ingest.service import Ingest
from hub.protocol import Event, Kind, Status, Telemetry, topic
from hub.store import readings as store
from hub.store.db import open_pool
from hubtools import loadgen


def wait_for(pred, timeout: float = 20.0, every: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(every)
    return pred()


@pytest.fixture
def site(site_id: str):
    return loadgen.make_site(site_id, 4)


def test_telemetry_events_and_status_are_stored_and_passed_on(db_url, broker, site, site_id):
    seen: list = []
    ing = Ingest(db_url=db_url, broker=broker, site=site, client_id=f"ing-{site_id}",
                 shared_group=site_id, session_expiry_s=60, batch_wait_ms=20,
                 on_committed=seen.extend)
    ing.start()
    pub = loadgen.Publisher(broker)
    try:
        assert ing.wait_connected(10)
        devs = [d.id for d in site.devices]
        for seq in range(50):
            for d in devs:
                pub.publish(topic(site_id, d, Kind.TELEMETRY), loadgen.telemetry_payload(d, seq))
        pub.publish(topic(site_id, devs[0], Kind.EVENT),
                    loadgen.event_payload(devs[0], 1000, "sos"))
        pub.publish(topic(site_id, devs[1], Kind.STATUS),
                    loadgen.status_payload(devs[1], 7, "online"), retain=True)
        assert pub.wait_acked(4 * 50 + 2)
        assert wait_for(lambda: ing.stats().get("stored", 0) == 201
                        and ing.stats().get("statuses", 0) == 1)
        with psycopg.connect(db_url) as c:
            assert store.count_readings(c, devs) == loadgen.expected_readings(devs, range(50))
            assert store.count_events(c, devs) == 1
            assert store.count_messages(c, devs) == 201
            pres = store.presence(c, devs)
            assert pres[devs[1]].state == "online"
            assert pres[devs[0]].last_seq == 1000
            assert pres[devs[3]].state == "unknown" and pres[devs[3]].last_seq == 49
        kinds = {type(m) for m in seen}
        assert kinds == {Telemetry, Event, Status}
        assert len(seen) == 202
        assert ing.stats()["acked"] == 202
    finally:
        pub.client.publish(topic(site_id, site.devices[1].id, Kind.STATUS), b"", retain=True)
        pub.close()
        ing.stop()


def test_redelivered_messages_are_stored_once(db_url, broker, site, site_id):
    ing = Ingest(db_url=db_url, broker=broker, site=site, client_id=f"ing-{site_id}",
                 shared_group=site_id, session_expiry_s=60, batch_wait_ms=10)
    ing.start()
    pub = loadgen.Publisher(broker)
    try:
        assert ing.wait_connected(10)
        d = site.devices[0].id
        for _ in range(3):  # the same message three times, as a broker redelivers it
            for seq in range(20):
                pub.publish(topic(site_id, d, Kind.TELEMETRY), loadgen.telemetry_payload(d, seq))
        assert pub.wait_acked(60)
        assert wait_for(lambda: ing.stats().get("stored", 0) + ing.stats().get("duplicates", 0)
                        == 60)
        assert ing.stats()["stored"] == 20 and ing.stats()["duplicates"] == 40
        with psycopg.connect(db_url) as c:
            assert store.count_readings(c, [d]) == loadgen.expected_readings([d], range(20))
    finally:
        pub.close()
        ing.stop()


def test_malformed_messages_are_counted_acked_and_dropped(db_url, broker, site, site_id):
    ing = Ingest(db_url=db_url, broker=broker, site=site, client_id=f"ing-{site_id}",
                 shared_group=site_id, session_expiry_s=60, batch_wait_ms=10)
    ing.start()
    pub = loadgen.Publisher(broker)
    d0, d1 = site.devices[0].id, site.devices[1].id
    now = datetime.now(UTC).isoformat()
    bad = {
        "bad_json": (topic(site_id, d0, Kind.TELEMETRY), b"{not json"),
        "invalid": (topic(site_id, d0, Kind.TELEMETRY),
                    b'{"v":1,"device":"%s","seq":"x","ts":"%s","readings":[]}'
                    % (d0.encode(), now.encode())),
        "oversized": (topic(site_id, d0, Kind.EVENT), b" " * (65 * 1024)),
        "unknown_device": (topic(site_id, "ghost", Kind.TELEMETRY),
                           loadgen.telemetry_payload("ghost", 1)),
        "device_mismatch": (topic(site_id, d0, Kind.TELEMETRY), loadgen.telemetry_payload(d1, 1)),
        "bad_topic": (f"sc/v1/{site_id}/bad id!/telemetry", loadgen.telemetry_payload(d0, 1)),
    }
    try:
        assert ing.wait_connected(10)
        for t, p in bad.values():
            pub.publish(t, p)
        pub.publish(topic(site_id, d0, Kind.TELEMETRY), loadgen.telemetry_payload(d0, 5))
        assert pub.wait_acked(len(bad) + 1)
        assert wait_for(lambda: ing.stats()["rejected_total"] == len(bad)
                        and ing.stats().get("stored") == 1)
        assert ing.stats()["rejected"] == {r: 1 for r in bad}
        assert ing.stats()["acked"] == 1  # plus the rejected, acked on the spot
    finally:
        pub.close()
        ing.stop()


def test_restart_resumes_the_session_and_flushes_on_stop(db_url, broker, site, site_id):
    """Messages published while the ingest is stopped wait in its persistent
    session and arrive after it starts again with the same client id."""
    cid = f"ing-{site_id}"
    d = site.devices[0].id
    ing = Ingest(db_url=db_url, broker=broker, site=site, client_id=cid, shared_group=site_id,
                 session_expiry_s=60)
    ing.start()
    assert ing.wait_connected(10)
    ing.stop()
    res = loadgen.publish_telemetry(broker, site_id, [d], range(100))
    assert res.sent == 100
    ing2 = Ingest(db_url=db_url, broker=broker, site=site, client_id=cid, shared_group=site_id,
                  session_expiry_s=60)
    ing2.start()
    try:
        assert wait_for(lambda: ing2.stats().get("stored", 0) == 100)
    finally:
        ing2.stop()


def test_acknowledged_batches_are_not_delivered_again(db_url, broker, site, site_id):
    """The PUBACKs of committed batches (written together) reach the broker: a
    restart on the same session gets nothing back, and nothing is stored twice."""
    cid = f"ing-{site_id}"
    devices = [d.id for d in site.devices]
    ing = Ingest(db_url=db_url, broker=broker, site=site, client_id=cid, shared_group=site_id,
                 session_expiry_s=60, batch_max=50, batch_wait_ms=20)
    ing.start()
    try:
        assert ing.wait_connected(10)
        sent = loadgen.publish_telemetry(broker, site_id, devices, range(150)).sent
        assert wait_for(lambda: ing.stats().get("acked", 0) == sent)
        assert ing.stats()["batches"] > 1
    finally:
        ing.stop()
    again = Ingest(db_url=db_url, broker=broker, site=site, client_id=cid,
                   shared_group=site_id, session_expiry_s=60, sync=False)
    again.start()
    try:
        assert again.wait_connected(10)
        time.sleep(2)  # a redelivery would arrive at once on the resumed session
        st = again.stats()
        assert st.get("stored", 0) == 0 and st.get("duplicates", 0) == 0 and st["pending"] == 0
    finally:
        again.stop()
    with psycopg.connect(db_url) as c:
        assert store.count_messages(c, devices) == sent
        assert store.duplicate_rows(c) == 0


def test_presence_follows_status_order_not_arrival(db_url, broker, site, site_id):
    ing = Ingest(db_url=db_url, broker=broker, site=site, client_id=f"ing-{site_id}",
                 shared_group=site_id, session_expiry_s=60, batch_wait_ms=10)
    ing.start()
    pub = loadgen.Publisher(broker)
    d = site.devices[2].id
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    st = topic(site_id, d, Kind.STATUS)
    try:
        assert ing.wait_connected(10)
        pub.publish(st, loadgen.status_payload(d, 10, "online", t0 + timedelta(minutes=1)))
        # Older than what is applied: a stale message must not flip the state.
        pub.publish(st, loadgen.status_payload(d, 3, "offline", t0, "lwt"))
        assert pub.wait_acked(2)
        assert wait_for(lambda: ing.stats().get("statuses", 0) == 2)
        with psycopg.connect(db_url) as c:
            assert store.presence(c, [d])[d].state == "online"
        # The Last Will of the same connection (same seq and ts) arrives later: offline.
        pub.publish(st, loadgen.status_payload(d, 10, "offline", t0 + timedelta(minutes=1),
                                               "connection lost"))
        assert pub.wait_acked(3)
        assert wait_for(lambda: ing.stats().get("statuses", 0) == 3)
        with psycopg.connect(db_url) as c:
            p = store.presence(c, [d])[d]
            assert p.state == "offline" and p.reason == "connection lost"
    finally:
        pub.close()
        ing.stop()


def test_a_message_the_database_refuses_is_dropped_alone(db_url, broker, site, site_id):
    """A batch refused for one message's data is split: that message is counted as
    unstorable and acknowledged, the rest are stored. (The refusal is a CHECK
    constraint added for the test: the protocol lets nothing through that the
    schema itself refuses.)"""
    with psycopg.connect(db_url) as c:
        c.execute("ALTER TABLE readings ADD CONSTRAINT small CHECK (value < 1e6)")
        c.commit()
    pool = open_pool(db_url, 1, 2)
    ing = Ingest(db_url=pool, broker=broker, site=site, client_id=f"ing-{site_id}",
                 shared_group=site_id, batch_wait_ms=200, session_expiry_s=60)
    ing.start()
    pub = loadgen.Publisher(broker)
    d = site.devices[0].id
    t = topic(site_id, d, Kind.TELEMETRY)
    now = datetime.now(UTC).isoformat()
    try:
        assert ing.wait_connected(10)
        for seq in range(10):
            value = 1e9 if seq == 4 else seq
            pub.publish(t, json.dumps({"v": 1, "device": d, "seq": seq, "ts": now,
                                       "readings": [{"metric": "t", "value": value}]}).encode())
        assert pub.wait_acked(10)
        assert wait_for(lambda: ing.stats().get("stored", 0) == 9)
        assert ing.stats()["rejected"] == {"unstorable": 1}
        assert ing.stats()["acked"] == 10
        with psycopg.connect(db_url) as c:
            assert {s for _, s in store.message_keys(c, [d])["telemetry"]} == (
                set(range(10)) - {4})
    finally:
        pub.close()
        ing.stop()
        pool.close()


def test_retained_status_and_last_will_drive_presence(db_url, broker, site, site_id):
    """A device's retained online status, published before the ingest starts,
    reaches it (status is not a shared subscription, which would never carry
    retained messages); when the device's connection dies, the broker's Last Will
    marks it offline."""
    d = site.devices[3].id
    st = topic(site_id, d, Kind.STATUS)
    t0 = datetime.now(UTC)
    dev = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{site_id}-{d}",
                      protocol=MQTTProtocolVersion.MQTTv5)
    dev.will_set(st, loadgen.status_payload(d, 1, "offline", t0, "connection lost"),
                 qos=1, retain=True)
    dev.connect(broker.host, broker.port, keepalive=5)
    dev.loop_start()
    online = loadgen.status_payload(d, 1, "online", t0)
    dev.publish(st, online, qos=1, retain=True).wait_for_publish(5)
    ing = Ingest(db_url=db_url, broker=broker, site=site, client_id=f"ing-{site_id}",
                 shared_group=site_id, session_expiry_s=60, batch_wait_ms=10)
    ing.start()
    try:
        assert ing.wait_connected(10)

        def state() -> str:
            with psycopg.connect(db_url) as c:
                return store.presence(c, [d])[d].state

        assert wait_for(lambda: state() == "online", 10)
        dev.loop_stop()
        dev.socket().close()  # the connection dies without a DISCONNECT
        assert wait_for(lambda: state() == "offline", 20)
        with psycopg.connect(db_url) as c:
            assert store.presence(c, [d])[d].reason == "connection lost"
    finally:
        ing.stop()
        cleanup = loadgen.Publisher(broker)
        cleanup.publish(st, b"", retain=True)
        cleanup.wait_acked(1)
        cleanup.close()
