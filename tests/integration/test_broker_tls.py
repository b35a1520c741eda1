"""Broker TLS (``mqtts://``) against a real Mosquitto TLS listener and a test CA: the
hub's connection and an edge device link connect with the CA file (and a client
certificate where the listener requires one); a CA that did not sign the broker's
certificate is a clear error, not a silent retry."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge.link import DeviceLink
from edge.spool import Spool
from hub.mqtt import MqttConnection
from hub.protocol import Kind, Reading, Telemetry, encode, topic
from hub.services import BrokerTlsError, parse_mqtt_url
from tests.integration.tls_broker import TlsBroker, openssl_missing, start_tls_broker

pytestmark = pytest.mark.skipif(openssl_missing() is not None,
                                reason=openssl_missing() or "")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    b = start_tls_broker(tmp_path_factory.mktemp("tls"))
    yield b
    b.stop()


def roundtrip(url: str, site: str) -> bytes:
    """Subscribe and publish through one hub connection over ``url``; the payload
    that came back."""
    conn = MqttConnection(parse_mqtt_url(url), f"hub-tls-{site}")
    got: list[bytes] = []
    arrived = threading.Event()

    def on(m: mqtt.MQTTMessage) -> None:
        got.append(m.payload)
        arrived.set()

    consumer = conn.add_consumer("test", [(f"sc/v1/{site}/+/event", 1)], on)
    conn.start()
    try:
        assert conn.wait_connected(10) and consumer.ready.wait(10)
        [err] = conn.publish_many([(topic(site, "d1", Kind.EVENT), b"over tls")], by="test")
        assert err is None
        assert arrived.wait(10)
    finally:
        conn.stop()
    return got[0]


def test_the_hub_connects_over_tls_with_the_ca_file(tls: TlsBroker) -> None:
    url = f"mqtts://127.0.0.1:{tls.port}?ca={tls.ca}"
    assert roundtrip(url, "tls1") == b"over tls"
    assert parse_mqtt_url(url).url == url  # what a process hands a child process


def test_a_client_certificate_where_the_listener_requires_one(tls: TlsBroker) -> None:
    url = (f"mqtts://127.0.0.1:{tls.mutual_port}?ca={tls.ca}&cert={tls.client_cert}"
           f"&key={tls.client_key}")
    assert roundtrip(url, "tls2") == b"over tls"
    without = MqttConnection(parse_mqtt_url(f"mqtts://127.0.0.1:{tls.mutual_port}"
                                            f"?ca={tls.ca}"), "hub-tls-nocert")
    with pytest.raises(BrokerTlsError, match="client certificate"):
        without.start()


def test_a_wrong_ca_is_a_clear_error(tls: TlsBroker) -> None:
    conn = MqttConnection(parse_mqtt_url(f"mqtts://127.0.0.1:{tls.port}?ca={tls.other_ca}"),
                          "hub-tls-wrong")
    with pytest.raises(BrokerTlsError) as e:
        conn.start()
    text = str(e.value)
    assert "certificate is not trusted" in text and str(tls.other_ca) in text
    assert "127.0.0.1" in text
    assert not conn.connected


def test_plain_mqtt_to_a_tls_listener_does_not_connect(tls: TlsBroker) -> None:
    conn = MqttConnection(parse_mqtt_url(f"mqtt://127.0.0.1:{tls.port}"), "hub-tls-plain")
    conn.start()
    try:
        assert not conn.wait_connected(2)
    finally:
        conn.stop()


def _link(tls: TlsBroker, tmp_path: Path, ca: Path, name: str) -> tuple[DeviceLink, Spool]:
    b = parse_mqtt_url(f"mqtts://127.0.0.1:{tls.port}?ca={ca}")
    spool = Spool(tmp_path / f"{name}.db")
    link = DeviceLink(site="tls3", device=name, host=b.host, port=b.port, username=None,
                      password=None, spool=spool, clock=lambda: datetime.now(UTC),
                      require_subscriber=False, tls=b.tls)
    spool.put(name, "telemetry", topic("tls3", name, Kind.TELEMETRY), lambda seq: encode(
        Telemetry(device=name, seq=seq, ts=datetime.now(UTC),
                  readings=[Reading(metric="temp", value=21.5)])))
    return link, spool


def test_an_edge_link_sends_over_tls_and_says_why_a_wrong_ca_fails(
        tls: TlsBroker, tmp_path: Path) -> None:
    link, spool = _link(tls, tmp_path, tls.ca, "dev-ok")
    link.start()
    try:
        deadline = time.monotonic() + 10
        while spool.count("dev-ok") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert spool.count("dev-ok") == 0 and link.stats.acked == 1
    finally:
        link.stop()
    bad, bad_spool = _link(tls, tmp_path, tls.other_ca, "dev-bad")
    bad.start()
    try:
        deadline = time.monotonic() + 10
        while not bad.stats.last_error and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "certificate is not trusted" in (bad.stats.last_error or "")
        assert str(tls.other_ca) in (bad.stats.last_error or "")
        assert bad_spool.count("dev-bad") == 1  # kept for when the CA is put right
    finally:
        bad.stop()
