"""Zigbee2MQTT: the bridge most compounds' off-the-shelf Zigbee sensors (Aqara,
Xiaomi, Tuya) reach MQTT through, translated into the wire contract.

Topics (``base_topic`` per bridge, ``zigbee2mqtt`` by default)::

    <base>/<friendly_name>               the device's state, JSON, every key each time
    <base>/<friendly_name>/availability  retained; {"state":"online"|"offline"}, or
                                         the legacy plain online / offline
    <base>/bridge/state                  retained; the bridge's own state: offline
                                         takes each of its devices offline
    <base>/bridge/...                    the bridge's other topics: ignored
    <base>/<friendly_name>/set, /get...  commands to the device: ignored

A friendly name may hold "/" (Zigbee2MQTT structures topics so); the site file maps
each friendly name to a device id. What a state message becomes:

* numbers (``battery`` %, ``linkquality`` LQI 0-255, ``voltage`` mV, ``temperature``,
  ``humidity``, ``illuminance``, ...) and the booleans below as 0/1: one Telemetry;
* a *change* of ``occupancy`` to true: a ``motion`` event; of ``contact`` (true =
  closed): ``door_close`` / ``door_open``; of ``water_leak``, ``smoke``, ``tamper``:
  ``water_leak`` / ``water_leak_clear``, ``smoke`` / ``smoke_clear``, ``tamper`` /
  ``tamper_clear``. Zigbee2MQTT repeats the whole state in every message, so a repeat
  is no event;
* availability: a Status online / offline.

The first state seen of a device after the hub starts has nothing to compare with:
``water_leak``, ``smoke`` and ``tamper`` then say their state (a leak that began
while the hub was down is raised; a clear of nothing changes nothing), ``occupancy``
true is motion (Zigbee2MQTT clears it a minute or two after the last), and
``contact`` says nothing: a door that is simply closed is no sign of life.

Time and order: Zigbee2MQTT sends neither. ``ts`` is ``last_seen`` when the bridge
is configured to send it (``advanced.last_seen: ISO_8601``, ``ISO_8601_local`` or
``epoch``), bounded like every device time (``hub.protocol.check_device_time``), and
otherwise the hub's receive time. ``seq`` is derived from ``ts`` and the payload
(:func:`hub.ingest.adapters.base.derived_seq`). With ``last_seen`` a redelivered
message gets the same ts and seq and is stored once; without it a message
redelivered after the hub crashed between commit and acknowledgement is stored a
second time at its new receive time (docs/configuration.md).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from hub.config import Zigbee2MQTTAdapter
from hub.ingest.adapters.base import IGNORED, Rejection, Translation, derived_seq, rejected
from hub.protocol import (
    DEFAULT_MAX_CLOCK_SKEW_S,
    MAX_JSON_BYTES,
    MAX_READINGS,
    DeviceState,
    Event,
    EventType,
    Message,
    ProtocolError,
    Reading,
    Status,
    Telemetry,
    check_device_time,
)

AVAILABILITY = "availability"
BRIDGE_STATE = "bridge/state"
SOURCE = "zigbee2mqtt"


class _Switch:
    """A boolean of Zigbee2MQTT's state that becomes events when it changes."""

    __slots__ = ("key", "on_true", "on_false", "part", "at_start")

    def __init__(self, key: str, on_true: EventType | None, on_false: EventType | None,
                 part: int, at_start: tuple[bool, ...]) -> None:
        self.key = key
        self.on_true = on_true
        self.on_false = on_false
        self.part = part  # fixed per switch: every hub process derives the same seq
        self.at_start = at_start  # values that say something with nothing to compare

    def event(self, value: bool) -> EventType | None:
        return self.on_true if value else self.on_false


SWITCHES = {s.key: s for s in (
    _Switch("occupancy", EventType.MOTION, None, 1, (True,)),
    _Switch("contact", EventType.DOOR_CLOSE, EventType.DOOR_OPEN, 2, ()),
    _Switch("water_leak", EventType.WATER_LEAK, EventType.WATER_LEAK_CLEAR, 3, (True, False)),
    _Switch("smoke", EventType.SMOKE, EventType.SMOKE_CLEAR, 4, (True, False)),
    _Switch("tamper", EventType.TAMPER, EventType.TAMPER_CLEAR, 5, (True, False)),
)}
# Booleans kept as 0/1 readings only.
FLAGS = frozenset({"battery_low"})

# Numbers with a documented range and unit (Zigbee2MQTT's exposes); others pass as
# any finite number without a unit.
_Range = tuple[float | None, float | None, str | None]
NUMBERS: dict[str, _Range] = {
    "battery": (0, 100, "%"),
    "linkquality": (0, 255, "lqi"),
    "voltage": (0, 100_000, "mV"),
    "temperature": (-80, 150, "°C"),
    "device_temperature": (-80, 150, "°C"),
    "humidity": (0, 100, "%"),
    "pressure": (0, 2000, "hPa"),
    "illuminance": (0, None, "lx"),
    "illuminance_lux": (0, None, "lx"),
    "power_outage_count": (0, None, None),
    "smoke_density": (0, None, None),
}
# Keys that are no reading: the time (see the module docstring) and milliseconds
# since the previous message (advanced.elapsed).
NOT_READINGS = frozenset({"last_seen", "elapsed"})
_METRIC = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _online_or_offline(payload: bytes) -> DeviceState:
    """An availability or bridge state: JSON {"state": ...} or the legacy plain word."""
    text = payload.strip()
    if text in (b"online", b"offline"):
        return DeviceState(text.decode())
    state = _json_object(payload).get("state")
    if state not in ("online", "offline"):
        raise _Refused("invalid", "availability must be online or offline, or"
                                  f' {{"state": "online"|"offline"}}; got {_show(state)}')
    return DeviceState(state)


def _json_object(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_JSON_BYTES:
        raise _Refused("oversized", f"{len(payload)} bytes > {MAX_JSON_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Refused("bad_json", f"payload is not UTF-8 (offset {e.start})") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise _Refused("bad_json", f"payload is not JSON: {str(e)[:120]}") from None
    if not isinstance(obj, dict):
        raise _Refused("invalid", f"payload is a JSON {type(obj).__name__}, expected an object")
    return obj


def _number(key: str, v: object) -> float:
    """``v`` as a finite float within ``key``'s documented range, or _Refused."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _Refused("invalid", f"{key} must be a JSON number, got {_show(v)}")
    try:
        x = float(v)
    except OverflowError:
        raise _Refused("invalid", f"{key} is too large for a number") from None
    if not math.isfinite(x):
        raise _Refused("invalid", f"{key} is {x}: numbers must be finite")
    lo, hi, _ = NUMBERS.get(key, (None, None, None))
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        allowed = (f"{lo:g} to {hi:g}" if lo is not None and hi is not None
                   else f"at least {lo:g}" if lo is not None else f"at most {hi:g}")
        raise _Refused("invalid", f"{key} = {x:g} is outside its range ({allowed})")
    return x


def _show(v: object) -> str:
    return repr(v)[:40]


def _last_seen(v: object) -> datetime:
    """Zigbee2MQTT's ``last_seen``: an ISO 8601 time with a zone, or milliseconds
    since 1970 (``epoch``)."""
    if isinstance(v, str):
        try:
            ts = datetime.fromisoformat(v)
        except ValueError:
            raise _Refused("invalid", f"last_seen {_show(v)} is not an ISO 8601 time") from None
        if ts.tzinfo is None:
            raise _Refused("invalid", f"last_seen {_show(v)} has no zone")
        return ts
    if isinstance(v, int | float) and not isinstance(v, bool):
        try:
            return datetime.fromtimestamp(float(v) / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise _Refused("ts_future" if v > 0 else "ts_past",
                           f"last_seen {_show(v)} ms is no time a clock can show") from None
    raise _Refused("invalid", f"last_seen must be a string or a number, got {_show(v)}")


class Zigbee2MQTT:
    """The adapter of one bridge (one ``adapters:`` entry of kind zigbee2mqtt)."""

    def __init__(self, config: Zigbee2MQTTAdapter, *,
                 max_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S) -> None:
        self.config = config
        self.name = f"zigbee2mqtt:{config.base_topic}"
        self.base = config.base_topic
        self._prefix = self.base + "/"
        self._devices: dict[str, str] = dict(config.devices)
        self.max_skew_s = max_skew_s
        # device id -> the last value of each switch: only changes become events.
        self._state: dict[str, dict[str, bool]] = {}

    def subscriptions(self) -> list[str]:
        return [f"{self.base}/#"]

    def owns(self, topic: str) -> bool:
        return topic.startswith(self._prefix)

    # ------------------------------------------------------------ routing

    def _route(self, rest: str) -> tuple[str, str] | None:
        """(friendly name, sub-topic) of a topic below the base, or None when no
        mapped friendly name starts it. Friendly names may hold "/": the longest
        mapped one wins."""
        if rest in self._devices:
            return rest, ""
        cut = rest.rfind("/")
        while cut > 0:
            if rest[:cut] in self._devices:
                return rest[:cut], rest[cut + 1:]
            cut = rest.rfind("/", 0, cut)
        return None

    def translate(self, topic: str, payload: bytes, received_at: datetime) -> Translation:
        if not self.owns(topic):
            return rejected("bad_topic", f"topic {topic[:120]!r} is not under {self._prefix}")
        rest = topic[len(self._prefix):]
        if rest == BRIDGE_STATE:
            try:
                return self._bridge_state(payload, received_at)
            except _Refused as e:
                return rejected(e.reason, e.detail)
        if rest == "bridge" or rest.startswith("bridge/"):
            return IGNORED
        route = self._route(rest)
        if route is None:
            name = rest[: -len(AVAILABILITY) - 1] if rest.endswith("/" + AVAILABILITY) else rest
            return rejected("unknown_device", f"friendly name {name[:64]!r} is not among this"
                                              f" site's {self.name} devices")
        name, sub = route
        device = self._devices[name]
        if not payload:
            return IGNORED  # Zigbee2MQTT clearing a retained message
        try:
            if sub == AVAILABILITY:
                return self._availability(device, payload, received_at)
            if sub:
                return IGNORED  # a command topic (set, get) or a sub-topic of its own
            return self._state_message(device, payload, received_at)
        except _Refused as e:
            return rejected(e.reason, e.detail, device)

    # ------------------------------------------------------------ availability

    def _availability(self, device: str, payload: bytes, rx: datetime) -> Translation:
        msg = Status(device=device, seq=derived_seq(rx, payload), ts=rx,
                     state=_online_or_offline(payload), reason=f"{SOURCE} availability")
        return Translation(messages=(msg,))

    def _bridge_state(self, payload: bytes, rx: datetime) -> Translation:
        """The bridge's own state (retained; its last will says offline). While the
        bridge is away none of its sensors can report, so each of them is offline,
        which the sensing rules read as a fault, not as a resident gone still. Back
        online says nothing of any one device: each reports itself again."""
        if not payload or _online_or_offline(payload) is DeviceState.ONLINE:
            return IGNORED
        reason = f"{SOURCE} bridge {self.base} offline"
        seq = derived_seq(rx, payload)  # per device: each gets the one message once
        msgs = tuple(Status(device=d, seq=seq, ts=rx, state=DeviceState.OFFLINE,
                            reason=reason)
                     for d in sorted(set(self._devices.values())))
        return Translation(messages=msgs)

    # ------------------------------------------------------------ state

    def _state_message(self, device: str, payload: bytes, rx: datetime) -> Translation:
        obj = _json_object(payload)
        ts = rx
        if "last_seen" in obj:
            ts = _last_seen(obj["last_seen"])
            try:
                check_device_time(ts, rx, self.max_skew_s)
            except ProtocolError as e:
                raise _Refused(e.reason, "last_seen: " + e.detail) from None
        refused: list[Rejection] = []
        readings: list[Reading] = []
        bad_names: list[str] = []
        switches: dict[str, bool] = {}
        for key, v in obj.items():
            if key in NOT_READINGS:
                continue
            if key in SWITCHES or key in FLAGS:
                if not isinstance(v, bool):
                    refused.append(Rejection("invalid", f"{key} must be a JSON boolean (true or"
                                                        f" false), got {_show(v)}", device))
                    continue
                if key in SWITCHES:
                    switches[key] = v
                readings.append(Reading(metric=key, value=float(v)))
                continue
            if isinstance(v, bool) or not (key in NUMBERS or isinstance(v, int | float)):
                continue  # text, lists, objects: nothing the hub reads
            try:
                x = _number(key, v)
            except _Refused as e:
                refused.append(Rejection(e.reason, e.detail, device))
                continue
            if not _METRIC.match(key):
                bad_names.append(key)
                continue
            readings.append(Reading(metric=key, value=x, unit=NUMBERS.get(key, (0, 0, None))[2]))
        if bad_names:
            refused.append(Rejection("invalid", f"{len(bad_names)} number(s) named outside"
                                                f" [a-z][a-z0-9_]: {bad_names[:5]}", device))
        if len(readings) > MAX_READINGS:
            refused.append(Rejection("invalid", f"{len(readings)} readings, kept the first"
                                                f" {MAX_READINGS}", device))
            readings = readings[:MAX_READINGS]
        messages: list[Message] = []
        try:
            if readings:
                messages.append(Telemetry(device=device, seq=derived_seq(ts, payload), ts=ts,
                                          readings=readings))
            messages.extend(self._changes(device, switches, ts, payload))
        except ValidationError as e:  # what the checks above let through, never guessed at
            raise _Refused("invalid", str(e.errors()[0]["msg"])[:200]) from None
        self._state.setdefault(device, {}).update(switches)
        return Translation(messages=tuple(messages), rejections=tuple(refused))

    def _changes(self, device: str, switches: dict[str, bool], ts: datetime,
                 payload: bytes) -> list[Event]:
        before = self._state.get(device, {})
        out = []
        for key, value in switches.items():
            sw = SWITCHES[key]
            prev = before.get(key)
            if prev == value or (prev is None and value not in sw.at_start):
                continue
            kind = sw.event(value)
            if kind is not None:
                out.append(Event(device=device, seq=derived_seq(ts, payload, sw.part), ts=ts,
                                 type=kind, data={"source": SOURCE}))
        return out
