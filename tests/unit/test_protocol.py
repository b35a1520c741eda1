"""The wire contract: topics, payload validation and its error messages, frames."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from hub.protocol import (
    MAX_JSON_BYTES,
    FrameMeta,
    Kind,
    ProtocolError,
    Reading,
    Telemetry,
    decode_frame,
    decode_json,
    decode_rebaseline,
    encode,
    encode_frame,
    parse_topic,
    subscription,
    topic,
)

TS = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def reason(fn, *args) -> tuple[str, str]:
    with pytest.raises(ProtocolError) as e:
        fn(*args)
    return e.value.reason, e.value.detail


def test_topic_round_trip_and_shared_subscription() -> None:
    t = topic("demo", "pir-3-2-501", Kind.TELEMETRY)
    assert t == "sc/v1/demo/pir-3-2-501/telemetry"
    p = parse_topic(t)
    assert (p.site, p.device, p.kind) == ("demo", "pir-3-2-501", Kind.TELEMETRY)
    assert subscription(Kind.EVENT, shared_group="hub") == "$share/hub/sc/v1/+/+/event"


@pytest.mark.parametrize("bad", [
    "sc/v2/demo/d/telemetry", "sc/v1/demo/d", "sc/v1/demo/d/telemetry/x",
    "sc/v1/demo/d/unknown", "sc/v1/de mo/d/event",
])
def test_topics_outside_the_scheme_are_refused(bad: str) -> None:
    assert reason(parse_topic, bad)[0] == "bad_topic"


def test_device_ids_cannot_inject_wildcards() -> None:
    assert reason(topic, "demo", "a/#", Kind.EVENT)[0] == "bad_topic"


def test_telemetry_round_trip() -> None:
    msg = Telemetry(device="water-3-2-501", seq=7, ts=TS,
                    readings=[Reading(metric="meter_total", value=12.5, unit="L")])
    assert decode_json(Kind.TELEMETRY, encode(msg), device="water-3-2-501") == msg


def test_validation_errors_say_what_and_where() -> None:
    raw = {"device": "d1", "seq": -1, "ts": "2026-11-22T09:00:00",
           "readings": [{"metric": "Temp", "value": "hot"}]}
    why, detail = reason(decode_json, Kind.TELEMETRY, json.dumps(raw).encode())
    assert why == "invalid"
    assert "seq" in detail and "ts" in detail and "readings.0.metric" in detail


@pytest.mark.parametrize(("payload", "why"), [
    (b"{not json", "bad_json"),
    (b"\xff\xfe", "bad_json"),
    (b"[" * 50_000, "bad_json"),
    (b"[1, 2]", "invalid"),
    (b" " * 70_000, "oversized"),
])
def test_malformed_payloads_get_a_reason(payload: bytes, why: str) -> None:
    assert reason(decode_json, Kind.EVENT, payload)[0] == why


def test_payload_device_must_match_the_topic() -> None:
    msg = Telemetry(device="d1", seq=1, ts=TS, readings=[Reading(metric="x", value=1)])
    assert reason(decode_json, Kind.TELEMETRY, encode(msg), "d2")[0] == "device_mismatch"


def test_naive_timestamps_and_nan_are_refused() -> None:
    raw = {"device": "d1", "seq": 1, "ts": "2026-11-22T09:00:00Z",
           "readings": [{"metric": "x", "value": float("nan")}]}
    assert reason(decode_json, Kind.TELEMETRY, json.dumps(raw).encode())[0] == "invalid"


def test_frame_envelope() -> None:
    meta = FrameMeta(device="cam-1", seq=3, ts=TS, width=640, height=360, motion=0.1)
    jpeg = b"\xff\xd8" + b"\x00" * 100 + b"\xff\xd9"
    assert decode_frame(encode_frame(meta, jpeg), "cam-1") == (meta, jpeg)
    assert reason(decode_frame, b"XXXX" + encode_frame(meta, jpeg)[4:])[0] == "bad_frame"
    assert reason(decode_frame, encode_frame(meta, b"GIF89a"))[0] == "bad_frame"
    assert reason(decode_frame, encode_frame(meta, jpeg)[:10])[0] == "bad_frame"
    assert reason(decode_frame, encode_frame(meta, jpeg), "cam-2")[0] == "device_mismatch"


def test_rebaseline_request_is_checked_like_every_device_message() -> None:
    req = {"device": "cam-1", "request_id": "0" * 32, "by": "ops",
           "ts": "2026-03-01T08:00:00Z"}
    assert decode_rebaseline(json.dumps(req).encode(), "cam-1").by == "ops"
    with pytest.raises(ProtocolError) as e:
        decode_rebaseline(json.dumps(req).encode(), "cam-2")
    assert (e.value.reason, e.value.detail) == (
        "device_mismatch", "request device 'cam-1' != topic device 'cam-2'")
    with pytest.raises(ProtocolError) as e:
        decode_rebaseline(json.dumps({**req, "by": ""}).encode(), "cam-1")
    assert e.value.reason == "invalid" and e.value.detail.startswith("rebaseline request: by")
    with pytest.raises(ProtocolError) as e:
        decode_rebaseline(b"\xff{}", "cam-1")
    assert e.value.reason == "bad_json" and "rebaseline request is not UTF-8" in e.value.detail
    with pytest.raises(ProtocolError) as e:
        decode_rebaseline(b" " * (MAX_JSON_BYTES + 1), "cam-1")
    assert e.value.reason == "oversized"
