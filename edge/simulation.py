"""Simulated sensors of the demo households, driven by resident models and scenarios.

Pure: :class:`Simulation` is asked for what the devices emit up to a data time and
returns :class:`Emission` values in time order; it never reads the clock and does no
I/O. The agent turns emissions into wire messages (with seq numbers) and spools them.

What each kind emits:

==========  ==================================================================
pir         ``motion`` events when it sees the resident (at most one per 30 s)
door        ``door_open`` / ``door_close`` when the resident goes out or comes back
water       ``water_flow`` events (``data.litres``) and ``water_meter_l`` telemetry
            (cumulative, litres) every 5 min
smoke       ``smoke_density`` telemetry (dB/m) every minute; ``smoke`` /
            ``smoke_clear`` events
wearable    ``heart_rate`` (bpm), ``spo2`` (%), ``body_temp`` (°C) every 15 s;
            ``fall`` events
sos         ``sos`` events
leak        ``water_leak`` / ``water_leak_clear`` events when a scenario says so
all         ``heartbeat`` events every ``heartbeat_s`` (live only, not in history);
            ``battery`` telemetry (%) and ``tamper`` / ``tamper_clear`` events when
            a scenario says so
==========  ==================================================================

Devices the agent publishes through its Zigbee2MQTT bridge emit the same; the
bridge (edge/zigbee2mqtt.py) turns them into its state messages.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from edge.config import DeviceSpec, EdgeConfig
from edge.resident import TICK_S, Act, Resident
from edge.scenario import Scenario, ScenarioError, Step, resolve_at

PIR_COOLDOWN_S = 30.0
DOOR_CLOSE_AFTER_S = 6.0
HISTORY_MIN_PERIOD_S = 300.0  # history is replayed sparser: it only has to be plausible
TELEMETRY_PERIOD_S = {"water": 300.0, "smoke": 60.0, "wearable": 15.0}
SMOKE_BASELINE = 0.02  # dB/m, clean air
SMOKE_ALARM = 0.35


@dataclass(frozen=True, slots=True)
class Emission:
    """One thing a device sends. ``kind`` is ``telemetry`` (``readings``), ``event``
    (``event`` is an EventType value, ``data``) or ``control`` (``event`` is
    ``offline`` or ``online``: the device drops or restores its connection)."""

    ts: datetime
    device: str
    kind: str
    readings: tuple[tuple[str, float, str | None], ...] = ()
    event: str = ""
    data: dict[str, Any] = field(default_factory=dict, hash=False)


def _rng(*parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in parts))


class DeviceSim:
    def __init__(self, spec: DeviceSpec, seed: int, start: datetime) -> None:
        self.spec = spec
        self.seed = seed
        self.offline = False
        self.period = TELEMETRY_PERIOD_S.get(spec.kind)
        self.next_tel = start
        self.next_hb = start + timedelta(seconds=spec.heartbeat_s)
        self.last_motion: datetime | None = None
        self.meter = round(_rng(seed, spec.id, "meter").uniform(800, 3000), 1)
        self.smoke: float | None = None  # density while the alarm is on
        self.vitals: dict[str, tuple[float, datetime | None]] = {}

    @property
    def id(self) -> str:
        return self.spec.id

    def event(self, ts: datetime, type_: str, **data: Any) -> Emission:
        return Emission(ts, self.id, "event", event=type_, data=data)

    def telemetry(self, ts: datetime, state: str) -> Emission | None:
        r = _rng(self.seed, self.id, int(ts.timestamp()))
        k = self.spec.kind
        if k == "water":
            return Emission(ts, self.id, "telemetry", (("water_meter_l", self.meter, "L"),))
        if k == "smoke":
            v = self.smoke if self.smoke is not None else SMOKE_BASELINE
            v = round(max(0.0, v + r.gauss(0, 0.003)), 4)
            return Emission(ts, self.id, "telemetry", (("smoke_density", v, "dB/m"),))
        if k == "wearable":
            hr = {"asleep": 58.0, "still": 64.0}.get(state, 74.0) + r.gauss(0, 4)
            spo2 = min(100.0, 97.0 + r.gauss(0, 0.8))
            temp = 36.6 + r.gauss(0, 0.15)
            vals = {"heart_rate": hr, "spo2": spo2, "body_temp": temp}
            for metric, (value, until) in list(self.vitals.items()):
                if until is not None and ts >= until:
                    del self.vitals[metric]
                    continue
                vals[metric] = value + r.gauss(0, abs(value) * 0.01)
            units = {"heart_rate": "bpm", "spo2": "%", "body_temp": "°C"}
            return Emission(ts, self.id, "telemetry", tuple(
                (m, round(v, 1), units.get(m)) for m, v in vals.items()))
        return None


class Simulation:
    """All devices of one edge agent, from ``start`` (data time) on."""

    def __init__(self, cfg: EdgeConfig, scenario: Scenario | None, start: datetime,
                 tz: tzinfo) -> None:
        if start.tzinfo is None:
            raise ValueError("start must carry a timezone")
        self.cfg = cfg
        self.scenario = scenario or Scenario()
        self.start = start
        self.t = start
        self.tz = tz
        seed = self.scenario.seed if self.scenario.seed is not None else cfg.seed
        self.seed = seed
        self.residents = {h.id: Resident(h.id, tz, seed) for h in cfg.households}
        self._addr = {h.address: h.id for h in cfg.households if h.address}
        self.devices = {d.id: DeviceSim(d, seed, start) for d in cfg.devices}
        self._by_house: dict[str, list[DeviceSim]] = {}
        for d in self.devices.values():
            if d.spec.subject:
                self._by_house.setdefault(d.spec.subject, []).append(d)
        self._order = itertools.count()
        self._steps: list[tuple[datetime, int, Step]] = []
        self._pending: list[tuple[datetime, int, Emission]] = []
        for i, s in enumerate(self.scenario.steps):
            self._check_step(i, s)
            heapq.heappush(self._steps, (resolve_at(s.at, start, tz), next(self._order), s))

    # ------------------------------------------------------------ references

    def household(self, ref: str) -> str:
        if ref in self.residents:
            return ref
        if ref in self._addr:
            return self._addr[ref]
        known = sorted(self._addr) or sorted(self.residents)
        raise ScenarioError(f"unknown household {ref!r} (known: {known})")

    def _device_for(self, step: Step, kind: str | None) -> DeviceSim:
        if step.device:
            d = self.devices.get(step.device)
            if d is None:
                raise ScenarioError(f"step {step.action!r}: unknown device {step.device!r}")
            return d
        hid = self.household(step.household or "")
        for d in self._by_house.get(hid, []):
            if d.spec.kind == kind:
                return d
        raise ScenarioError(
            f"step {step.action!r}: household {step.household!r} has no {kind} device")

    _KIND = {"sos": "sos", "smoke": "smoke", "smoke_clear": "smoke", "fall": "wearable",
             "vitals": "wearable", "door": "door", "water_use": "water",
             "offline": None, "online": None, "battery": None, "tamper": None,
             "tamper_clear": None, "leak": "leak", "leak_clear": "leak"}

    def _check_step(self, i: int, s: Step) -> None:
        try:
            if s.action in ("stop_moving", "resume", "no_water"):
                if s.household is None:
                    raise ScenarioError(f"step {s.action!r} needs a household")
                self.household(s.household)
            elif s.action in ("offline", "online", "battery", "tamper", "tamper_clear") \
                    and s.device is None:
                raise ScenarioError(f"step {s.action!r} needs a device")
            else:
                self._device_for(s, self._KIND.get(s.action))
        except ScenarioError as e:
            raise ScenarioError(f"steps.{i}: {e}") from None

    # ------------------------------------------------------------ running

    def history(self) -> list[Emission]:
        """The scenario's history phase: the past readings of its households, ending
        at ``start``, in time order. Call once, before :meth:`advance`."""
        out: list[Emission] = []
        for h in self.scenario.history:
            hid = self.household(h.household)
            res = self.residents[hid]
            t0 = self.start - timedelta(hours=h.hours)
            devs = self._by_house.get(hid, [])
            if h.inactive_for is not None:
                last = self.start - timedelta(seconds=h.inactive_for)
                res.stop_moving(last)
                # The last sign of life happened exactly then: make it a motion.
                for d in devs:
                    if d.spec.kind == "pir":
                        self._push(d.event(last, "motion", forced=True))
            if h.no_water_for is not None:
                res.stop_water(self.start - timedelta(seconds=h.no_water_for))
            for d in devs:
                d.next_tel = t0
                d.last_motion = None
            out.extend(self._generate(t0, self.start, devs, {hid: res}, history=True))
            for d in devs:
                d.next_tel = self.start
        out.sort(key=lambda e: e.ts)
        return out

    def advance(self, to: datetime) -> list[Emission]:
        """Everything emitted in (last call, ``to``], in time order."""
        out: list[Emission] = []
        devs = list(self.devices.values())
        while self._steps and self._steps[0][0] <= to:
            ts, _, step = heapq.heappop(self._steps)
            if ts > self.t:
                out.extend(self._generate(self.t, ts, devs, self.residents))
                self.t = ts
            out.extend(self._apply(step, ts))
        if to > self.t:
            out.extend(self._generate(self.t, to, devs, self.residents))
            self.t = to
        return out

    def next_step_at(self) -> datetime | None:
        return self._steps[0][0] if self._steps else None

    def _push(self, e: Emission) -> None:
        heapq.heappush(self._pending, (e.ts, next(self._order), e))

    def _generate(self, a: datetime, b: datetime, devs: Iterable[DeviceSim],
                  residents: dict[str, Resident], history: bool = False) -> list[Emission]:
        """Emissions in (a, b], walking the resident tick grid so that a reading
        reflects what happened before it (the water meter counts earlier use)."""
        out: list[Emission] = []
        devs = list(devs)
        t = a
        while t < b:
            k = math.floor(t.timestamp() / TICK_S) + 1
            c1 = min(b, datetime.fromtimestamp(k * TICK_S, tz=a.tzinfo))
            self._dues(c1, devs, history, out)
            for hid, res in residents.items():
                for act in res.acts(t, c1):
                    out.extend(self._react(hid, act))
            t = c1
        ids = {d.id for d in devs}
        keep: list[tuple[datetime, int, Emission]] = []
        while self._pending and self._pending[0][0] <= b:
            item = heapq.heappop(self._pending)
            if item[2].device not in ids:
                keep.append(item)
            elif not self.devices[item[2].device].offline:
                out.append(item[2])
        for item in keep:
            heapq.heappush(self._pending, item)
        out.sort(key=lambda e: e.ts)
        return out

    def _dues(self, upto: datetime, devs: list[DeviceSim], history: bool,
              out: list[Emission]) -> None:
        """Periodic telemetry and heartbeats due at or before ``upto``."""
        for d in devs:
            if d.period is not None:
                period = max(d.period, HISTORY_MIN_PERIOD_S) if history else d.period
                while d.next_tel <= upto:
                    if not d.offline:
                        res = self.residents.get(d.spec.subject or "")
                        e = d.telemetry(d.next_tel, res.state(d.next_tel) if res else "active")
                        if e:
                            out.append(e)
                    d.next_tel += timedelta(seconds=period)
            if not history:
                while d.next_hb <= upto:
                    if not d.offline:
                        out.append(d.event(d.next_hb, "heartbeat"))
                    d.next_hb += timedelta(seconds=d.spec.heartbeat_s)

    def _react(self, hid: str, act: Act) -> list[Emission]:
        out: list[Emission] = []
        for d in self._by_house.get(hid, []):
            if d.offline:
                continue
            k = d.spec.kind
            if k == "pir" and act.what in ("motion", "leave", "return"):
                last = d.last_motion
                if last is None or (act.ts - last).total_seconds() >= PIR_COOLDOWN_S:
                    d.last_motion = act.ts
                    out.append(d.event(act.ts, "motion"))
            elif k == "door" and act.what in ("leave", "return"):
                out.append(d.event(act.ts, "door_open"))
                self._push(d.event(act.ts + timedelta(seconds=DOOR_CLOSE_AFTER_S), "door_close"))
            elif k == "water" and act.what == "water":
                d.meter = round(d.meter + act.litres, 1)
                out.append(d.event(act.ts, "water_flow", litres=act.litres))
        return out

    def _apply(self, step: Step, ts: datetime) -> list[Emission]:
        a = step.action
        until = ts + timedelta(seconds=step.for_s) if step.for_s else None
        if a in ("stop_moving", "resume", "no_water"):
            res = self.residents[self.household(step.household or "")]
            if a == "stop_moving":
                res.stop_moving(ts, until)
            elif a == "no_water":
                res.stop_water(ts, until)
            else:
                res.resume(ts)
            return []
        d = self._device_for(step, self._KIND.get(a))
        if a == "offline":
            if d.offline:
                return []
            d.offline = True
            if until:
                self._later(until, Step(at="", action="online", device=d.id))
            return [Emission(ts, d.id, "control", event="offline")]
        if a == "online":
            if not d.offline:
                return []
            d.offline = False
            return [Emission(ts, d.id, "control", event="online")]
        if d.offline:
            return []  # a stopped device reports nothing
        if a == "sos":
            return [d.event(ts, "sos", button="pressed", **step.data)]
        if a == "smoke":
            d.smoke = step.value if step.value is not None else SMOKE_ALARM
            if until:
                self._later(until, Step(at="", action="smoke_clear", device=d.id))
            return [d.event(ts, "smoke", density=d.smoke, **step.data),
                    Emission(ts, d.id, "telemetry", (("smoke_density", d.smoke, "dB/m"),))]
        if a == "smoke_clear":
            if d.smoke is None:
                return []
            d.smoke = None
            return [d.event(ts, "smoke_clear", density=SMOKE_BASELINE, **step.data)]
        if a == "fall":
            return [d.event(ts, "fall", impact_g=step.value or 3.2, **step.data)]
        if a == "vitals":
            assert step.metric is not None and step.value is not None
            d.vitals[step.metric] = (step.value, until)
            return []
        if a == "door":
            self._push(d.event(ts + timedelta(seconds=DOOR_CLOSE_AFTER_S), "door_close"))
            return [d.event(ts, "door_open", **step.data)]
        if a == "battery":
            assert step.value is not None
            return [Emission(ts, d.id, "telemetry", (("battery", float(step.value), "%"),))]
        if a == "tamper":
            if until:
                self._later(until, Step(at="", action="tamper_clear", device=d.id))
            return [d.event(ts, "tamper", **step.data)]
        if a == "tamper_clear":
            return [d.event(ts, "tamper_clear", **step.data)]
        if a == "leak":
            if until:
                self._later(until, Step(at="", action="leak_clear", device=d.id))
            return [d.event(ts, "water_leak", **step.data)]
        if a == "leak_clear":
            return [d.event(ts, "water_leak_clear", **step.data)]
        if a == "water_use":
            litres = float(step.value or 0)
            d.meter = round(d.meter + litres, 1)
            return [d.event(ts, "water_flow", litres=litres, **step.data)]
        raise ScenarioError(f"unknown action {a!r}")  # pragma: no cover - Literal guards it

    def _later(self, ts: datetime, step: Step) -> None:
        heapq.heappush(self._steps, (ts, next(self._order), step))
