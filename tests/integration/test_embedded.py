"""The embedded services start, serve real clients, and stop."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub import embedded
from hub.services import Broker, tcp_open


def _roundtrip(b: Broker, payload: bytes, topic: str = "sc/v1/x/y/frame") -> bytes:
    """Publish ``payload`` through the broker with MQTT 5 and return what a shared
    subscriber received."""
    got: list[bytes] = []
    done = threading.Event()

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        got.append(m.payload)
        done.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="emb-sub", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.connect(b.host, b.port)
    sub.loop_start()
    try:
        sub.subscribe("$share/g/sc/v1/+/+/frame", qos=1)[1]
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="emb-pub", protocol=mqtt.MQTTv5)
        pub.connect(b.host, b.port)
        pub.loop_start()
        try:
            # The subscription must be in place before publishing; retry until it is.
            for _ in range(20):
                pub.publish(topic, payload, qos=1).wait_for_publish(5)
                if done.wait(0.5):
                    break
        finally:
            pub.loop_stop()
            pub.disconnect()
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert got, "nothing arrived through the embedded broker"
    return got[0]


@pytest.mark.skipif(not (shutil.which("mosquitto") or embedded._sbin("mosquitto")),
                    reason="mosquitto not installed")
def test_mosquitto_carries_a_2mb_frame_and_stops(tmp_path: Path) -> None:
    b = embedded.start_broker(tmp_path)
    assert b.kind == "mosquitto"
    try:
        frame = bytes(range(256)) * (2 * 1024 * 1024 // 256)
        assert _roundtrip(b, frame) == frame
    finally:
        b.stop()
    assert not tcp_open(b.host, b.port)


def test_rumqttd_speaks_mqtt5_with_big_payloads(tmp_path: Path) -> None:
    b = embedded.start_rumqttd(tmp_path)
    try:
        frame = b"\xff\xd8" + b"j" * (1024 * 1024)
        assert _roundtrip(b, frame) == frame
    finally:
        b.stop()
    assert not tcp_open(b.host, b.port)


def test_embedded_postgres_gives_a_usable_database(tmp_path: Path) -> None:
    pg = embedded.start_postgres(tmp_path, database="hubtest")
    try:
        with psycopg.connect(pg.url) as c:
            assert c.execute("SELECT current_database()").fetchone() == ("hubtest",)
            c.execute("CREATE TABLE t (x int)")
            c.execute("INSERT INTO t VALUES (1)")
            assert c.execute("SELECT count(*) FROM t").fetchone() == (1,)
    finally:
        pg.stop()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg.url, connect_timeout=2).close()
