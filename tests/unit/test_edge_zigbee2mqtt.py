"""The edge agent's simulated Zigbee2MQTT bridge: its messages are shaped as the
bridge's, its occupancy timer runs on data time to the second, and what it publishes
is what the hub's adapter turns back into the simulation's events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from edge.config import DeviceSpec, EdgeConfig, Household, Zigbee2MQTTBridge
from edge.scenario import Scenario, Step
from edge.simulation import Emission, Simulation
from edge.zigbee2mqtt import BridgeState
from hub.config import Zigbee2MQTTAdapter
from hub.ingest.adapters.zigbee2mqtt import Zigbee2MQTT
from hub.protocol import Event, EventType, Status, Telemetry

T0 = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)
DEVICES = [DeviceSpec(id="pir-1", kind="pir", subject="s1", zigbee2mqtt="3-2-501/motion"),
           DeviceSpec(id="door-1", kind="door", subject="s1", zigbee2mqtt="3-2-501/door"),
           DeviceSpec(id="smoke-1", kind="smoke", subject="s1", zigbee2mqtt="3-2-501/smoke")]


def bridge(**kw: object) -> BridgeState:
    return BridgeState(Zigbee2MQTTBridge(**kw), DEVICES, seed=7)  # type: ignore[arg-type]


def hub_side() -> Zigbee2MQTT:
    return Zigbee2MQTT(Zigbee2MQTTAdapter(kind="zigbee2mqtt", devices={
        d.zigbee2mqtt: d.id for d in DEVICES if d.zigbee2mqtt}))


def ev(ts: datetime, dev: str, what: str) -> Emission:
    return Emission(ts, dev, "event", event=what)


def test_state_messages_are_the_bridges_shape() -> None:
    b = bridge()
    (p,) = b.emit(ev(T0, "door-1", "door_open"))
    assert p.topic == "zigbee2mqtt/3-2-501/door" and not p.retain
    st = json.loads(p.payload)
    assert st["contact"] is False  # Zigbee2MQTT: true = closed
    assert set(st) == {"battery", "voltage", "linkquality", "contact", "device_temperature",
                       "power_outage_count", "last_seen"}
    assert st["last_seen"] == "2026-11-22T09:00:00.000Z"
    assert 0 <= st["battery"] <= 100 and 0 <= st["linkquality"] <= 255
    (a,) = b.startup()[:1]
    assert a.topic == "zigbee2mqtt/3-2-501/motion/availability" and a.retain
    assert json.loads(a.payload) == {"state": "online"}
    assert "last_seen" not in json.loads(bridge(last_seen=False).emit(
        ev(T0, "door-1", "door_open"))[0].payload)


def test_occupancy_clears_after_the_timeout_to_the_second() -> None:
    b = bridge(occupancy_timeout_s=90)
    (p,) = b.emit(ev(T0, "pir-1", "motion"))
    assert json.loads(p.payload)["occupancy"] is True
    assert b.due(T0 + timedelta(seconds=89)) == []
    (c,) = b.due(T0 + timedelta(seconds=90))
    st = json.loads(c.payload)
    # The bridge's own timer: the device was last heard at the motion.
    assert st["occupancy"] is False and st["last_seen"] == "2026-11-22T09:00:00.000Z"
    assert b.due(T0 + timedelta(hours=1)) == []


def test_what_the_bridge_sends_the_hub_turns_back_into_the_events() -> None:
    b, hub = bridge(), hub_side()
    steps = [ev(T0, "door-1", "heartbeat"), ev(T0 + timedelta(seconds=1), "door-1", "door_open"),
             ev(T0 + timedelta(seconds=7), "door-1", "door_close"),
             ev(T0 + timedelta(seconds=8), "pir-1", "motion"),
             ev(T0 + timedelta(seconds=20), "pir-1", "motion"),
             ev(T0 + timedelta(seconds=30), "smoke-1", "smoke"),
             ev(T0 + timedelta(seconds=31), "smoke-1", "tamper"),
             Emission(T0 + timedelta(seconds=40), "door-1", "telemetry",
                      (("battery", 12.0, "%"),)),
             ev(T0 + timedelta(seconds=50), "smoke-1", "smoke_clear"),
             Emission(T0 + timedelta(seconds=60), "pir-1", "control", event="offline")]
    got: list[tuple[str, EventType, datetime]] = []
    battery = None
    statuses = []
    for e in steps:
        for p in b.due(e.ts) + b.emit(e):
            tr = hub.translate(p.topic, p.payload, e.ts + timedelta(milliseconds=50))
            assert not tr.rejections, tr.rejections
            for m in tr.messages:
                if isinstance(m, Event):
                    got.append((m.device, m.type, m.ts))
                elif isinstance(m, Status):
                    statuses.append((m.device, m.state.value))
                elif isinstance(m, Telemetry) and m.device == "door-1":
                    battery = {r.metric: r.value for r in m.readings}["battery"]
    assert got == [
        ("door-1", EventType.DOOR_OPEN, T0 + timedelta(seconds=1)),
        ("door-1", EventType.DOOR_CLOSE, T0 + timedelta(seconds=7)),
        ("pir-1", EventType.MOTION, T0 + timedelta(seconds=8)),  # the second is no change
        # The detector's first state says itself: smoke, and a case that is closed.
        ("smoke-1", EventType.SMOKE, T0 + timedelta(seconds=30)),
        ("smoke-1", EventType.TAMPER_CLEAR, T0 + timedelta(seconds=30)),
        ("smoke-1", EventType.TAMPER, T0 + timedelta(seconds=31)),
        ("smoke-1", EventType.SMOKE_CLEAR, T0 + timedelta(seconds=50)),
    ]
    assert battery == 12.0 and statuses == [("pir-1", "offline")]


def test_config_refuses_what_the_bridge_cannot_be() -> None:
    with pytest.raises(ValidationError, match="cannot speak Zigbee2MQTT"):
        EdgeConfig(site="demo", households=[Household(id="s1")], devices=[
            DeviceSpec(id="wear-1", kind="wearable", subject="s1", zigbee2mqtt="w")])
    with pytest.raises(ValidationError, match="duplicate zigbee2mqtt"):
        EdgeConfig(site="demo", households=[Household(id="s1")], devices=[
            DeviceSpec(id="a", kind="pir", zigbee2mqtt="x"),
            DeviceSpec(id="b", kind="door", zigbee2mqtt="x")])
    with pytest.raises(ValidationError, match="bridge's"):
        EdgeConfig(site="demo", devices=[DeviceSpec(id="zigbee2mqtt.bridge", kind="pir")])


def test_scenario_battery_and_tamper_steps() -> None:
    cfg = EdgeConfig(site="demo", households=[Household(id="s1")], devices=DEVICES)
    sc = Scenario(steps=[Step(at="+10s", action="battery", device="door-1", value=12),
                         Step.model_validate({"at": "+20s", "action": "tamper",
                                              "device": "smoke-1", "for": "1m"})])
    sim = Simulation(cfg, sc, T0, UTC)
    out = [e for e in sim.advance(T0 + timedelta(seconds=90))
           if e.readings[:1] == (("battery", 12.0, "%"),) or e.event.startswith("tamper")]
    assert [(e.ts - T0, e.device, e.event or e.readings) for e in out] == [
        (timedelta(seconds=10), "door-1", (("battery", 12.0, "%"),)),
        (timedelta(seconds=20), "smoke-1", "tamper"),
        (timedelta(seconds=80), "smoke-1", "tamper_clear"),
    ]
    with pytest.raises(ValidationError, match="percentage"):
        Step(at="+1s", action="battery", device="door-1", value=120)


def test_a_leak_sensor_behind_the_bridge() -> None:
    """Aqara SJCGQ11LM: a scenario's leak becomes water_leak true, then false after
    its ``for``, and the hub's adapter makes water_leak / water_leak_clear of them."""
    leak = DeviceSpec(id="leak-1", kind="leak", subject="s1", zigbee2mqtt="3-2-501/kitchen")
    cfg = EdgeConfig(site="demo", households=[Household(id="s1")], devices=[leak])
    sim = Simulation(cfg, Scenario(steps=[Step.model_validate(
        {"at": "+30s", "action": "leak", "household": "s1", "for": "2m"})]), T0, UTC)
    b = BridgeState(Zigbee2MQTTBridge(), [leak], seed=7)
    hub = Zigbee2MQTT(Zigbee2MQTTAdapter(kind="zigbee2mqtt",
                                         devices={"3-2-501/kitchen": "leak-1"}))
    got = []
    for e in sim.advance(T0 + timedelta(minutes=5)):
        for p in b.emit(e):
            assert set(json.loads(p.payload)) >= {"water_leak", "battery", "linkquality"}
            tr = hub.translate(p.topic, p.payload, e.ts)
            assert not tr.rejections
            got += [(m.type, m.ts - T0) for m in tr.messages if isinstance(m, Event)]
    assert got == [(EventType.WATER_LEAK, timedelta(seconds=30)),
                   (EventType.WATER_LEAK_CLEAR, timedelta(seconds=150))]
