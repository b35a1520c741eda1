"""Elderly-care and safety rules, clocked by the data's timestamps, to the second."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from hub.config import Site
from hub.domain import AlarmState, Category, Severity
from hub.protocol import DeviceState, Event, EventType, Reading, Status, Telemetry
from hub.sensing import SensingEngine

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml"
TZ = ZoneInfo("Asia/Shanghai")
_seq = itertools.count()


def site(heartbeat_s: float = 7 * 86400, **subject_overrides) -> Site:
    """The demo site; heartbeats so slow by default that presence stays out of the way
    of the tests that are not about it."""
    raw = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    raw["care_subjects"][0].update(subject_overrides)  # s01, 3-2-501 王秀英
    for d in raw["devices"]:
        d["heartbeat_s"] = heartbeat_s
    return Site.model_validate(raw)


def at(day: int, h: int, m: int = 0, s: int = 0) -> datetime:
    return datetime(2026, 3, day, h, m, s, tzinfo=TZ)


def ev(device: str, type_: EventType, ts: datetime, **data) -> Event:
    return Event(device=device, seq=next(_seq), ts=ts, type=type_, data=data)


def tel(device: str, ts: datetime, **readings: float) -> Telemetry:
    return Telemetry(device=device, seq=next(_seq), ts=ts,
                     readings=[Reading(metric=k, value=v) for k, v in readings.items()])


@pytest.fixture
def eng() -> SensingEngine:
    return SensingEngine(site())


def one(alarms: list):
    assert len(alarms) == 1, alarms
    return alarms[0]


# ---------------------------------------------------------------- immediate alarms


def test_sos_is_immediate_and_critical(eng: SensingEngine) -> None:
    a = one(eng.on_message(ev("sos-3-2-501", EventType.SOS, at(2, 10), battery=88)))
    assert (a.category, a.severity, a.state) == (Category.SOS, Severity.CRITICAL, AlarmState.FIRING)
    assert a.dedup_key == "sos:s01" and a.title == "3-2-501 王秀英 紧急呼叫"
    assert (a.grid_code, a.subject_id, a.device_id) == ("1101050010020103", "s01", "sos-3-2-501")
    assert a.ts == at(2, 10) and a.evidence["data"] == {"battery": 88}
    # Redelivery gives the identical alarm, which the incident engine drops.
    assert eng.on_message(ev("sos-3-2-501", EventType.SOS, at(2, 10), battery=88)) == [a]


def test_smoke_fires_and_clears(eng: SensingEngine) -> None:
    assert eng.on_message(ev("smoke-3-2-501", EventType.SMOKE_CLEAR, at(2, 9))) == []
    a = one(eng.on_message(ev("smoke-3-2-501", EventType.SMOKE, at(2, 10))))
    assert (a.category, a.severity, a.dedup_key) == (Category.SMOKE, Severity.CRITICAL,
                                                     "smoke:smoke-3-2-501")
    assert a.title == "3-2-501 王秀英 烟感报警"
    c = one(eng.on_message(ev("smoke-3-2-501", EventType.SMOKE_CLEAR, at(2, 10, 5))))
    assert c.state is AlarmState.CLEARED and c.dedup_key == a.dedup_key


def test_wearable_fall(eng: SensingEngine) -> None:
    a = one(eng.on_message(ev("wearable-3-2-501", EventType.FALL, at(2, 10), g=3.1)))
    assert (a.category, a.severity, a.dedup_key) == (Category.FALL, Severity.CRITICAL, "fall:s01")


def test_unknown_device_is_ignored(eng: SensingEngine) -> None:
    assert eng.on_message(ev("ghost", EventType.SOS, at(2, 10))) == []


# ---------------------------------------------------------------- inactivity


def test_inactivity_day_window_to_the_second(eng: SensingEngine) -> None:
    assert eng.on_message(ev("pir-3-2-501", EventType.MOTION, at(2, 9))) == []
    assert eng.tick(at(2, 20, 59, 59)) == []
    a = one(eng.tick(at(2, 21)))
    assert (a.category, a.dedup_key, a.ts) == (Category.INACTIVITY, "inactivity:s01", at(2, 21))
    assert a.title == "3-2-501 王秀英 12.0小时无活动"
    assert a.evidence["hours_without_activity"] == 12.0
    assert a.evidence["last_activity_at"] == at(2, 9).isoformat()
    assert a.evidence["window"] == "day" and a.evidence["last_activity_device"] == "pir-3-2-501"
    assert eng.tick(at(2, 21, 30)) == []  # fires once per episode
    c = one(eng.on_message(ev("door-3-2-501", EventType.DOOR_OPEN, at(2, 21, 40))))
    assert c.state is AlarmState.CLEARED and c.dedup_key == "inactivity:s01"


def test_inactivity_night_window_to_the_second(eng: SensingEngine) -> None:
    eng.on_message(ev("pir-3-2-501", EventType.MOTION, at(2, 11)))
    # 23:00 is 12 h later but night: the 16 h night window applies -> 03:00.
    assert eng.tick(at(2, 23)) == []
    assert eng.tick(at(3, 2, 59, 59)) == []
    a = one(eng.tick(at(3, 3)))
    assert a.ts == at(3, 3) and a.evidence["window"] == "night"
    assert a.evidence["window_s"] == 57600


def test_inactivity_after_evening_activity_waits_for_day(eng: SensingEngine) -> None:
    eng.on_message(ev("pir-3-2-501", EventType.MOTION, at(2, 20)))
    assert eng.tick(at(3, 7, 59, 59)) == []
    assert one(eng.tick(at(3, 8))).ts == at(3, 8)


def test_subject_override_window() -> None:
    eng = SensingEngine(site(inactivity_day_s=3600))
    eng.on_message(ev("pir-3-2-501", EventType.MOTION, at(2, 9)))
    assert eng.tick(at(2, 9, 59, 59)) == []
    assert one(eng.tick(at(2, 10))).title == "3-2-501 王秀英 1.0小时无活动"


def test_water_use_counts_as_activity(eng: SensingEngine) -> None:
    eng.on_message(ev("pir-3-2-501", EventType.MOTION, at(2, 9)))
    eng.on_message(ev("water-3-2-501", EventType.WATER_FLOW, at(2, 10), litres=2.0))
    assert eng.tick(at(2, 21, 59, 59)) == []
    assert one(eng.tick(at(2, 22, 0, 0))).ts == at(2, 22)  # 12 h after 10:00, still day edge


def test_late_message_fires_the_missed_deadline_then_clears(eng: SensingEngine) -> None:
    eng.on_message(ev("pir-3-2-501", EventType.MOTION, at(2, 9)))
    # No tick ran (a replay): the next activity reveals the missed deadline.
    out = eng.on_message(ev("pir-3-2-501", EventType.MOTION, at(2, 21, 5)))
    assert [(a.state, a.ts) for a in out] == [
        (AlarmState.FIRING, at(2, 21)), (AlarmState.CLEARED, at(2, 21, 5))
    ]


# ---------------------------------------------------------------- device offline


def test_offline_after_missed_heartbeats_to_the_second() -> None:
    eng = SensingEngine(site(heartbeat_s=30))
    eng.on_message(ev("smoke-3-2-501", EventType.HEARTBEAT, at(2, 10)))
    # heartbeat_s 30 x missed_heartbeats 3 = 90 s.
    assert eng.tick(at(2, 10, 1, 29)) == []
    a = one(eng.tick(at(2, 10, 1, 30)))
    assert (a.category, a.dedup_key, a.ts) == (Category.DEVICE_OFFLINE, "offline:smoke-3-2-501",
                                              at(2, 10, 1, 30))
    assert a.severity is Severity.MINOR and a.title == "3-2-501 烟感 设备离线"
    assert a.evidence["last_seen"] == at(2, 10).isoformat()
    assert eng.tick(at(2, 10, 5)) == []
    # Spooled data from before the outage does not bring it back...
    assert eng.on_message(tel("smoke-3-2-501", at(2, 10, 1), smoke_density=0.02)) == []
    # ...a fresh heartbeat does.
    c = one(eng.on_message(ev("smoke-3-2-501", EventType.HEARTBEAT, at(2, 10, 6))))
    assert c.state is AlarmState.CLEARED and c.evidence["offline_s"] == 270


def test_last_will_offline_after_grace_and_stale_will() -> None:
    eng = SensingEngine(site(heartbeat_s=30))  # the grace after a Will: one heartbeat
    d = "door-3-2-501"
    # Connection 1 at 08:00: online (seq 10) and its Will (seq 11) share the ts.
    eng.on_message(Status(device=d, seq=10, ts=at(2, 8), state=DeviceState.ONLINE))
    eng.on_message(ev(d, EventType.HEARTBEAT, at(2, 9)))
    assert eng.on_message(Status(device=d, seq=11, ts=at(2, 8), state=DeviceState.OFFLINE,
                                 reason="lwt")) == []
    assert eng.tick(at(2, 9, 0, 29)) == []  # still inside the grace
    a = one(eng.tick(at(2, 9, 0, 30)))
    # Offline counts from when it was last seen, not from the Will's connect time.
    assert a.firing and a.ts == at(2, 9) and a.evidence["reason"] == "lwt"
    # Connection 2 at 09:30.
    c = one(eng.on_message(Status(device=d, seq=12, ts=at(2, 9, 30), state=DeviceState.ONLINE)))
    assert c.state is AlarmState.CLEARED
    # Connection 1's Will, redelivered late, is stale.
    assert eng.on_message(Status(device=d, seq=11, ts=at(2, 8), state=DeviceState.OFFLINE)) == []
    # Connection 2's own Will is not.
    assert eng.on_message(Status(device=d, seq=13, ts=at(2, 9, 30),
                                 state=DeviceState.OFFLINE)) == []
    assert eng.tick(at(2, 9, 30, 29)) == []
    a2 = one(eng.tick(at(2, 9, 30, 30)))
    assert a2.firing and a2.ts == at(2, 9, 30)


def test_reconnect_within_grace_raises_nothing(eng: SensingEngine) -> None:
    """A hub restart or a flapping link: the retained offline status of the previous
    session, then the new session's online, a few seconds apart."""
    d = "door-3-2-501"
    assert eng.on_message(Status(device=d, seq=5, ts=at(2, 8), state=DeviceState.OFFLINE)) == []
    assert eng.on_message(Status(device=d, seq=6, ts=at(2, 8, 0, 3),
                                 state=DeviceState.ONLINE)) == []
    assert eng.tick(at(2, 8, 5)) == []


def test_stale_retained_offline_gets_the_grace_from_when_it_arrives() -> None:
    """The hub starts at 12:00 and receives a device's retained offline status from
    08:00 (its previous session): the device has one heartbeat to reconnect."""
    eng = SensingEngine(site(heartbeat_s=30))
    d = "door-3-2-501"
    assert eng.on_message(Status(device=d, seq=5, ts=at(2, 8), state=DeviceState.OFFLINE),
                          received_at=at(2, 12)) == []
    assert eng.tick(at(2, 12, 0, 29)) == []
    a = one(eng.tick(at(2, 12, 0, 30)))
    assert a.firing and a.ts == at(2, 8)  # offline since its data says so


def test_watch_unseen_devices() -> None:
    eng = SensingEngine(site(heartbeat_s=30), watch_unseen=True)
    eng.tick(at(2, 10))
    out = eng.tick(at(2, 10, 1, 30))
    assert len(out) == len(site().devices)  # nobody spoke within 90 s of the start
    assert SensingEngine(site(heartbeat_s=30)).tick(at(2, 12)) == []


def test_offline_sensor_inhibits_inactivity_and_raises_maintenance() -> None:
    eng = SensingEngine(site(heartbeat_s=30))
    eng.on_message(ev("pir-3-2-501", EventType.MOTION, at(2, 9)))
    eng.on_message(ev("pir-3-2-501", EventType.HEARTBEAT, at(2, 12)))
    off = one(eng.tick(at(2, 12, 1, 30)))
    assert off.category is Category.DEVICE_OFFLINE and off.subject_id == "s01"
    assert eng.tick(at(2, 21)) == []  # inactivity inhibited: the sensor cannot see
    assert eng.tick(at(2, 23)) == []
    # Back online at 23:00: the spool gets 90 s to replay before judging again.
    back = one(eng.on_message(ev("pir-3-2-501", EventType.HEARTBEAT, at(2, 23))))
    assert back.state is AlarmState.CLEARED
    assert eng.tick(at(2, 23, 1, 29)) == []
    assert eng.on_message(ev("pir-3-2-501", EventType.HEARTBEAT, at(2, 23, 1))) == []
    a = one(eng.tick(at(2, 23, 1, 30)))
    assert a.category is Category.INACTIVITY and a.ts == at(2, 23, 1, 30)


# ---------------------------------------------------------------- vitals


def test_vitals_n_consecutive(eng: SensingEngine) -> None:
    w = "wearable-3-2-501"
    t = at(2, 10)
    assert eng.on_message(tel(w, t, heart_rate=150, spo2=97)) == []
    assert eng.on_message(tel(w, t + timedelta(seconds=15), heart_rate=155)) == []
    assert eng.on_message(tel(w, t + timedelta(seconds=30), heart_rate=80)) == []  # run broken
    assert eng.on_message(tel(w, t + timedelta(seconds=45), heart_rate=150)) == []
    assert eng.on_message(tel(w, t + timedelta(seconds=60), heart_rate=151)) == []
    a = one(eng.on_message(tel(w, t + timedelta(seconds=75), heart_rate=152)))
    assert (a.category, a.dedup_key) == (Category.VITALS, "vitals:s01:heart_rate")
    assert a.evidence["readings"] == [150, 151, 152] and a.ts == t + timedelta(seconds=75)
    assert "心率异常" in a.title
    assert eng.on_message(tel(w, t + timedelta(seconds=90), heart_rate=153)) == []  # once
    assert eng.on_message(tel(w, t + timedelta(seconds=105), heart_rate=70)) == []
    assert eng.on_message(tel(w, t + timedelta(seconds=120), heart_rate=71)) == []
    c = one(eng.on_message(tel(w, t + timedelta(seconds=135), heart_rate=72)))
    assert c.state is AlarmState.CLEARED
    # Low SpO2 is its own alarm.
    for i in range(2):
        assert eng.on_message(tel(w, t + timedelta(seconds=200 + i), spo2=85)) == []
    assert one(eng.on_message(tel(w, t + timedelta(seconds=202), spo2=85))).dedup_key == (
        "vitals:s01:spo2")


# ---------------------------------------------------------------- water


def test_water_none_to_the_second(eng: SensingEngine) -> None:
    eng.on_message(ev("water-3-2-501", EventType.WATER_FLOW, at(2, 8), litres=3))
    eng.on_message(ev("pir-3-2-501", EventType.MOTION, at(2, 19)))  # moving, but no water
    assert eng.tick(at(2, 19, 59, 59)) == []
    a = one(eng.tick(at(2, 20)))
    assert (a.category, a.dedup_key, a.ts) == (Category.WATER, "water_none:s01", at(2, 20))
    assert a.evidence["kind"] == "none" and a.title == "3-2-501 王秀英 12小时未用水"
    c = one(eng.on_message(tel("water-3-2-501", at(2, 20, 5), water_l=1.5)))
    assert c.state is AlarmState.CLEARED and c.dedup_key == "water_none:s01"


def test_water_excess_against_usual_use() -> None:
    eng = SensingEngine(site(usual_water_l_per_day=120))  # 3 x 5 L/h = 15 L per hour
    w = "water-3-2-501"
    assert eng.on_message(ev(w, EventType.WATER_FLOW, at(2, 10), litres=10)) == []
    # 15 L is the limit, not over it.
    assert eng.on_message(ev(w, EventType.WATER_FLOW, at(2, 10, 30), litres=5)) == []
    a = one(eng.on_message(ev(w, EventType.WATER_FLOW, at(2, 10, 40), litres=1)))
    assert (a.dedup_key, a.evidence["litres"], a.evidence["limit_litres"]) == (
        "water_excess:s01", 16, 15)
    # The meter's own cumulative reading does not count the same water twice.
    assert eng.on_message(tel(w, at(2, 10, 45), water_meter_l=1000)) == []
    assert eng.on_message(tel(w, at(2, 10, 50), water_meter_l=1016)) == []
    assert eng.tick(at(2, 10, 59, 59)) == []
    c = one(eng.tick(at(2, 11)))  # the 10 L at 10:00 leaves the hour window
    assert c.state is AlarmState.CLEARED and c.evidence["litres"] == 6


def test_meter_only_household_counts_meter_deltas() -> None:
    eng = SensingEngine(site(usual_water_l_per_day=24))  # 3 L per hour
    w = "water-3-2-501"
    assert eng.on_message(tel(w, at(2, 10), water_meter_l=500)) == []
    a = one(eng.on_message(tel(w, at(2, 10, 5), water_meter_l=504)))
    assert a.dedup_key == "water_excess:s01"


# ---------------------------------------------------------------- restart


def test_snapshot_restore_mid_countdown() -> None:
    eng = SensingEngine(site())
    eng.on_message(ev("pir-3-2-501", EventType.MOTION, at(2, 9)))
    eng.on_message(ev("smoke-3-2-501", EventType.SMOKE, at(2, 9, 5)))
    for i in range(2):
        eng.on_message(tel("wearable-3-2-501", at(2, 9, 10, i), heart_rate=20))
    assert eng.tick(at(2, 15)) == []
    saved = json.dumps(eng.snapshot())

    eng2 = SensingEngine(site())
    eng2.restore(json.loads(saved))
    assert eng2.snapshot() == json.loads(saved)
    assert eng2.tick(at(2, 20, 59, 59)) == []
    assert one(eng2.tick(at(2, 21))).dedup_key == "inactivity:s01"
    # The vitals run and the smoke state survived too.
    assert one(eng2.on_message(tel("wearable-3-2-501", at(2, 21, 1), heart_rate=20))).firing
    assert not one(eng2.on_message(ev("smoke-3-2-501", EventType.SMOKE_CLEAR, at(2, 21, 2)))).firing
    with pytest.raises(ValueError, match="snapshot version"):
        eng2.restore({"v": 99})


def test_replayed_history_is_judged_on_data_time() -> None:
    """A spool replaying a household's past must not fire the deadline of its first,
    hours-old message before the rest of the history has arrived."""
    eng = SensingEngine(site(heartbeat_s=30))  # offline period 90 s
    # The hub's clock is at 19:00 while the replay is still at 06:00: the device is
    # alive (heard now), its data is 13 h old.
    eng.on_message(ev("pir-3-2-501", EventType.MOTION, at(2, 6)), received_at=at(2, 19))
    assert eng.tick(at(2, 19)) == []
    # The replay goes on: motion at 08:00, then heartbeats up to 19:00.
    eng.on_message(ev("pir-3-2-501", EventType.MOTION, at(2, 8)), received_at=at(2, 19))
    assert eng.tick(at(2, 19, 0, 1)) == []  # data time 08:01:30: the 20:00 deadline is far
    eng.on_message(ev("pir-3-2-501", EventType.HEARTBEAT, at(2, 19)), received_at=at(2, 19))
    assert eng.tick(at(2, 19, 0, 2)) == []  # 11 h after the last motion, not yet 12
    eng.on_message(ev("pir-3-2-501", EventType.HEARTBEAT, at(2, 20)), received_at=at(2, 20))
    a = one(eng.tick(at(2, 20)))
    assert a.category is Category.INACTIVITY and a.ts == at(2, 20)
    # Liveness is judged on when the hub heard it: 90 s of silence is offline.
    assert eng.tick(at(2, 20, 1, 29)) == []
    off = one(eng.tick(at(2, 20, 1, 30)))
    assert off.category is Category.DEVICE_OFFLINE
