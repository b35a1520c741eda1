"""The wire contract between edge agents and the hub (MQTT), version 1.

Topics::

    sc/v1/{site}/{device}/telemetry   JSON Telemetry, QoS 1
    sc/v1/{site}/{device}/event       JSON Event, QoS 1
    sc/v1/{site}/{device}/frame       frame envelope (header + JPEG), QoS 0, latest wins
    sc/v1/{site}/{device}/status      JSON Status, retained; the offline one is the Last Will
    sc/v1/{site}/{device}/config      JSON DeviceConfig, retained, hub -> device
    sc/v1/{site}/{device}/alarm       JSON AlarmMessage, QoS 1, detector -> alert workers
    sc/v1/alerts/{grid_code}          JSON AlertNotification, QoS 1, hub -> grid workers
    sc/v1/control/{site}/{device}/rebaseline  JSON RebaselineRequest, QoS 1, hub -> vision worker

Every device message carries the device's own timestamp (``ts``) and a per-device
sequence number (``seq``); the store is idempotent on (device, seq).

The contract is strict: JSON is UTF-8 without a byte-order mark; ``seq``, ``v``,
frame ``width``/``height`` are JSON integers and reading ``value``s and ``motion``
JSON numbers (never strings or booleans); ``ts`` is an RFC 3339 string with a zone
and a "T" (``2026-11-22T09:00:00+08:00``), never seconds since 1970; unknown keys
are refused. A message that breaks it is rejected, counted by reason, never guessed at.
The edge imports this module too, so it must stay free of hub-only dependencies.
"""

from __future__ import annotations

import codecs
import enum
import hashlib
import math
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

VERSION = 1
ROOT = f"sc/v{VERSION}"
MAX_JSON_BYTES = 64 * 1024
MAX_FRAME_BYTES = 2 * 1024 * 1024
MAX_READINGS = 100
ALERTS_SEGMENT = "alerts"
CONTROL_SEGMENT = "control"

# Site and device ids become topic levels: keep them to a safe alphabet so that
# they can never contain MQTT wildcards or separators.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)
Ident = Annotated[str, Field(pattern=ID_PATTERN)]


class Kind(enum.StrEnum):
    TELEMETRY = "telemetry"
    EVENT = "event"
    FRAME = "frame"
    STATUS = "status"
    CONFIG = "config"
    ALARM = "alarm"


QOS = {Kind.TELEMETRY: 1, Kind.EVENT: 1, Kind.FRAME: 0, Kind.STATUS: 1, Kind.CONFIG: 1,
       Kind.ALARM: 1}


class ProtocolError(ValueError):
    """A message that breaks the contract. ``reason`` is a short stable label used
    for counters (``bad_topic``, ``bad_json``, ``invalid``, ``oversized``,
    ``device_mismatch``, ``bad_frame``, ``unknown_device``, ``ts_future``,
    ``ts_past``); ``detail`` says what is wrong and where."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------- device time

# No device of this system sent data before 2020: a time before it is a clock that
# was never set (a dead RTC battery restarts at 1970, or 2000) or seconds misread.
TS_FLOOR = datetime(2020, 1, 1, tzinfo=UTC)
# How far ahead of the hub's clock a device's clock may run (HUB_MAX_CLOCK_SKEW_S).
DEFAULT_MAX_CLOCK_SKEW_S = 300.0


def check_device_time(ts: datetime, now: datetime,
                      max_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S,
                      floor: datetime = TS_FLOOR) -> None:
    """Refuse a device timestamp that cannot be true: later than the hub's ``now``
    plus ``max_skew_s`` (``ts_future``) or before ``floor`` (``ts_past``).

    The rules run on device time, so one such timestamp would poison them: a time
    in the year 9999 overflowed every deadline computed from it, and a status from
    2099 outranked every later one. Old data within the floor is fine (a spool
    replaying a week). Comparing aware datetimes never overflows, whatever the
    offsets, so this is safe on any timestamp pydantic accepted."""
    if ts > now + timedelta(seconds=max_skew_s):
        ahead = (ts - now).total_seconds()
        raise ProtocolError("ts_future", f"ts {ts.isoformat()} is {ahead:.0f} s ahead of the"
                                         f" hub's clock (at most {max_skew_s:g} s allowed)")
    if ts < floor:
        raise ProtocolError("ts_past", f"ts {ts.isoformat()} is before {floor.date()}: the"
                                       " device's clock is not set")


# ---------------------------------------------------------------- topics


@dataclass(frozen=True, slots=True)
class Topic:
    site: str
    device: str
    kind: Kind

    def __str__(self) -> str:
        return f"{ROOT}/{self.site}/{self.device}/{self.kind.value}"


def topic(site: str, device: str, kind: Kind | str) -> str:
    k = Kind(kind)
    for name, value in (("site", site), ("device", device)):
        if not _ID_RE.match(value):
            raise ProtocolError("bad_topic", f"{name} id {value!r} does not match {ID_PATTERN}")
    return f"{ROOT}/{site}/{device}/{k.value}"


def alerts_topic(grid_code: str) -> str:
    return f"{ROOT}/{ALERTS_SEGMENT}/{grid_code}"


def control_topic(site: str, device: str, command: str) -> str:
    """Hub -> hub commands about one device (``rebaseline``: an operator accepts a
    camera's view as its empty lane), for the vision worker that owns the camera.
    Outside the devices' ``{site}/{device}`` tree: no device may write here."""
    for name, value in (("site", site), ("device", device), ("command", command)):
        if not _ID_RE.match(value):
            raise ProtocolError("bad_topic", f"{name} {value!r} does not match {ID_PATTERN}")
    return f"{ROOT}/{CONTROL_SEGMENT}/{site}/{device}/{command}"


def subscription(kind: Kind | str, site: str = "+", shared_group: str | None = None) -> str:
    """Topic filter for one kind; with ``shared_group`` an MQTT 5 shared subscription
    so several hub processes split the messages between them."""
    f = f"{ROOT}/{site}/+/{Kind(kind).value}"
    return f"$share/{shared_group}/{f}" if shared_group else f


def parse_topic(name: str) -> Topic:
    parts = name.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != ROOT:
        raise ProtocolError("bad_topic", f"topic {name!r} is not {ROOT}/<site>/<device>/<kind>")
    _, _, site, device, kind = parts
    if not _ID_RE.match(site) or not _ID_RE.match(device):
        raise ProtocolError("bad_topic", f"topic {name!r} has an invalid site or device id")
    try:
        return Topic(site, device, Kind(kind))
    except ValueError:
        raise ProtocolError("bad_topic", f"topic {name!r}: unknown kind {kind!r}") from None


# ---------------------------------------------------------------- payloads


# The wire is strict (issue 11): a device that sends "1" for a number, true for 1 or
# seconds since 1970 for a time did not mean what lax parsing would make of it.
# Numbers are strict (an integer still counts as a float), and a time is an RFC 3339
# string with a zone and a "T", or a datetime when the model is built in Python.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339(v: object) -> object:
    if isinstance(v, datetime) or (isinstance(v, str) and _RFC3339.match(v)):
        return v
    raise ValueError("must be an RFC 3339 date-time string with a zone, "
                     "e.g. 2026-11-22T09:00:00+08:00")


def _not_bool(v: object) -> object:
    # Literal[1] takes true (True == 1) even in strict mode.
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError("must be the integer 1")
    return v


WireTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
Version = Annotated[Literal[1], BeforeValidator(_not_bool)]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Version = 1
    device: Ident
    seq: int = Field(ge=0, lt=2**63, strict=True)
    ts: WireTime  # the device's own clock, with a zone


class Reading(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    value: float = Field(allow_inf_nan=False, strict=True)
    unit: Annotated[str, Field(max_length=16)] | None = None


class Telemetry(_Msg):
    """Periodic sensor readings (1 to MAX_READINGS per message)."""

    readings: Annotated[list[Reading], Field(min_length=1, max_length=MAX_READINGS)]


class EventType(enum.StrEnum):
    SOS = "sos"  # SOS button pressed
    SMOKE = "smoke"  # smoke detector alarm
    SMOKE_CLEAR = "smoke_clear"
    MOTION = "motion"  # PIR saw motion
    DOOR_OPEN = "door_open"
    DOOR_CLOSE = "door_close"
    WATER_FLOW = "water_flow"  # water meter saw use (data: litres)
    FALL = "fall"  # a wearable's own fall detection
    WATER_LEAK = "water_leak"  # a leak sensor is wet
    WATER_LEAK_CLEAR = "water_leak_clear"
    TAMPER = "tamper"  # a sensor's case was opened or it was pulled off its mount
    TAMPER_CLEAR = "tamper_clear"
    HEARTBEAT = "heartbeat"
    CAMERA_HEALTH = "camera_health"  # data: {"healthy": bool, "reason": str}


# Keys of a water_flow event's data that say how many litres were drawn (the
# sensing rules read the first one present).
WATER_LITRE_KEYS = ("litres", "liters", "l", "volume_l")


def _finite_numbers(data: dict[str, Any]) -> None:
    """Refuse NaN and +-Infinity anywhere in ``data``: they are not JSON (RFC 8259),
    though pydantic's parser takes the literals and turns 1e999 into inf, and
    PostgreSQL refuses them in the stored event."""
    stack: list[tuple[str, Any]] = [("data", data)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{where} is {v}: numbers must be finite (NaN and Infinity"
                             " are not JSON)")
        if isinstance(v, dict):
            stack.extend((f"{where}.{k}", x) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((f"{where}.{i}", x) for i, x in enumerate(v))


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class Event(_Msg):
    type: EventType
    # Free-form, except for the keys the hub reads (see _typed_data).
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("data")
    @classmethod
    def _typed_data(cls, data: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # Strict like the rest of the contract: a device that sends "false" for a
        # boolean or "5" for litres did not mean what a lax reading makes of it
        # (bool("false") is True).
        _finite_numbers(data)
        kind = info.data.get("type")
        if kind is EventType.CAMERA_HEALTH:
            if "healthy" in data and not isinstance(data["healthy"], bool):
                raise ValueError("data.healthy must be a JSON boolean (true or false)")
            if "reason" in data and not isinstance(data["reason"], str):
                raise ValueError("data.reason must be a string")
        elif kind is EventType.WATER_FLOW:
            for k in WATER_LITRE_KEYS:
                if k in data and not (_is_number(data[k]) and data[k] >= 0):
                    raise ValueError(f"data.{k} must be a number of litres, 0 or more")
        return data


class DeviceState(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class Status(_Msg):
    """Retained presence. The broker publishes the offline one as the Last Will, so
    its ``seq`` and ``ts`` are those of the moment the agent connected."""

    state: DeviceState
    reason: Annotated[str, Field(max_length=200)] | None = None


class FrameMeta(_Msg):
    width: int = Field(gt=0, le=8192, strict=True)
    height: int = Field(gt=0, le=8192, strict=True)
    encoding: Literal["jpeg"] = "jpeg"
    # Share of pixels the edge saw change.
    motion: float = Field(default=1.0, ge=0.0, le=1.0, strict=True)


class Zone(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Ident
    kind: Literal["fire_lane", "no_fall", "watch"] = "fire_lane"
    polygon: Annotated[list[tuple[float, float]], Field(min_length=3)]


# The longest a live-view boost may run past the moment the device reads it: a boost
# whose ``until`` lies further ahead (a hub clock far ahead of the camera's) is cut to
# this, so a boost always ends by itself when the hub stops renewing it.
MAX_BOOST_S = 300.0


class LiveBoost(BaseModel):
    """While someone watches the camera live: a steadier stream until ``until``
    (the hub renews it while watched; the agent goes back to the settings around it
    by itself once it has passed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fps: float = Field(gt=0, le=30, strict=True)
    gate: bool = Field(default=False, strict=True)  # the motion gate during the boost
    until: WireTime


class DeviceConfig(BaseModel):
    """Retained hub -> device settings (zones, frame rate, thresholds). A field left
    out (None) keeps the device's own setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Version = 1
    fps: float | None = Field(default=None, gt=0, le=30, strict=True)
    jpeg_quality: int | None = Field(default=None, ge=10, le=100, strict=True)
    max_width: int | None = Field(default=None, gt=0, le=8192, strict=True)
    # The motion gate: false sends every frame the frame rate lets through.
    gate: bool | None = Field(default=None, strict=True)
    live: LiveBoost | None = None
    zones: list[Zone] = Field(default_factory=list, max_length=64)
    thresholds: dict[str, float] = Field(default_factory=dict, max_length=64)


class RebaselineRequest(BaseModel):
    """An operator's "this is the empty lane now" for a camera, from the API to the
    vision worker that owns it (not retained: a worker that starts later keeps the
    stored reference)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Version = 1
    device: Ident
    request_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    by: Annotated[str, Field(min_length=1, max_length=64)]
    ts: WireTime  # the hub's time of the request


def decode_rebaseline(payload: bytes, device: str) -> RebaselineRequest:
    return _decode_model(RebaselineRequest, payload, device, what="rebaseline request",
                         prefix="rebaseline request: ", noun="request")


def decode_config(payload: bytes) -> DeviceConfig:
    """Parse a retained ``config`` message (strict; ProtocolError when it breaks the
    contract). An empty payload is a cleared retained message: no settings."""
    if len(payload) > MAX_JSON_BYTES:
        raise ProtocolError("oversized", f"{len(payload)} bytes > {MAX_JSON_BYTES}")
    if not payload:
        return DeviceConfig()
    _utf8(payload, "config")
    try:
        return DeviceConfig.model_validate_json(payload)
    except ValidationError as e:
        raise _refused(e, "config: ") from None


class AlertNotification(BaseModel):
    """Hub -> grid workers' apps on ``sc/v1/alerts/{grid_code}``."""

    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = 1
    incident_id: int
    grid_code: str
    category: str
    severity: str
    state: str
    title: str
    ts: datetime
    level: int = 0  # escalation level: 0 = grid worker, 1 = grid leader, ...
    reason: str = "new"  # new | update | escalated | transition | cleared | summary
    url: str | None = None


# ---------------------------------------------------------------- alarms
# The durable alarm inlet (hub.alarmwire): a detector anywhere - a vision worker, an
# edge agent running detection, a camera's push receiver - publishes the Alarm it
# raised on its device's ``alarm`` topic; alert workers apply it and acknowledge it
# after the incident transaction committed. ``id`` is the alarm's identity
# (:func:`alarm_key`), the key the store records it under, so a redelivery or a
# repeated publish is applied once.

MAX_EVIDENCE_KEYS = 100  # keys at all depths of an alarm's evidence
MAX_EVIDENCE_DEPTH = 6
_ALARM_NAME = r"^[a-z][a-z0-9_]{0,39}$"
_GRID_CODE = r"^\d{6}(\d{3}(\d{3}(\d{2}(\d{2})?)?)?)?$"


def alarm_key(rule: str, dedup_key: str, state: str, severity: int, ts: datetime) -> str:
    """What makes two deliveries the same alarm: the rule, the thing it is about, its
    state, severity and the data's own timestamp."""
    key = "|".join((rule, dedup_key, state, str(int(severity)), ts.isoformat()))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class AlarmMessage(BaseModel):
    """One ``Alarm`` (hub.domain) on the wire. ``device`` is the device the alarm is
    about and must be the topic's; every other identity field is checked against
    the site file by the inlet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Version = 1
    id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    device: Ident
    rule: Annotated[str, Field(pattern=_ALARM_NAME)]
    category: Annotated[str, Field(pattern=_ALARM_NAME)]
    severity: Literal["info", "minor", "major", "critical"]
    state: Literal["firing", "cleared"]
    dedup_key: Annotated[str, Field(min_length=1, max_length=500)]
    ts: WireTime
    title: Annotated[str, Field(min_length=1, max_length=200)]
    grid_code: Annotated[str, Field(pattern=_GRID_CODE)] | None = None
    subject_id: Ident | None = None
    zone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    confidence: float = Field(default=1.0, ge=0.0, le=1.0, strict=True)
    evidence: dict[str, Any] = Field(default_factory=dict)
    evidence_image: Annotated[str, Field(min_length=1, max_length=300)] | None = None

    @field_validator("evidence")
    @classmethod
    def _bounded(cls, evidence: dict[str, Any]) -> dict[str, Any]:
        _finite_numbers(evidence)
        keys = 0
        stack: list[tuple[Any, int]] = [(evidence, 1)]
        while stack:
            v, depth = stack.pop()
            if depth > MAX_EVIDENCE_DEPTH:
                raise ValueError(f"evidence nests deeper than {MAX_EVIDENCE_DEPTH} levels")
            if isinstance(v, dict):
                keys += len(v)
                stack.extend((x, depth + 1) for x in v.values())
            elif isinstance(v, list):
                keys += len(v)
                stack.extend((x, depth + 1) for x in v)
            if keys > MAX_EVIDENCE_KEYS:
                raise ValueError(f"evidence has more than {MAX_EVIDENCE_KEYS} keys and items")
        return evidence


def decode_alarm(payload: bytes, device: str | None = None) -> AlarmMessage:
    """Parse and validate an alarm payload, strictly; with ``device`` (the topic's)
    the payload's must match it, and ``id`` must be the alarm's own key."""
    msg = _decode_model(AlarmMessage, payload, device)
    sev = ("info", "minor", "major", "critical").index(msg.severity) + 1
    expected = alarm_key(msg.rule, msg.dedup_key, msg.state, sev, msg.ts)
    if msg.id != expected:
        raise ProtocolError("bad_id", f"id {msg.id} is not the alarm's key ({expected}: rule,"
                                      " dedup_key, state, severity and ts)")
    return msg


_MODELS: dict[Kind, type[_Msg]] = {
    Kind.TELEMETRY: Telemetry,
    Kind.EVENT: Event,
    Kind.STATUS: Status,
}

Message = Telemetry | Event | Status


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(p) for p in e["loc"]) or "<root>"
        parts.append(f"{where}: {e['msg']}")
    more = err.error_count() - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _utf8(payload: bytes, what: str) -> None:
    """JSON on the wire is UTF-8 without a byte-order mark (RFC 8259 section 8.1).
    ``json.loads`` would guess UTF-16 or UTF-32 from the first bytes; a device that
    sends those is misconfigured, and its text is not what it meant."""
    if payload.startswith(codecs.BOM_UTF8):
        raise ProtocolError("bad_json", f"{what} starts with a byte-order mark; JSON on the"
                                        " wire is UTF-8 without one")
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(
            "bad_json", f"{what} is not UTF-8 (byte 0x{payload[e.start]:02x} at offset"
                        f" {e.start}); JSON on the wire is UTF-8") from None


def _refused(err: ValidationError, what: str = "") -> ProtocolError:
    first = err.errors()[0]
    if first["type"] == "json_invalid":
        return ProtocolError("bad_json", what + first["msg"])
    if first["type"] == "model_type" and not first["loc"]:
        kind = {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
                type(None): "null"}.get(type(first.get("input")), "value")
        return ProtocolError("invalid", f"{what}payload is a JSON {kind}, expected an object")
    return ProtocolError("invalid", what + _describe(err))


_Device = TypeVar("_Device", bound="_Msg | AlarmMessage | RebaselineRequest")


def _decode_model(model: type[_Device], payload: bytes, device: str | None,
                  what: str = "payload", prefix: str = "", noun: str = "payload") -> _Device:
    """The strict JSON receive step every device message takes: bounded, UTF-8,
    validated in one pass, and the payload's ``device`` the topic's when given."""
    if len(payload) > MAX_JSON_BYTES:
        raise ProtocolError("oversized", f"{len(payload)} bytes > {MAX_JSON_BYTES}")
    _utf8(payload, what)
    try:
        msg = model.model_validate_json(payload)
    except ValidationError as e:
        raise _refused(e, prefix) from None
    if device is not None and msg.device != device:
        raise ProtocolError(
            "device_mismatch", f"{noun} device {msg.device!r} != topic device {device!r}")
    return msg


def decode_json(kind: Kind, payload: bytes, device: str | None = None) -> Message:
    """Parse and validate a JSON payload of ``kind``, strictly (see ``_Msg``). When
    ``device`` (from the topic) is given the payload's ``device`` must match it.

    One pass: pydantic parses and validates the JSON together (about half the cost
    of ``json.loads`` then validation); this is the ingest's receive step. Its
    parser also refuses a lone UTF-16 surrogate escape ("\\ud800"), which is not
    text and which no database stores."""
    model = _MODELS.get(kind)
    if model is None:
        raise ProtocolError("bad_topic", f"{kind.value} is not a JSON message kind")
    return _decode_model(model, payload, device)  # type: ignore[return-value]


def encode(msg: BaseModel) -> bytes:
    return msg.model_dump_json(exclude_none=True).encode()


# ---------------------------------------------------------------- frames
# A frame travels as: MAGIC (4 bytes) | header length (uint32 big-endian) |
# FrameMeta JSON | JPEG bytes. A header inside the payload works on every broker
# (MQTT 3.1.1 bridges drop MQTT 5 user properties).

FRAME_MAGIC = b"SCF1"
_HDR = struct.Struct(">4sI")


def encode_frame(meta: FrameMeta, jpeg: bytes) -> bytes:
    head = meta.model_dump_json().encode()
    return _HDR.pack(FRAME_MAGIC, len(head)) + head + jpeg


def decode_frame(payload: bytes, device: str | None = None) -> tuple[FrameMeta, bytes]:
    if len(payload) > MAX_FRAME_BYTES:
        raise ProtocolError("oversized", f"frame of {len(payload)} bytes > {MAX_FRAME_BYTES}")
    if len(payload) < _HDR.size:
        raise ProtocolError("bad_frame", f"frame of {len(payload)} bytes has no header")
    magic, n = _HDR.unpack_from(payload)
    if magic != FRAME_MAGIC:
        raise ProtocolError("bad_frame", f"frame header magic {magic!r} != {FRAME_MAGIC!r}")
    if n > MAX_JSON_BYTES or _HDR.size + n > len(payload):
        raise ProtocolError("bad_frame", f"frame header length {n} runs past the payload")
    head = payload[_HDR.size : _HDR.size + n]
    _utf8(head, "frame header")
    try:
        meta = FrameMeta.model_validate_json(head)
    except ValidationError as e:
        raise ProtocolError("invalid", "frame header: " + _describe(e)) from None
    jpeg = payload[_HDR.size + n :]
    if not jpeg.startswith(b"\xff\xd8"):
        raise ProtocolError("bad_frame", "frame body is not a JPEG (no SOI marker)")
    if device is not None and meta.device != device:
        raise ProtocolError(
            "device_mismatch", f"frame device {meta.device!r} != topic device {device!r}"
        )
    return meta, jpeg
