"""The Zigbee2MQTT adapter's translation, pure, on payloads as Zigbee2MQTT documents
and publishes them (its device pages' exposes, logs of real bridges), clocked by an
injected receive time to the second."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.config import ConfigError, Zigbee2MQTTAdapter, load_site
from hub.ingest.adapters import Adapters
from hub.ingest.adapters.base import derived_seq
from hub.ingest.adapters.zigbee2mqtt import Zigbee2MQTT
from hub.protocol import DeviceState, Event, EventType, Status, Telemetry

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml"
T0 = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)

# Aqara RTCGQ11LM motion sensor: occupancy, illuminance, battery, voltage,
# device_temperature, power_outage_count (+ linkquality) as Zigbee2MQTT publishes it.
MOTION = {"battery": 100, "voltage": 3055, "illuminance": 15, "illuminance_lux": 15,
          "occupancy": True, "linkquality": 102, "device_temperature": 27,
          "power_outage_count": 0}
# Aqara MCCGQ11LM door and window contact (contact true = closed).
CONTACT = {"battery": 100, "voltage": 3005, "contact": True, "linkquality": 120,
           "device_temperature": 25, "power_outage_count": 6}
# Aqara SJCGQ11LM water leak sensor, from a real bridge's log of 2018, when
# Zigbee2MQTT still sent the battery as a string.
LEAK_LEGACY = b'{"battery":"100.00","voltage":3045,"linkquality":99,"water_leak":false}'
# Xiaomi JTYJ-GD-01LM/BW smoke detector: smoke, battery_low, tamper, battery,
# sensitivity, smoke_density, selftest, voltage, test, device_temperature.
SMOKE = {"smoke": False, "battery_low": False, "tamper": False, "battery": 97,
         "sensitivity": "medium", "smoke_density": 0, "voltage": 3075, "test": False,
         "device_temperature": 24, "linkquality": 87}


def adapter(**devices: str) -> Zigbee2MQTT:
    names = devices or {"hall/motion": "pir-1", "front door": "door-1",
                        "kitchen/leak": "leak-1", "smoke": "smoke-1"}
    return Zigbee2MQTT(Zigbee2MQTTAdapter(kind="zigbee2mqtt", devices=names))


def state(a: Zigbee2MQTT, name: str, payload: dict | bytes, at: datetime = T0):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return a.translate(f"zigbee2mqtt/{name}", raw, at)


def events(tr) -> list[EventType]:  # type: ignore[no-untyped-def]
    return [m.type for m in tr.messages if isinstance(m, Event)]


def readings(tr) -> dict[str, tuple[float, str | None]]:  # type: ignore[no-untyped-def]
    tel = [m for m in tr.messages if isinstance(m, Telemetry)]
    assert len(tel) <= 1
    return {r.metric: (r.value, r.unit) for t in tel for r in t.readings}


def test_motion_becomes_motion_event_and_readings() -> None:
    a = adapter()
    tr = state(a, "hall/motion", MOTION)
    assert not tr.rejections
    assert events(tr) == [EventType.MOTION]
    ev = next(m for m in tr.messages if isinstance(m, Event))
    assert ev.device == "pir-1" and ev.ts == T0 and ev.data == {"source": "zigbee2mqtt"}
    r = readings(tr)
    assert r["battery"] == (100.0, "%") and r["linkquality"] == (102.0, "lqi")
    assert r["voltage"] == (3055.0, "mV") and r["occupancy"] == (1.0, None)
    assert r["illuminance"] == (15.0, "lx") and r["device_temperature"] == (27.0, "°C")
    # Zigbee2MQTT repeats the whole state: the same occupancy is no new event.
    assert events(state(a, "hall/motion", MOTION, T0 + timedelta(seconds=30))) == []
    clear = state(a, "hall/motion", {**MOTION, "occupancy": False}, T0 + timedelta(seconds=92))
    assert events(clear) == [] and readings(clear)["occupancy"] == (0.0, None)
    again = state(a, "hall/motion", MOTION, T0 + timedelta(seconds=300))
    assert events(again) == [EventType.MOTION]
    assert again.messages[0].ts == T0 + timedelta(seconds=300)


def test_contact_changes_are_door_events_and_a_closed_door_at_start_says_nothing() -> None:
    a = adapter()
    assert events(state(a, "front door", CONTACT)) == []  # closed: no sign of life
    opened = state(a, "front door", {**CONTACT, "contact": False}, T0 + timedelta(seconds=5))
    assert events(opened) == [EventType.DOOR_OPEN]
    assert opened.messages[-1].ts == T0 + timedelta(seconds=5)
    assert events(state(a, "front door", {**CONTACT, "contact": False})) == []
    assert events(state(a, "front door", CONTACT)) == [EventType.DOOR_CLOSE]


def test_legacy_string_battery_is_refused_and_the_rest_kept() -> None:
    a = adapter()
    tr = a.translate("zigbee2mqtt/kitchen/leak", LEAK_LEGACY, T0)
    assert [(r.reason, r.device) for r in tr.rejections] == [("invalid", "leak-1")]
    assert "battery must be a JSON number" in tr.rejections[0].detail
    r = readings(tr)
    assert "battery" not in r and r["voltage"] == (3045.0, "mV") and r["water_leak"][0] == 0
    # The first state of a leak sensor says itself: a clear of nothing is harmless,
    # a leak that began while the hub was away is raised.
    assert events(tr) == [EventType.WATER_LEAK_CLEAR]
    wet = state(a, "kitchen/leak", {"battery": 100, "water_leak": True, "linkquality": 99})
    assert events(wet) == [EventType.WATER_LEAK]
    fresh = adapter()
    assert events(state(fresh, "kitchen/leak", {"water_leak": True})) == [EventType.WATER_LEAK]


def test_smoke_and_tamper_events() -> None:
    a = adapter()
    tr = state(a, "smoke", SMOKE)
    assert sorted(events(tr)) == sorted([EventType.SMOKE_CLEAR, EventType.TAMPER_CLEAR])
    assert readings(tr)["battery_low"] == (0.0, None) and "sensitivity" not in readings(tr)
    fire = state(a, "smoke", {**SMOKE, "smoke": True, "smoke_density": 4})
    assert events(fire) == [EventType.SMOKE]
    opened = state(a, "smoke", {**SMOKE, "smoke": True, "tamper": True})
    assert events(opened) == [EventType.TAMPER]
    assert events(state(a, "smoke", SMOKE)) == [EventType.SMOKE_CLEAR, EventType.TAMPER_CLEAR]


def test_last_seen_is_the_time_and_redelivery_gets_the_same_seq() -> None:
    a = adapter()
    seen = T0 - timedelta(seconds=3)
    payload = json.dumps({**CONTACT, "contact": False,
                          "last_seen": "2026-11-22T08:59:57.000Z"}).encode()
    first = a.translate("zigbee2mqtt/front door", payload, T0)
    assert all(m.ts == seen for m in first.messages)
    # The broker sends it again after a reconnect: same ts and seq, stored once.
    again = adapter().translate("zigbee2mqtt/front door", payload, T0 + timedelta(seconds=40))
    assert [(m.ts, m.seq) for m in again.messages if isinstance(m, Telemetry)] == \
        [(m.ts, m.seq) for m in first.messages if isinstance(m, Telemetry)]
    # ISO_8601_local and epoch (milliseconds) say the same time.
    local = state(adapter(), "front door", {**CONTACT, "last_seen": "2026-11-22T16:59:57+08:00"})
    epoch = state(adapter(), "front door",
                  {**CONTACT, "last_seen": int(seen.timestamp() * 1000)})
    assert local.messages[0].ts == seen == epoch.messages[0].ts


def test_without_last_seen_the_time_is_the_receive_time() -> None:
    tr = state(adapter(), "front door", CONTACT, T0 + timedelta(seconds=7))
    assert tr.messages[0].ts == T0 + timedelta(seconds=7)


def test_last_seen_out_of_bounds_is_refused_whole() -> None:
    a = adapter()
    ahead = state(a, "hall/motion",
                  {**MOTION, "last_seen": (T0 + timedelta(seconds=301)).isoformat()})
    assert not ahead.messages and [r.reason for r in ahead.rejections] == ["ts_future"]
    within = state(a, "hall/motion",
                   {**MOTION, "last_seen": (T0 + timedelta(seconds=300)).isoformat()})
    assert within.messages
    # A real bridge's log line from 2019: before any device of this system existed.
    old = state(adapter(), "front door", {"contact": True, "linkquality": 94,
                                          "last_seen": "2019-12-14T15:39:01.292Z"})
    assert not old.messages and [r.reason for r in old.rejections] == ["ts_past"]
    for bad in ("yesterday", "2026-11-22T09:00:00", True, [1], 1e300):
        tr = state(adapter(), "front door", {**CONTACT, "last_seen": bad})
        assert not tr.messages and len(tr.rejections) == 1, bad


@pytest.mark.parametrize("payload,reason", [
    (b"{not json", "bad_json"),
    (b'{"battery": NaN}', "bad_json"),
    (b"[1, 2]", "invalid"),
    (b'"online"', "invalid"),
    (b"\xff\xfe{}", "bad_json"),
    (b"[" * 100_000, "oversized"),
    (b"[" * 60_000, "bad_json"),
    (b'{"a": "' + b"x" * 70_000 + b'"}', "oversized"),
])
def test_hostile_payloads_are_refused_with_a_reason(payload: bytes, reason: str) -> None:
    tr = adapter().translate("zigbee2mqtt/front door", payload, T0)
    assert not tr.messages and [r.reason for r in tr.rejections] == [reason]


@pytest.mark.parametrize("key,value", [
    ("battery", "abc"), ("battery", -1), ("battery", 101), ("battery", 1e999),
    ("battery", 10**400), ("linkquality", 256), ("voltage", -3), ("contact", "false"),
    ("contact", 0), ("battery_low", "yes"),
])
def test_wrong_types_and_ranges_are_refused_attribute_by_attribute(key: str, value: object
                                                                   ) -> None:
    a = adapter()
    raw = json.dumps({**CONTACT, key: value}).encode()  # 1e999 is written as Infinity
    if value == 1e999:
        raw = raw.replace(b"Infinity", b"1e999")
    tr = a.translate("zigbee2mqtt/front door", raw, T0)
    assert [(r.reason, r.device) for r in tr.rejections] == [("invalid", "door-1")]
    assert key in tr.rejections[0].detail
    assert key not in readings(tr) and readings(tr)["linkquality" if key != "linkquality"
                                                    else "battery"]
    if key == "contact":  # a refused contact changes no state: the next one is compared
        assert events(state(a, "front door", {"contact": False})) == []
        assert events(state(a, "front door", {"contact": True})) == [EventType.DOOR_CLOSE]


def test_one_devices_garbage_does_not_touch_another() -> None:
    a = adapter()
    state(a, "front door", CONTACT)
    for junk in (b"\x00\x01", b"[]", b'{"contact": "x", "battery": -5}', b"{" * 50):
        a.translate("zigbee2mqtt/hall/motion", junk, T0)
    assert events(state(a, "front door", {**CONTACT, "contact": False})) == [EventType.DOOR_OPEN]
    assert events(state(a, "hall/motion", MOTION)) == [EventType.MOTION]


def test_topics_unknown_names_bridge_and_commands() -> None:
    a = adapter()
    unknown = a.translate("zigbee2mqtt/0x00158d0001a2b3c4", json.dumps(CONTACT).encode(), T0)
    assert not unknown.messages and [r.reason for r in unknown.rejections] == ["unknown_device"]
    assert "0x00158d0001a2b3c4" in unknown.rejections[0].detail
    off = a.translate("zigbee2mqtt/garage/availability", b"offline", T0)
    assert [r.reason for r in off.rejections] == ["unknown_device"]
    for t, p in (("zigbee2mqtt/bridge/state", b'{"state":"online"}'),
                 ("zigbee2mqtt/bridge/state", b"online"),
                 ("zigbee2mqtt/bridge/devices", b"[]"),
                 ("zigbee2mqtt/bridge/logging", b'{"level":"info","message":"x"}'),
                 ("zigbee2mqtt/front door/set", b'{"state":"ON"}'),
                 ("zigbee2mqtt/hall/motion/get", b'{"occupancy":""}'),
                 ("zigbee2mqtt/front door", b"")):
        tr = a.translate(t, p, T0)
        assert tr.ignored and not tr.messages and not tr.rejections, t


def test_a_bridge_going_offline_takes_its_devices_offline() -> None:
    """Zigbee2MQTT's last will sets bridge/state offline: none of its sensors can report
    any more, so each is offline (a silent household is not an inactive resident);
    online says nothing of any one device, which reports itself when it is back."""
    a = adapter()
    for payload in (b'{"state":"offline"}', b"offline"):
        tr = a.translate("zigbee2mqtt/bridge/state", payload, T0)
        assert not tr.rejections
        st = sorted((m.device, m.state, m.ts) for m in tr.messages if isinstance(m, Status))
        assert st == [(d, DeviceState.OFFLINE, T0)
                      for d in ("door-1", "leak-1", "pir-1", "smoke-1")]
        assert all("bridge" in (m.reason or "") for m in tr.messages)
    bad = a.translate("zigbee2mqtt/bridge/state", b'{"state":"asleep"}', T0)
    assert not bad.messages and [r.reason for r in bad.rejections] == ["invalid"]


def test_availability_json_and_legacy() -> None:
    a = adapter()
    on = a.translate("zigbee2mqtt/hall/motion/availability", b'{"state":"online"}', T0)
    off = a.translate("zigbee2mqtt/hall/motion/availability", b"offline",
                      T0 + timedelta(seconds=1))
    st = [m for tr in (on, off) for m in tr.messages]
    assert all(isinstance(m, Status) and m.device == "pir-1" for m in st)
    assert [(m.state, m.ts) for m in st] == [(DeviceState.ONLINE, T0),
                                             (DeviceState.OFFLINE, T0 + timedelta(seconds=1))]
    bad = a.translate("zigbee2mqtt/hall/motion/availability", b'{"state":"maybe"}', T0)
    assert not bad.messages and [r.reason for r in bad.rejections] == ["invalid"]


def test_derived_seq_layout() -> None:
    p = b'{"contact":true}'
    s = derived_seq(T0, p)
    assert s >> 20 == int(T0.timestamp() * 1000) and s < 2**63
    assert derived_seq(T0, p, 4) == s | 4
    assert derived_seq(T0, b'{"contact":false}') != s  # same millisecond, other payload
    assert derived_seq(T0 + timedelta(milliseconds=1), p) > s
    assert derived_seq(datetime(2248, 1, 1, tzinfo=UTC), p) < 2**63
    with pytest.raises(ValueError):
        derived_seq(T0, p, 8)


def test_events_of_one_message_have_distinct_seqs() -> None:
    tr = state(adapter(), "smoke", {**SMOKE, "smoke": True, "tamper": True})
    seqs = [m.seq for m in tr.messages if isinstance(m, Event)]
    assert len(seqs) == 2 == len(set(seqs))


def test_adapters_come_from_the_site_file(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    raw["adapters"] = [{"kind": "zigbee2mqtt", "base_topic": "z2m/b3", "mqtt_user": "z2m-b3",
                        "devices": {"3-2-501/motion": "pir-3-2-501"}}]
    p = tmp_path / "site.yaml"
    p.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    ads = Adapters.from_site(load_site(p))
    assert ads.subscriptions() == ["z2m/b3/#"]
    tr = ads.translate("z2m/b3/3-2-501/motion", json.dumps(MOTION).encode(), T0)
    assert events(tr) == [EventType.MOTION] and tr.messages[0].device == "pir-3-2-501"
    assert [r.reason for r in ads.translate("sc/v1/x", b"{}", T0).rejections] == ["bad_topic"]
    for bad, says in (
        ({"devices": {"a": "no-such-device"}}, "unknown device no-such-device"),
        ({"mqtt_user": "pir-3-2-501"}, "is a device id"),
        ({"mqtt_user": "hub-z2m"}, "starts with 'hub'"),
        ({"base_topic": "sc/v1"}, "sc/"),
        ({"devices": {"x/availability": "pir-3-2-501"}}, "collides"),
    ):
        raw["adapters"] = [{"kind": "zigbee2mqtt", "devices": {"m": "pir-3-2-501"}, **bad}]
        p.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        with pytest.raises(ConfigError, match="adapters"):
            try:
                load_site(p)
            except ConfigError as e:
                assert says in str(e), str(e)
                raise
    raw["adapters"] = [{"kind": "zigbee2mqtt", "devices": {"m": "pir-3-2-501"}},
                       {"kind": "zigbee2mqtt", "base_topic": "zigbee2mqtt/b2",
                        "mqtt_user": "z2m-2", "devices": {"n": "door-3-2-501"}}]
    p.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match="overlaps"):
        load_site(p)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=20)
_keys = st.sampled_from(["battery", "linkquality", "voltage", "contact", "occupancy",
                         "water_leak", "smoke", "tamper", "battery_low", "last_seen",
                         "temperature", "Temp", "x" * 50, ""]) | st.text(max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _json, max_size=8))
def test_any_json_object_is_translated_or_refused_never_raised(obj: dict) -> None:
    a = adapter()
    tr = a.translate("zigbee2mqtt/front door", json.dumps(obj).encode(), T0)
    for m in tr.messages:  # whatever passes is a valid message of the wire contract
        type(m).model_validate(m.model_dump())
        assert m.device == "door-1"
    assert all(r.reason in ("invalid", "ts_future", "ts_past") for r in tr.rejections)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["front door", "front door/availability",
                                                 "nobody", "bridge/state"]))
def test_any_bytes_are_translated_or_refused_never_raised(raw: bytes, where: str) -> None:
    tr = adapter().translate(f"zigbee2mqtt/{where}", raw, T0)
    assert tr.ignored or tr.messages or tr.rejections
