"""Device health per power class: offline periods, battery low with hysteresis, weak
link, tamper, and water leaks, clocked by the data's timestamps, to the second; and
a device's health problem never becoming a care alarm."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from hub.config import Site
from hub.domain import Alarm, AlarmState, Category, Severity
from hub.protocol import EventType
from hub.sensing import SensingEngine
from tests.unit.sensing_support import at, brief, ev, tel

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml"
PIR, DOOR, WATER = "pir-3-2-501", "door-3-2-501", "water-3-2-501"
LEAK = "leak-3-2-501"


def site(rules: dict[str, Any] | None = None) -> Site:
    """The demo site with household s01's PIR on a battery, its door contact on mains
    and a leak sensor under its sink; everything else heartbeats weekly (out of the
    way)."""
    raw = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    for d in raw["devices"]:
        d["heartbeat_s"] = 7 * 86400
        if d["id"] == PIR:
            d["power"] = "battery"
        elif d["id"] == DOOR:
            d["power"] = "mains"
    door = next(d for d in raw["devices"] if d["id"] == DOOR)
    raw["devices"].append({**door, "id": LEAK, "kind": "leak", "power": "battery",
                           "subject": None,
                           "location": {**door["location"], "label": "3-2-501 厨房水浸"}})
    if rules:
        raw["rules"] = rules
    return Site.model_validate(raw)


def one(alarms: list[Alarm]) -> Alarm:
    assert len(alarms) == 1, alarms
    return alarms[0]


@pytest.fixture
def eng() -> SensingEngine:
    return SensingEngine(site())


# ---------------------------------------------------------------- offline per class


def test_mains_device_is_offline_after_ten_minutes_to_the_second(eng: SensingEngine) -> None:
    eng.on_message(ev(DOOR, EventType.HEARTBEAT, at(10)))
    assert eng.tick(at(10, 9, 59)) == []
    a = one(eng.tick(at(10, 10)))
    assert (a.category, a.dedup_key, a.ts, a.state) == (
        Category.DEVICE_OFFLINE, f"offline:{DOOR}", at(10, 10), AlarmState.FIRING)
    assert (a.evidence["power"], a.evidence["offline_after_s"]) == ("mains", 600)


def test_battery_device_is_offline_after_25_hours_to_the_second(eng: SensingEngine) -> None:
    eng.on_message(tel(LEAK, at(10), battery=80))
    assert eng.tick(at(11, 0, 0, day=3) - timedelta(seconds=1)) == []
    a = one(eng.tick(at(11, day=3)))
    assert (a.dedup_key, a.ts) == (f"offline:{LEAK}", at(11, day=3))
    assert (a.evidence["power"], a.evidence["offline_after_s"]) == ("battery", 90000)
    # Its next report brings it back.
    c = one(eng.on_message(tel(LEAK, at(12, day=3), battery=79)))
    assert c.state is AlarmState.CLEARED and c.dedup_key == f"offline:{LEAK}"


def test_offline_periods_come_from_the_site_file() -> None:
    eng = SensingEngine(site({"health": {"mains": {"offline_s": 120},
                                         "battery": {"offline_s": 3600}}}))
    eng.on_message(ev(DOOR, EventType.HEARTBEAT, at(10)))
    eng.on_message(ev(PIR, EventType.HEARTBEAT, at(10)))
    assert eng.tick(at(10, 1, 59)) == []
    assert brief(eng.tick(at(10, 2))) == [(f"offline:{DOOR}", "firing", at(10, 2))]
    assert eng.tick(at(10, 59, 59)) == []
    assert brief(eng.tick(at(11))) == [(f"offline:{PIR}", "firing", at(11))]


def test_a_device_without_a_power_class_keeps_its_heartbeat_period() -> None:
    fast = SensingEngine(site().model_copy(update={"devices": [
        d.model_copy(update={"heartbeat_s": 30}) if d.id == WATER else d
        for d in site().devices]}))
    fast.on_message(ev(WATER, EventType.HEARTBEAT, at(10)))
    assert fast.tick(at(10, 1, 29)) == []
    assert brief(fast.tick(at(10, 1, 30))) == [(f"offline:{WATER}", "firing", at(10, 1, 30))]


# ---------------------------------------------------------------- battery


def test_battery_low_with_hysteresis_to_the_second(eng: SensingEngine) -> None:
    assert eng.on_message(tel(PIR, at(8), battery=30)) == []
    assert eng.on_message(tel(PIR, at(9), battery=21)) == []
    a = one(eng.on_message(tel(PIR, at(10), battery=20)))  # at or below 20 %
    assert (a.category, a.dedup_key, a.ts, a.severity) == (
        "battery_low", f"battery_low:{PIR}", at(10), Severity.MINOR)
    assert a.title == "3-2-501 人体感应 电量低（20%）"
    assert (a.evidence["battery_pct"], a.evidence["low_at_pct"], a.evidence["ok_at_pct"]) == (
        20, 20, 25)
    # A battery wavering around the threshold does not flap the incident.
    for i, pct in enumerate((21, 19, 21, 19, 24, 24.9)):
        assert eng.on_message(tel(PIR, at(11, i), battery=pct)) == []
    c = one(eng.on_message(tel(PIR, at(12), battery=25)))  # a new battery
    assert (c.state, c.dedup_key, c.ts, c.title) == (
        AlarmState.CLEARED, f"battery_low:{PIR}", at(12), "3-2-501 人体感应 电量恢复（25%）")
    assert eng.on_message(tel(PIR, at(13), battery=21)) == []
    assert one(eng.on_message(tel(PIR, at(14), battery=19))).firing


def test_battery_thresholds_per_power_class() -> None:
    eng = SensingEngine(site({"health": {"battery": {"battery_low_pct": 15,
                                                     "battery_ok_pct": 30}}}))
    assert eng.on_message(tel(PIR, at(10), battery=18)) == []  # battery class: 15 %
    assert one(eng.on_message(tel(DOOR, at(10), battery=18))).firing  # mains class: 20 %
    assert one(eng.on_message(tel(PIR, at(11), battery=15))).firing
    assert eng.on_message(tel(PIR, at(12), battery=29)) == []
    assert not one(eng.on_message(tel(PIR, at(13), battery=30))).firing


def test_battery_readings_from_the_past_or_out_of_range_change_nothing() -> None:
    problems: list[tuple[str, str]] = []
    eng = SensingEngine(site(), on_problem=lambda kind, ident: problems.append((kind, ident)))
    assert one(eng.on_message(tel(PIR, at(10), battery=10))).firing
    assert eng.on_message(tel(PIR, at(9), battery=90)) == []  # a spool replaying
    assert eng.on_message(tel(PIR, at(11), battery=250)) == []
    assert eng.on_message(tel(PIR, at(12), battery=-5)) == []
    assert problems == [("reading_out_of_range", PIR)] * 2
    assert eng.problems["reading_out_of_range"] == 2
    # A device that reports percentages is not judged on its flag.
    assert eng.on_message(tel(PIR, at(13), battery_low=0)) == []
    assert not one(eng.on_message(tel(PIR, at(14), battery=95))).firing


def test_a_device_that_reports_only_the_low_battery_flag(eng: SensingEngine) -> None:
    assert eng.on_message(tel(DOOR, at(10), battery_low=0)) == []
    a = one(eng.on_message(tel(DOOR, at(11), battery_low=1)))
    assert a.firing and a.title == "3-2-501 门磁 电量低" and a.evidence["source"] == "flag"
    assert eng.on_message(tel(DOOR, at(12), battery_low=1)) == []
    assert not one(eng.on_message(tel(DOOR, at(13), battery_low=0))).firing


# ---------------------------------------------------------------- weak link


def test_weak_link_needs_a_run_of_readings_each_way(eng: SensingEngine) -> None:
    t = at(10)
    step = timedelta(minutes=5)
    seq = [30, 25, 45, 10, 20]  # 45 lies between the thresholds: the run starts over
    for i, lqi in enumerate(seq):
        assert eng.on_message(tel(PIR, t + i * step, linkquality=lqi)) == [], lqi
    a = one(eng.on_message(tel(PIR, t + 5 * step, linkquality=28)))
    assert (a.category, a.dedup_key, a.ts, a.title) == (
        "weak_link", f"weak_link:{PIR}", t + 5 * step, "3-2-501 人体感应 信号弱（LQI 28）")
    assert a.evidence["readings"] == [10, 20, 28]
    for i, lqi in enumerate((90, 60, 12, 200, 120)):  # one weak reading breaks the run
        assert eng.on_message(tel(PIR, t + (6 + i) * step, linkquality=lqi)) == [], lqi
    c = one(eng.on_message(tel(PIR, t + 11 * step, linkquality=61)))
    assert c.state is AlarmState.CLEARED and c.ts == t + 11 * step


# ---------------------------------------------------------------- tamper and leak


def test_tamper_raises_and_clears(eng: SensingEngine) -> None:
    assert eng.on_message(ev(PIR, EventType.TAMPER_CLEAR, at(9))) == []
    a = one(eng.on_message(ev(PIR, EventType.TAMPER, at(10), source="zigbee2mqtt")))
    assert (a.category, a.dedup_key, a.ts, a.severity) == (
        "tamper", f"tamper:{PIR}", at(10), Severity.MAJOR)
    assert a.title == "3-2-501 人体感应 设备被拆动"
    # The place is the device's, not the household's: no care subject on it.
    assert (a.subject_id, a.device_id, a.grid_code) == (None, PIR, "1101050010020103")
    assert one(eng.on_message(ev(PIR, EventType.TAMPER, at(10, 1)))).firing  # a repeat
    c = one(eng.on_message(ev(PIR, EventType.TAMPER_CLEAR, at(10, 5))))
    assert (c.state, c.ts) == (AlarmState.CLEARED, at(10, 5))
    # A reading says the same.
    assert one(eng.on_message(tel(PIR, at(11), tamper=1))).firing
    assert eng.on_message(tel(PIR, at(11, 1), tamper=1)) == []
    assert not one(eng.on_message(tel(PIR, at(11, 2), tamper=0))).firing


def test_a_water_leak_is_an_incident_until_cleared(eng: SensingEngine) -> None:
    a = one(eng.on_message(ev(LEAK, EventType.WATER_LEAK, at(10))))
    assert (a.category, a.dedup_key, a.ts, a.subject_id) == (
        "water_leak", f"water_leak:{LEAK}", at(10), None)
    assert a.title == "3-2-501 厨房水浸 漏水报警"
    c = one(eng.on_message(ev(LEAK, EventType.WATER_LEAK_CLEAR, at(10, 30))))
    assert c.state is AlarmState.CLEARED and c.ts == at(10, 30)


def test_health_categories_are_registered_for_property_management() -> None:
    s = site()
    for code in ("battery_low", "weak_link", "tamper", "water_leak"):
        info = s.category(code)
        assert (info.route, info.groups, info.life_safety) == ("property", False, False)
        assert info.inhibits == ()  # a faulty sensor never hides a care alarm


# ---------------------------------------------------------------- health and care


def test_a_health_problem_never_becomes_a_care_alarm(eng: SensingEngine) -> None:
    eng.on_message(ev(PIR, EventType.MOTION, at(8)))
    out = eng.on_message(tel(PIR, at(9), battery=5, linkquality=3))
    out += eng.on_message(tel(PIR, at(9, 1), linkquality=3))
    out += eng.on_message(tel(PIR, at(9, 2), linkquality=3))
    out += eng.on_message(ev(PIR, EventType.TAMPER, at(9, 3)))
    out += eng.on_message(ev(LEAK, EventType.WATER_LEAK, at(9, 4)))
    assert {a.category for a in out} == {"battery_low", "weak_link", "tamper", "water_leak"}
    assert all(a.subject_id is None for a in out)
    assert eng.tick(at(19, 59, 59)) == []  # motion at 08:00 plus 12 h, not sooner


def test_inactivity_with_a_faulty_sensor_is_raised_and_says_so(eng: SensingEngine) -> None:
    eng.on_message(ev(PIR, EventType.MOTION, at(8)))
    eng.on_message(tel(PIR, at(9), battery=5))
    eng.on_message(ev(PIR, EventType.TAMPER, at(9, 30)))
    eng.on_message(ev(DOOR, EventType.HEARTBEAT, at(19, 55)))  # the mains door is alive
    assert eng.tick(at(19, 59, 59)) == []
    a = one(eng.tick(at(20)))
    assert (a.category, a.ts) == (Category.INACTIVITY, at(20))
    assert a.title == ("3-2-501 王秀英 12.0小时无活动"
                       "（传感器待检修：3-2-501 人体感应 设备被拆动、电量低）")
    assert a.evidence["sensor_problems"] == {PIR: ["tamper", "battery_low"]}


def test_inactivity_is_not_raised_while_a_mains_sensor_is_offline(eng: SensingEngine) -> None:
    eng.on_message(ev(PIR, EventType.MOTION, at(8)))
    eng.on_message(ev(DOOR, EventType.HEARTBEAT, at(8)))
    assert brief(eng.tick(at(8, 10))) == [(f"offline:{DOOR}", "firing", at(8, 10))]
    eng.on_message(ev(PIR, EventType.HEARTBEAT, at(19, 59)))
    assert eng.tick(at(20)) == []  # the door cannot see her leave or come home
    assert eng.tick(at(23)) == []


# ---------------------------------------------------------------- restart and config


def test_health_state_survives_a_restart(eng: SensingEngine) -> None:
    eng.on_message(tel(PIR, at(10), battery=10, linkquality=5))
    eng.on_message(tel(PIR, at(10, 1), linkquality=5))
    eng.on_message(ev(PIR, EventType.TAMPER, at(10, 2)))
    eng.on_message(ev(LEAK, EventType.WATER_LEAK, at(10, 3)))
    eng.on_message(tel(DOOR, at(10, 4), linkquality=5))
    again = SensingEngine(site())
    again.restore(json.loads(json.dumps(eng.snapshot())))
    assert again.snapshot() == eng.snapshot()
    assert again.on_message(tel(PIR, at(11), battery=22)) == []  # still low: no new alarm
    out = again.on_message(tel(PIR, at(11, 1), battery=90, linkquality=5))  # 3rd weak one
    assert sorted(brief(out)) == [(f"battery_low:{PIR}", "cleared", at(11, 1)),
                                  (f"weak_link:{PIR}", "firing", at(11, 1))]
    assert not one(again.on_message(ev(PIR, EventType.TAMPER_CLEAR, at(11, 2)))).firing
    assert not one(again.on_message(ev(LEAK, EventType.WATER_LEAK_CLEAR, at(11, 3)))).firing


@pytest.mark.parametrize("rules, message", [
    ({"health": {"battery": {"battery_low_pct": 30}}}, "battery_ok_pct (25) must be above"),
    ({"health": {"mains": {"weak_link_lqi": 80}}}, "link_ok_lqi (60) must be above"),
    ({"health": {"mains": {"offline_s": 0}}}, "greater than 0"),
    ({"health": {"solar": {}}}, "Extra inputs"),
])
def test_health_thresholds_are_validated(rules: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        site(rules)


def test_power_class_is_mains_or_battery() -> None:
    raw = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    raw["devices"][0]["power"] = "solar"
    with pytest.raises(ValidationError, match="power"):
        Site.model_validate(raw)
