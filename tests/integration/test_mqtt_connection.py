"""The process's one MQTT connection (hub.mqtt) on the real broker: consumers with
overlapping subscriptions each get their own copy, manual acknowledgement holds a
message until the consumer acks it, a stopped consumer's messages come back on the
next connection, publishers share the client, and the metrics count it all."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from prometheus_client import REGISTRY

from hub.mqtt import Consumer, MqttConnection, topic_filter
from hub.services import Broker


def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Recorder:
    def __init__(self) -> None:
        self.got: list[tuple[str, bytes, int, int]] = []
        self.lock = threading.Lock()

    def __call__(self, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.got.append((m.topic, m.payload, m.qos, m.mid))


def device(broker: Broker) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}",
                    protocol=MQTTProtocolVersion.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def test_topic_filter_strips_a_shared_subscription_prefix() -> None:
    assert topic_filter("$share/hub/sc/v1/s/+/event") == "sc/v1/s/+/event"
    assert topic_filter("sc/v1/s/+/event") == "sc/v1/s/+/event"
    assert topic_filter("$share/hub") == ""


def test_overlapping_consumers_each_get_their_copy_and_publishers_share_it(
        broker: Broker) -> None:
    root = f"t/{uuid.uuid4().hex[:8]}"
    conn = MqttConnection(broker, f"hub-test-{uuid.uuid4().hex[:8]}")
    shared, plain = Recorder(), Recorder()
    # The ingest's shape (a shared subscription, QoS 1, acked by hand) and a vision
    # worker's (its own camera's topic, QoS 0) over the same message.
    a = conn.add_consumer("shared", [(f"$share/g/{root}/+/event", 1)], shared,
                          manual_ack=True, identified=False)
    conn.start()
    try:
        b = conn.add_consumer("plain", [(f"{root}/cam1/event", 0)], plain)
        assert a.ready.wait(10) and b.ready.wait(10)
        before_in = metric("hub_mqtt_messages_in_total", consumer="shared")
        before_out = metric("hub_mqtt_messages_out_total", consumer="pub")
        dev = device(broker)
        try:
            dev.publish(f"{root}/cam1/event", b"e1", qos=1).wait_for_publish(5)
            dev.publish(f"{root}/door/event", b"e2", qos=1).wait_for_publish(5)
            assert wait_for(lambda: len(shared.got) == 2 and len(plain.got) == 1)
        finally:
            dev.disconnect()
            dev.loop_stop()
        assert sorted(p for _, p, _, _ in shared.got) == [b"e1", b"e2"]
        assert [(t, p, q) for t, p, q, _ in plain.got] == [(f"{root}/cam1/event", b"e1", 0)]
        time.sleep(0.3)  # no second copy arrives for either
        assert len(shared.got) == 2 and len(plain.got) == 1
        assert metric("hub_mqtt_messages_in_total", consumer="shared") - before_in == 2
        assert conn.ack([mid for *_, mid in shared.got], conn.generation) == 2

        echo = Recorder()
        conn.add_consumer("echo", [(f"{root}/out", 1)], echo)
        assert wait_for(lambda: conn.stats()["consumers"]["echo"])
        assert conn.publish_many([(f"{root}/out", b"n1"), (f"{root}/out", b"n2")],
                                 by="pub") == [None, None]
        assert wait_for(lambda: len(echo.got) == 2)
        assert metric("hub_mqtt_messages_out_total", consumer="pub") - before_out == 2
        assert metric("hub_mqtt_connected") >= 1
    finally:
        conn.stop()


def test_manual_ack_holds_a_message_until_acked_and_a_stopped_consumer_gets_it_again(
        broker: Broker) -> None:
    root = f"t/{uuid.uuid4().hex[:8]}"
    cid = f"hub-test-{uuid.uuid4().hex[:8]}"

    def session() -> tuple[MqttConnection, Recorder, Consumer]:
        conn = MqttConnection(broker, cid, persistent_session=True, session_expiry_s=60)
        rec = Recorder()
        c = conn.add_consumer("ingest", [(f"{root}/+/telemetry", 1)], rec, manual_ack=True,
                              identified=False)
        conn.start()
        assert c.ready.wait(10)
        return conn, rec, c

    conn, rec, c = session()
    dev = device(broker)
    try:
        dev.publish(f"{root}/d1/telemetry", b"m1", qos=1).wait_for_publish(5)
        assert wait_for(lambda: len(rec.got) == 1)
        # Not acknowledged: after a reconnect the broker sends it again.
        conn.stop()
        conn, rec, c = session()
        assert wait_for(lambda: [p for _, p, _, _ in rec.got] == [b"m1"])
        stale_gen = conn.generation - 1
        assert conn.ack([rec.got[0][3]], stale_gen) == 0  # another connection's id
        assert conn.ack([rec.got[0][3]], conn.generation) == 1
        conn.stop()
        conn, rec, c = session()
        time.sleep(0.5)
        assert rec.got == []  # acknowledged: gone

        # A stopped consumer takes nothing and acks nothing: it all comes back.
        conn.stop_consumer(c)
        dev.publish(f"{root}/d1/telemetry", b"m2", qos=1).wait_for_publish(5)
        time.sleep(0.5)
        assert rec.got == []
        conn.stop()
        conn, rec, c = session()
        assert wait_for(lambda: [p for _, p, _, _ in rec.got] == [b"m2"])
        conn.ack([rec.got[0][3]], conn.generation)
    finally:
        dev.disconnect()
        dev.loop_stop()
        conn.stop()


def test_a_message_no_consumer_wants_is_acknowledged_and_counted(broker: Broker) -> None:
    root = f"t/{uuid.uuid4().hex[:8]}"
    cid = f"hub-test-{uuid.uuid4().hex[:8]}"
    # A session left with a subscription no consumer of this process declares (e.g.
    # a role it no longer runs).
    old = MqttConnection(broker, cid, persistent_session=True, session_expiry_s=60)
    old.add_consumer("gone", [(f"{root}/x", 1)], Recorder(), manual_ack=True)
    old.start()
    assert wait_for(lambda: old.stats()["consumers"]["gone"])
    old.stop()
    conn = MqttConnection(broker, cid, persistent_session=True, session_expiry_s=60)
    rec = Recorder()
    c = conn.add_consumer("ingest", [(f"{root}/y", 1)], rec, manual_ack=True,
                          identified=False)
    before = metric("hub_mqtt_messages_unrouted_total")
    conn.start()
    dev = device(broker)
    try:
        assert c.ready.wait(10)
        dev.publish(f"{root}/x", b"stray", qos=1).wait_for_publish(5)
        assert wait_for(lambda: metric("hub_mqtt_messages_unrouted_total") - before == 1)
        assert rec.got == []
    finally:
        dev.disconnect()
        dev.loop_stop()
        conn.stop()
    # Acknowledged: a new connection of the session does not get it again.
    again = MqttConnection(broker, cid, persistent_session=True, session_expiry_s=60)
    before = metric("hub_mqtt_messages_unrouted_total")
    again.start()
    try:
        assert again.wait_connected(10)
        time.sleep(0.5)
        assert metric("hub_mqtt_messages_unrouted_total") == before
    finally:
        again.stop()


def test_a_lost_connection_is_counted_and_reestablished(broker: Broker) -> None:
    cid = f"hub-test-{uuid.uuid4().hex[:8]}"
    conn = MqttConnection(broker, cid)
    rec = Recorder()
    c = conn.add_consumer("c", [(f"t/{cid}", 0)], rec)
    conn.start()
    try:
        assert c.ready.wait(10)
        gen = conn.generation
        before = metric("hub_mqtt_reconnects_total")
        # Another client with the same id takes the session over: the broker drops
        # ours, and paho's backoff brings it back.
        thief = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid,
                            protocol=MQTTProtocolVersion.MQTTv5)
        thief.connect(broker.host, broker.port)
        thief.disconnect()
        assert wait_for(lambda: conn.generation > gen and c.ready.is_set(), 15)
        assert metric("hub_mqtt_reconnects_total") - before >= 1
    finally:
        conn.stop()
