"""Lenient parsing: the wire contract takes only what a device meant. A number in a
string is not a number, an integer is not a timestamp, ``true`` is not 1, and JSON
on the wire is UTF-8 (RFC 8259), never UTF-16 or Latin-1. Both decoders, the
contract's ``decode_json`` and the ingest's receive step, refuse the same things.
Issue 11, hole 8."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.agent import EdgeAgent
from edge.config import BRIDGE_SPOOL_KEY
from edge.demo import demo_edge_config
from hub.config import load_site
from hub.ingest.adapters import Adapters
from hub.ingest.service import _decode
from hub.protocol import (
    FrameMeta,
    Kind,
    ProtocolError,
    decode_frame,
    decode_json,
    encode_frame,
    parse_topic,
)
from hub.services import Broker

REPO = Path(__file__).resolve().parents[2]
TS = "2026-11-22T09:00:00+00:00"
DECODERS = [pytest.param(decode_json, id="decode_json"), pytest.param(_decode, id="ingest")]


def _event(**over: Any) -> dict[str, Any]:
    return {"device": "d1", "seq": 1, "ts": TS, "type": "sos", **over}


def _telemetry(**over: Any) -> dict[str, Any]:
    return {"device": "d1", "seq": 1, "ts": TS,
            "readings": [{"metric": "temp", "value": 21.5}], **over}


def _status(**over: Any) -> dict[str, Any]:
    return {"device": "d1", "seq": 1, "ts": TS, "state": "online", **over}


LENIENT = [
    # What a device did not mean: a string, a float or a boolean where an integer is.
    (Kind.EVENT, _event(seq="1")),
    (Kind.EVENT, _event(seq=1.0)),
    (Kind.EVENT, _event(seq=True)),
    (Kind.STATUS, _status(seq="3")),
    (Kind.TELEMETRY, _telemetry(seq="1")),
    # ... a string or a boolean where a number is.
    (Kind.TELEMETRY, _telemetry(readings=[{"metric": "temp", "value": "1"}])),
    (Kind.TELEMETRY, _telemetry(readings=[{"metric": "temp", "value": True}])),
    # ... an integer, a float or a string of digits read as seconds since 1970.
    (Kind.EVENT, _event(ts=1767225600)),
    (Kind.EVENT, _event(ts=1767225600.5)),
    (Kind.EVENT, _event(ts="1767225600")),
    (Kind.STATUS, _status(ts=0)),
    # ... a date without a time, a space for the "T".
    (Kind.EVENT, _event(ts="2026-11-22")),
    (Kind.EVENT, _event(ts="2026-11-22 09:00:00+00:00")),
    # ... a version given as true or 1.0.
    (Kind.EVENT, _event(v=True)),
    (Kind.EVENT, _event(v=1.0)),
    # ... a lone UTF-16 surrogate: escaped JSON that is not Unicode text.
    (Kind.EVENT, _event(data={"note": "\ud800"})),
    (Kind.STATUS, _status(reason="\udc00x")),
]

# Event data is free-form, but not lenient either: NaN and Infinity are not JSON (RFC
# 8259; Python's json.dumps writes them, pydantic's parser took them and PostgreSQL
# then refused the row, splitting the ingest's batch), and the keys the hub reads
# have the types the contract names (camera_health: healthy is a boolean and reason
# a string; water_flow: litres is a number). {"healthy": "false"} read as healthy.
LENIENT_DATA = [
    _event(data={"x": float("nan")}),
    _event(data={"x": [1, float("inf")]}),
    _event(data={"x": {"y": float("-inf")}}),
    _event(type="camera_health", data={"healthy": "false", "reason": "lens covered"}),
    _event(type="camera_health", data={"healthy": 0}),
    _event(type="camera_health", data={"healthy": False, "reason": 42}),
    _event(type="water_flow", data={"litres": "5"}),
    _event(type="water_flow", data={"litres": True}),
    _event(type="water_flow", data={"liters": -3}),
]


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize(("kind", "raw"), LENIENT)
def test_lenient_values_are_refused(decode: Any, kind: Kind, raw: dict[str, Any]) -> None:
    payload = json.dumps(raw).encode()  # ensure_ascii: a surrogate travels as \udXXX
    with pytest.raises(ProtocolError) as e:
        decode(kind, payload, "d1")
    # The parser itself calls an unpaired surrogate escape invalid JSON.
    lone = any("\ud800" <= c <= "\udfff" for c in payload.decode("unicode_escape"))
    assert e.value.reason == ("bad_json" if lone else "invalid"), e.value


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize("raw", LENIENT_DATA)
def test_lenient_event_data_is_refused(decode: Any, raw: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as e:
        decode(Kind.EVENT, json.dumps(raw).encode(), "d1")
    assert e.value.reason == "invalid" and "data" in e.value.detail, e.value


@pytest.mark.parametrize("decode", DECODERS)
def test_a_number_past_the_double_range_is_refused(decode: Any) -> None:
    """1e999 is JSON syntax for a number no double holds; the parser made it inf."""
    payload = json.dumps(_event(data={"x": 0})).replace('"x": 0', '"x": 1e999').encode()
    with pytest.raises(ProtocolError):
        decode(Kind.EVENT, payload, "d1")


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig", "latin-1"])
def test_payloads_that_are_not_utf8_are_refused(decode: Any, encoding: str) -> None:
    text = json.dumps(_event(data={"where": "Café"}), ensure_ascii=False)
    with pytest.raises(ProtocolError) as e:
        decode(Kind.EVENT, text.encode(encoding), "d1")
    assert e.value.reason == "bad_json" and "UTF-8" in e.value.detail, e.value


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize(("kind", "raw"), [
    (Kind.TELEMETRY, _telemetry(readings=[{"metric": "temp", "value": 21}])),  # integer value
    (Kind.EVENT, _event(ts="2026-11-22T09:00:00Z")),
    (Kind.EVENT, _event(ts="2026-11-22T17:00:00.125+08:00")),
    (Kind.EVENT, _event(data={"note": "\U0001f525 火"})),  # a surrogate pair escape
    (Kind.STATUS, _status(reason="lwt")),
    (Kind.EVENT, _event(type="camera_health", data={"healthy": False, "reason": "dark"})),
    (Kind.EVENT, _event(type="water_flow", data={"litres": 5})),
    (Kind.EVENT, _event(type="water_flow", data={"litres": 2.5, "note": "tap"})),
    (Kind.EVENT, _event(data={"x": 1e300, "y": [-0.0, 3]})),
])
def test_what_a_device_means_is_still_taken(decode: Any, kind: Kind, raw: dict[str, Any]) -> None:
    msg = decode(kind, json.dumps(raw).encode(), "d1")
    assert msg.ts == datetime(2026, 11, 22, 9, 0, tzinfo=UTC) + (
        timedelta(milliseconds=125) if ".125" in raw["ts"] else timedelta(0))


def _frame(head: dict[str, Any]) -> bytes:
    meta = FrameMeta(device="cam-1", seq=3, ts=datetime.fromisoformat(TS), width=640,
                     height=360)
    payload = encode_frame(meta, b"\xff\xd8jpeg")
    raw = json.loads(payload[8:8 + int.from_bytes(payload[4:8], "big")])
    h = json.dumps({**raw, **head}).encode()
    return payload[:4] + len(h).to_bytes(4, "big") + h + b"\xff\xd8jpeg"


@pytest.mark.parametrize("head", [{"width": "640"}, {"height": 360.0}, {"seq": "3"},
                                  {"ts": 1767225600}, {"motion": "0.5"}, {"motion": True}])
def test_frame_headers_are_strict_too(head: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as e:
        decode_frame(_frame(head), "cam-1")
    assert e.value.reason == "invalid", e.value


def test_frame_header_must_be_utf8() -> None:
    meta = FrameMeta(device="cam-1", seq=3, ts=datetime.fromisoformat(TS), width=640,
                     height=360)
    h = meta.model_dump_json().encode("utf-16")
    payload = b"SCF1" + len(h).to_bytes(4, "big") + h + b"\xff\xd8jpeg"
    with pytest.raises(ProtocolError) as e:
        decode_frame(payload, "cam-1")
    assert e.value.reason == "bad_json" and "UTF-8" in e.value.detail


def test_what_the_edge_agent_sends_passes_the_strict_contract(tmp_path: Path) -> None:
    """The demo day as the edge agent spools it (history and every scripted step),
    decoded as the hub decodes it off the wire."""
    site = load_site(REPO / "deploy" / "sites" / "demo.yaml")
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    cfg = demo_edge_config(site, Broker("127.0.0.1", 1), tmp_path, start=start)
    agent = EdgeAgent(cfg)
    assert agent.sim is not None
    emitted = agent.sim.history() + agent.sim.advance(start + timedelta(minutes=10))
    assert len(emitted) > 100
    for e in emitted:
        agent.emit(e)
    n = 0
    for d in cfg.devices:
        for s in agent.spool.pending(d.id, limit=100_000):
            t = parse_topic(s.topic)
            for decode in (decode_json, _decode):
                assert decode(t.kind, s.payload, t.device).seq == s.seq
            n += 1
    # The devices behind the demo's Zigbee2MQTT bridge: what it publishes is what the
    # hub's adapter translates without a rejection.
    adapters = Adapters.from_site(site)
    bridged = agent.spool.pending(BRIDGE_SPOOL_KEY, limit=100_000)
    assert bridged
    for s in bridged:
        tr = adapters.translate(s.topic, s.payload, start + timedelta(minutes=10))
        assert not tr.rejections and (tr.messages or tr.ignored), (s.topic, tr)
        n += 1
    agent.spool.close()
    assert n >= len([e for e in emitted if e.kind != "control"])
