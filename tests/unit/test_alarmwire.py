"""Alarms on the wire: the round trip, the strict contract and the scope checks an
alarm from the broker must pass (every identity field against the topic's device)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hub.alarmwire import encode_alarm, read_alarm, to_message
from hub.config import Site, load_site
from hub.domain import Alarm, AlarmState, Severity
from hub.protocol import Kind, ProtocolError, decode_alarm, encode, topic
from hub.store.incidents import alarm_id

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 2, 9, 0, 0, tzinfo=UTC)
CAM = "cam-b3-lane"  # grid 1101050010020103, no subject
PIR = "pir-3-2-501"  # same grid, subject s01


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(REPO / "deploy" / "sites" / "demo.yaml")


def fall(**kw: object) -> Alarm:
    base = Alarm(
        rule="fall", category="fall", severity=Severity.CRITICAL, state=AlarmState.FIRING,
        dedup_key=f"fall:{CAM}:t3", ts=datetime(2026, 12, 2, 17, 0, 1, 250000,
                                                 tzinfo=ZoneInfo("Asia/Shanghai")),
        title="3号楼 跌倒", grid_code="1101050010020103", device_id=CAM, zone="lane",
        confidence=0.8, evidence={"lying_s": 2.5, "clip": {
            "path": f"clips/fall/{CAM}/20261202T090001-fall.mp4", "from": "x"}},
        evidence_image=f"evidence/{CAM}/20261202T090001250000-fall.jpg")
    return replace(base, **kw)  # type: ignore[arg-type]


def read(site: Site, payload: bytes, device: str = CAM, now: datetime = NOW) -> Alarm:
    return read_alarm(topic(site.site.id, device, Kind.ALARM), payload, site, now,
                      max_skew_s=300, categories=site.registry)


def test_an_alarm_comes_back_as_it_went_under_the_stores_id(site: Site) -> None:
    a = fall()
    back = read(site, encode_alarm(a))
    assert back == a
    assert to_message(a).id == alarm_id(a) == alarm_id(back)


def test_the_grid_code_defaults_to_the_devices(site: Site) -> None:
    assert read(site, encode_alarm(fall(grid_code=None))).grid_code == "1101050010020103"


def test_a_subject_device_may_name_its_subject_in_the_key(site: Site) -> None:
    a = fall(device_id=PIR, dedup_key="sos:s01", subject_id="s01", category="sos",
             rule="sos", evidence={}, evidence_image=None)
    assert read(site, encode_alarm(a), device=PIR).subject_id == "s01"


def refused(site: Site, payload: bytes, device: str = CAM, now: datetime = NOW) -> str:
    with pytest.raises(ProtocolError) as e:
        read(site, payload, device, now)
    return e.value.reason


def wire(a: Alarm, **changes: object) -> bytes:
    d = json.loads(encode_alarm(a))
    d.update(changes)
    return json.dumps(d).encode()


@pytest.mark.parametrize(("change", "reason"), [
    ({"grid_code": "1101050010020203"}, "out_of_scope"),  # building 7's micro-grid
    ({"grid_code": "110105"}, "out_of_scope"),  # above the device's grid
    ({"subject_id": "s02"}, "out_of_scope"),
    ({"dedup_key": "fall:cam-b7-stair1:t3"}, "out_of_scope"),  # another camera's incident
    ({"dedup_key": "nocolon"}, "out_of_scope"),
    ({"evidence_image": "evidence/cam-b7-stair1/x.jpg"}, "out_of_scope"),
    ({"evidence_image": f"evidence/{CAM}/../../etc/passwd"}, "out_of_scope"),
    ({"evidence_image": "/etc/passwd"}, "out_of_scope"),
    ({"evidence": {"clip": {"path": "clips/fall/cam-b7-stair1/a.mp4"}}}, "out_of_scope"),
    ({"evidence": {"clip": {"path": f"clips/../{CAM}/a.mp4"}}}, "out_of_scope"),
    ({"evidence": {"clip": "x"}}, "out_of_scope"),
    ({"device": "cam-b7-stair1"}, "device_mismatch"),
    ({"category": "not_registered"}, "unknown_category"),
    ({"extra": 1}, "invalid"),
    ({"v": 2}, "invalid"),
    ({"v": True}, "invalid"),
    ({"confidence": "0.9"}, "invalid"),
    ({"severity": "huge"}, "invalid"),
    ({"ts": 1764666001}, "invalid"),  # seconds since 1970
    ({"ts": "2026-12-02T09:00:01"}, "invalid"),  # no zone
    ({"title": "x" * 201}, "invalid"),
    ({"evidence": {"k": float("nan")}}, "invalid"),  # NaN is not JSON
    ({"evidence": {f"k{i}": i for i in range(101)}}, "invalid"),
    ({"evidence": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}, "invalid"),
])
def test_refusals_name_their_reason(site: Site, change: dict[str, object],
                                    reason: str) -> None:
    if "dedup_key" in change:  # an alarm about something else, under its own id
        payload = encode_alarm(fall(dedup_key=change["dedup_key"]))
    else:
        payload = wire(fall(), **change)
    assert refused(site, payload) == reason


def test_an_id_that_is_not_the_alarms_key_is_refused(site: Site) -> None:
    assert refused(site, wire(fall(), id="0" * 32)) == "bad_id"
    # The same alarm with a later ts is another alarm: its old id does not fit.
    later = json.loads(encode_alarm(fall()))
    later["ts"] = "2026-12-02T17:00:02+08:00"
    assert refused(site, json.dumps(later).encode()) == "bad_id"


def test_time_is_bounded_like_every_device_time(site: Site) -> None:
    a = fall(ts=NOW + timedelta(seconds=301))
    assert refused(site, encode_alarm(a)) == "ts_future"
    assert read(site, encode_alarm(fall(ts=NOW + timedelta(seconds=300)))).ts == NOW + \
        timedelta(seconds=300)
    assert refused(site, encode_alarm(fall(ts=datetime(2019, 12, 31, tzinfo=UTC)))) == "ts_past"


def test_topic_site_kind_and_device_are_checked(site: Site) -> None:
    p = encode_alarm(fall())
    with pytest.raises(ProtocolError, match="bad_topic"):
        read_alarm(topic("other", CAM, Kind.ALARM), p, site, NOW, max_skew_s=300)
    with pytest.raises(ProtocolError, match="bad_topic"):
        read_alarm(topic(site.site.id, CAM, Kind.EVENT), p, site, NOW, max_skew_s=300)
    ghost = fall(device_id="cam-ghost", dedup_key="fall:cam-ghost:1",
                 evidence={}, evidence_image=None)
    assert refused(site, encode_alarm(ghost), device="cam-ghost") == "unknown_device"


def test_oversized_and_non_utf8_payloads(site: Site) -> None:
    assert refused(site, b"{" + b" " * 70_000 + b"}") == "oversized"
    assert refused(site, b"\xff\xfe{}") == "bad_json"
    assert refused(site, b"[1]") == "invalid"


def test_a_long_title_is_cut_not_the_alarm_lost(site: Site) -> None:
    back = read(site, encode_alarm(fall(title="消" * 250)))
    assert back.title == "消" * 200


def test_an_alarm_without_a_device_cannot_go_on_the_wire() -> None:
    with pytest.raises(ProtocolError, match="names no device"):
        to_message(fall(device_id=None))


def test_decode_without_a_topic_device_checks_the_id_only() -> None:
    m = decode_alarm(encode(to_message(fall())))
    assert m.device == CAM and m.severity == "critical"
