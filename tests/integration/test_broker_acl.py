"""deploy/mosquitto security on a real Mosquitto (its production config and the
generated credentials): devices authenticate, and the ACL lets a device publish only
under its own topic. Session identity: test_security_mqtt_identity.py."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.agent import EdgeAgent
from edge.config import DeviceSpec, EdgeConfig, Household, Zigbee2MQTTBridge
from edge.credentials import mosquitto_hash
from edge.simulation import Emission
from hub.config import load_site
from hub.protocol import Event, EventType, encode
from hub.services import Broker
from tests.integration.secure_broker import REPO, mosquitto_exe, start_secure_broker

pytestmark = pytest.mark.skipif(mosquitto_exe() is None, reason="mosquitto not installed")


@pytest.fixture
def secured(tmp_path: Path):  # type: ignore[no-untyped-def]
    sb = start_secure_broker(tmp_path / "broker", load_site(REPO / "deploy" / "sites" /
                                                             "demo.yaml"))
    yield sb, sb.passwords
    sb.stop()


def _client(b: Broker, cid: str, user: str | None, password: str | None
            ) -> tuple[mqtt.Client, list]:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    if user:
        c.username_pw_set(user, password)
    rc: list = []
    c.on_connect = lambda cl, u, f, r, p: rc.append(r)
    c.connect(b.host, b.port)
    c.loop_start()
    deadline = time.monotonic() + 5
    while not rc and time.monotonic() < deadline:
        time.sleep(0.02)
    return c, rc


def _ev(device: str, seq: int) -> bytes:
    return encode(Event(device=device, seq=seq, ts=datetime.now(UTC), type=EventType.SOS))


def test_device_cannot_publish_as_another(secured) -> None:  # type: ignore[no-untyped-def]
    b, pw = secured
    got: list[str] = []
    arrived = threading.Event()
    hub, rc = _client(b.hub, "hub-1", "hub", pw["hub"])
    assert rc and not rc[0].is_failure

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        got.append(m.topic)
        if json.loads(m.payload).get("seq") == 99:
            arrived.set()

    hub.on_message = on_message
    hub.subscribe("sc/v1/#", qos=1)
    time.sleep(0.3)
    me, other = "pir-3-2-501", "sos-3-2-501"
    dev, rc = _client(b.devices, "dev-1", me, pw[me])
    assert rc and not rc[0].is_failure
    acks: dict[int, object] = {}
    dev.on_publish = lambda c, u, mid, r, p: acks.__setitem__(mid, r)
    forged = [
        (f"sc/v1/demo/{other}/event", _ev(other, 1)),  # another device's topic
        (f"sc/v1/other-site/{me}/event", _ev(me, 2)),  # its own id under another site
        (f"sc/v1/demo/{me}/config", b"{}"),  # the hub's config topic
        ("sc/v1/alerts/1101050010020103", b"{}"),  # a fake alert to grid workers
        (f"sc/v1/control/demo/{me}/rebaseline", b"{}"),  # an operator's command
    ]
    mids = [dev.publish(t, p, qos=1).mid for t, p in forged]
    legit = f"sc/v1/demo/{me}/event"
    dev.publish(legit, _ev(me, 99), qos=1).wait_for_publish(5)
    try:
        # The legit message was sent after the forged ones on the same connection, so
        # once it has arrived the broker has dealt with all of them.
        assert arrived.wait(5)
        time.sleep(0.3)
        assert got == [legit]
        # MQTT 5 tells the device why: 0x87 Not authorized.
        assert all(getattr(acks.get(m), "value", None) == 0x87 for m in mids), acks
    finally:
        dev.loop_stop()
        hub.loop_stop()


def test_wrong_or_missing_credentials_are_refused(secured) -> None:  # type: ignore[no-untyped-def]
    b, pw = secured
    for user, password in (("pir-3-2-501", "wrong"), ("pir-3-2-501", pw["sos-3-2-501"]),
                           ("nobody", "x"), (None, None)):
        c, rc = _client(b.devices, f"x-{user}", user, password)
        c.loop_stop()
        assert rc and rc[0].is_failure, (user, rc)
        assert rc[0].value in (0x86, 0x87)  # bad user name or password / not authorized


def test_edge_agent_works_under_the_acl(secured, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b, pw = secured
    got: list[str] = []
    hub, _ = _client(b.hub, "hub-2", "hub", pw["hub"])
    hub.on_message = lambda c, u, m: got.append(m.topic)
    hub.subscribe("sc/v1/demo/#", qos=1)
    time.sleep(0.3)
    ids = ["sos-2-1-302", "smoke-2-1-302"]
    cfg = EdgeConfig(
        broker=f"mqtt://{b.devices.host}:{b.devices.port}", site="demo",
        spool=tmp_path / "spool.sqlite",
        households=[Household(id="s02", address="2-1-302")],
        devices=[DeviceSpec(id=i, kind=i.split("-")[0], subject="s02",  # type: ignore[arg-type]
                            username=i, password=pw[i]) for i in ids])
    agent = EdgeAgent(cfg, simulate=False).start()
    try:
        assert agent.wait_connected(10)
        agent.emit(Emission(datetime.now(UTC), ids[0], "event", event="sos"))
        assert agent.wait_drained(10)
        deadline = time.monotonic() + 5
        while f"sc/v1/demo/{ids[0]}/event" not in got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"sc/v1/demo/{ids[0]}/event" in got
        assert {f"sc/v1/demo/{i}/status" for i in ids} <= set(got)
        assert agent.stats()["rejected"] == 0
    finally:
        agent.stop()
        hub.loop_stop()


def test_hash_format_matches_mosquitto() -> None:
    salt = bytes(range(12))
    h = mosquitto_hash("p", salt=salt)
    assert h.startswith("$7$101$AAECAwQFBgcICQoL$") and len(h.split("$")[-1]) == 88


def test_zigbee2mqtt_bridge_writes_only_under_its_base_topic(secured) -> None:  # type: ignore[no-untyped-def]
    b, pw = secured
    got: list[str] = []
    arrived = threading.Event()
    hub, rc = _client(b.hub, "hub-3", "hub", pw["hub"])
    assert rc and not rc[0].is_failure

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        got.append(m.topic)
        if m.topic.endswith("/door"):
            arrived.set()

    hub.on_message = on_message
    hub.subscribe([("sc/v1/#", 1), ("zigbee2mqtt/#", 1), ("other/#", 1)])
    time.sleep(0.3)
    bridge, rc = _client(b.devices, "z2m-1", "zigbee2mqtt", pw["zigbee2mqtt"])
    assert rc and not rc[0].is_failure
    dev, rc = _client(b.devices, "dev-2", "pir-3-2-501", pw["pir-3-2-501"])
    assert rc and not rc[0].is_failure
    acks: dict[tuple[str, int], object] = {}
    bridge.on_publish = lambda c, u, mid, r, p: acks.__setitem__(("bridge", mid), r)
    dev.on_publish = lambda c, u, mid, r, p: acks.__setitem__(("dev", mid), r)
    forged = [
        ("bridge", bridge.publish("sc/v1/demo/pir-12-1-203/event",
                                  _ev("pir-12-1-203", 1), qos=1).mid),
        ("bridge", bridge.publish("other/12-1-203/door", b'{"contact":false}', qos=1).mid),
        ("bridge", bridge.publish("sc/v1/alerts/1101050010020303", b"{}", qos=1).mid),
        # A device cannot pose as the bridge.
        ("dev", dev.publish("zigbee2mqtt/12-1-203/door", b'{"contact":false}', qos=1).mid),
    ]
    dev.publish("sc/v1/demo/pir-3-2-501/event", _ev("pir-3-2-501", 5), qos=1).wait_for_publish(5)
    legit = "zigbee2mqtt/12-1-203/door"
    bridge.publish("zigbee2mqtt/bridge/state", b'{"state":"online"}', qos=1)
    bridge.publish(legit, b'{"contact":false,"battery":97}', qos=1).wait_for_publish(5)
    try:
        assert arrived.wait(5)
        time.sleep(0.3)
        assert sorted(got) == sorted(["sc/v1/demo/pir-3-2-501/event", "zigbee2mqtt/bridge/state",
                                      legit])
        assert all(getattr(acks.get(k), "value", None) == 0x87 for k in forged), acks
    finally:
        dev.loop_stop()
        bridge.loop_stop()
        hub.loop_stop()


def test_edge_agent_speaks_zigbee2mqtt_under_the_acl(secured, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b, pw = secured
    got: dict[str, bytes] = {}
    hub, _ = _client(b.hub, "hub-4", "hub", pw["hub"])
    hub.on_message = lambda c, u, m: got.__setitem__(m.topic, m.payload)
    hub.subscribe("zigbee2mqtt/#", qos=1)
    time.sleep(0.3)
    cfg = EdgeConfig(
        broker=f"mqtt://{b.devices.host}:{b.devices.port}", site="demo",
        spool=tmp_path / "spool.sqlite", households=[Household(id="s06", address="12-1-203")],
        zigbee2mqtt=Zigbee2MQTTBridge(username="zigbee2mqtt", password=pw["zigbee2mqtt"]),
        devices=[DeviceSpec(id="door-12-1-203", kind="door", subject="s06",
                            zigbee2mqtt="12-1-203/door")])
    agent = EdgeAgent(cfg, simulate=False).start()
    try:
        assert agent.wait_connected(10)
        agent.emit(Emission(datetime.now(UTC), "door-12-1-203", "event", event="door_open"))
        assert agent.wait_drained(10)
        deadline = time.monotonic() + 5
        while "zigbee2mqtt/12-1-203/door" not in got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert json.loads(got["zigbee2mqtt/12-1-203/door"])["contact"] is False
        assert json.loads(got["zigbee2mqtt/12-1-203/door/availability"]) == {"state": "online"}
        assert json.loads(got["zigbee2mqtt/bridge/state"]) == {"state": "online"}
        assert agent.stats()["rejected"] == 0
    finally:
        agent.stop()
        hub.loop_stop()


def test_only_the_hub_writes_its_control_topic(secured) -> None:  # type: ignore[no-untyped-def]
    """An operator's empty-lane renewal travels hub -> vision worker on
    sc/v1/control/...: the hub's ACL lets it through, no device's does (above)."""
    b, pw = secured
    got: list[str] = []
    arrived = threading.Event()
    reader, rc = _client(b.hub, "hub-reader", "hub", pw["hub"])
    assert rc and not rc[0].is_failure

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        got.append(m.topic)
        arrived.set()

    reader.on_message = on_message
    reader.subscribe("sc/v1/control/demo/+/rebaseline", qos=1)
    time.sleep(0.3)
    hub, rc = _client(b.hub, "hub-2", "hub", pw["hub"])
    assert rc and not rc[0].is_failure
    try:
        hub.publish("sc/v1/control/demo/cam-b3-lane/rebaseline", b"{}", qos=1).wait_for_publish(5)
        assert arrived.wait(5)
        assert got == ["sc/v1/control/demo/cam-b3-lane/rebaseline"]
    finally:
        hub.loop_stop()
        reader.loop_stop()
