"""Elderly-care and safety rules over the non-visual sensors, per care subject.

Pure and clocked by the data's own timestamps: ``on_message`` takes a validated
Telemetry/Event/Status and returns the alarms it causes; ``tick(now)`` evaluates the
deadlines (inactivity, no water, missed heartbeats) when no message arrives. Alarms
raised by a deadline carry the deadline as their timestamp, so a late tick or a
replay gives the same alarms to the second.

What the rules read (the edge simulators send exactly these):

* activity: ``motion``, ``door_open``, ``door_close``, ``water_flow`` events; telemetry
  ``motion``/``door`` > 0, ``water_l`` > 0 (litres since the previous reading) or a
  rising ``water_meter_l`` (cumulative meter, litres).
* water volume: ``water_flow`` events (``data.litres``), ``water_l`` readings, and
  ``water_meter_l`` deltas from meters that send no ``water_flow`` events.
* vitals: ``heart_rate``, ``spo2``, ``body_temp`` readings (ranges in rules.vitals).
* ``sos``, ``fall``, ``smoke``/``smoke_clear`` events; ``heartbeat`` and everything
  else count as a sign of life of the device.
* Status ``offline`` (retained, or the Last Will) / ``online``.

One device's or household's data cannot stop the rules for the others: every
device check and household check runs on its own, and one that raises is logged
with the device or household, counted (``on_problem``) and skipped. A device time
the rules cannot compute with (the year 9999 overflowed every deadline; the ingest
now rejects such times, ``hub.protocol.check_device_time``) is dropped from the
state when found, and from a restored snapshot before its first tick.

Dedup keys: ``sos:{subject}``, ``fall:{subject}``, ``smoke:{device}``,
``inactivity:{subject}``, ``water_none:{subject}``, ``water_excess:{subject}``,
``vitals:{subject}:{metric}``, ``offline:{device}`` (a device without a care subject
uses its device id in place of the subject).
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from hub.config import CareSubject, DeviceConfigEntry, Site
from hub.domain import Alarm, AlarmState, Category, Severity
from hub.grid.tree import GridTree
from hub.protocol import (
    DEFAULT_MAX_CLOCK_SKEW_S,
    TS_FLOOR,
    WATER_LITRE_KEYS,
    Event,
    EventType,
    Message,
    Status,
    Telemetry,
)
from hub.protocol import DeviceState as WireState
from hub.sensing.state import DeviceState, SubjectState, VitalsState
from hub.sensing.windows import inactivity_deadline

log = logging.getLogger(__name__)

ACTIVITY_EVENTS = frozenset(
    {EventType.MOTION, EventType.DOOR_OPEN, EventType.DOOR_CLOSE, EventType.WATER_FLOW}
)
ACTIVITY_SENSORS = frozenset({"pir", "door", "water"})  # their silence is the resident's
VITALS = ("heart_rate", "spo2", "body_temp")
VITALS_ZH = {"heart_rate": "心率", "spo2": "血氧", "body_temp": "体温"}
_LITRE_KEYS = WATER_LITRE_KEYS  # typed by the wire contract


def _litres(data: dict[str, Any]) -> float:
    for k in _LITRE_KEYS:
        v = data.get(k)
        if isinstance(v, int | float) and not isinstance(v, bool) and v > 0:
            return float(v)
    return 0.0


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


_T = TypeVar("_T")
# One log record per device or household and kind of problem in this many seconds:
# a check that keeps failing runs every tick.
PROBLEM_LOG_PERIOD_S = 60.0


class SensingEngine:
    def __init__(self, site: Site, tree: GridTree | None = None, watch_unseen: bool = False,
                 *, max_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S,
                 on_problem: Callable[[str, str], None] | None = None):
        """``watch_unseen``: also raise offline for devices never heard from, counted
        from the first data the engine sees. Off by default: a device that never
        connected cannot be told from one not installed yet, and its retained
        offline Status (Last Will) covers the usual case.

        ``max_skew_s``: how far past the hub's time a device time may lie (the
        ingest's bound). ``on_problem(kind, id)`` is told of every contained problem:
        ``device_failed`` / ``subject_failed`` (a check raised), ``future_ts_repaired``
        (state held an impossible time, dropped) and ``message_ignored`` (a message
        with an impossible time); ``problems`` counts them too."""
        self.max_skew = timedelta(seconds=max_skew_s)
        self.on_problem = on_problem
        self.problems: Tally[str] = Tally()
        self._logged: dict[tuple[str, str], float] = {}
        self._repair_due = False
        self.site = site
        self.tree = tree or GridTree.from_site(site)
        self.rules = site.rules
        self.tz = ZoneInfo(site.site.timezone)
        self.watch_unseen = watch_unseen
        self.devices: dict[str, DeviceState] = {}
        self.subjects: dict[str, SubjectState] = {}
        self.vitals: dict[str, VitalsState] = {}  # "subject:metric"
        self.started: datetime | None = None
        self._household: dict[str, list[DeviceConfigEntry]] = {}
        for d in site.devices:
            if d.subject:
                self._household.setdefault(d.subject, []).append(d)

    # ------------------------------------------------------------ entry points

    def on_message(self, msg: Message, received_at: datetime | None = None) -> list[Alarm]:
        """``received_at``: when the hub received it (hub time), for liveness; the
        message's own ``ts`` when not given (a replay of recorded data)."""
        dev = self.site.device(msg.device)
        if dev is None:
            return []  # ingest counts unknown devices; nothing to reason about here
        if received_at is not None and not self._plausible(msg.ts, received_at):
            # The ingest rejects these; any other path (a bridge) is bounded here.
            self._problem("message_ignored", "device", dev.id,
                          "message with an impossible device time ignored", ts=msg.ts.isoformat())
            return []
        self._start(msg.ts)
        heard = received_at or msg.ts
        ds = self._device(dev.id)
        if ds.last_heard is None or heard > ds.last_heard:
            ds.last_heard = heard
        out: list[Alarm] = []
        subject = self.site.subject(dev.subject) if dev.subject else None
        if subject is not None:
            st = self._subject(subject.id, msg.ts)
            # Deadlines that ran out before this message (no tick in between, or a
            # replay) fire first, at their own time. Should the household's check
            # fail, the message's own rules (an SOS) still run.
            out += self._contained("subject", subject.id, heard, self._check_subject,
                                   subject, st, msg.ts)
        if isinstance(msg, Status):
            out += self._on_status(dev, msg)
            return out
        out += self._seen(dev, msg.ts)
        if isinstance(msg, Event):
            out += self._on_event(dev, subject, msg)
        elif isinstance(msg, Telemetry):
            out += self._on_telemetry(dev, subject, msg)
        return out

    def seen(self, device_id: str, ts: datetime) -> list[Alarm]:
        """A sign of life that is not a JSON message (a camera frame)."""
        dev = self.site.device(device_id)
        if dev is None:
            return []
        self._start(ts)
        return self._seen(dev, ts)

    def tick(self, now: datetime) -> list[Alarm]:
        """Evaluate every deadline at ``now``. Devices first, so a sensor found
        offline in this tick already inhibits its household's inactivity alarm."""
        if now.tzinfo is None:
            raise ValueError("tick() needs an aware datetime")
        if self._repair_due:
            self._repair_due = False
            self.repair(now)
        self._start(now)
        out: list[Alarm] = []
        for dev in self.site.devices:
            out += self._contained("device", dev.id, now, self._check_device, dev, now)
        for s in self.site.care_subjects:
            st = self.subjects.get(s.id)
            if st is not None:
                out += self._contained("subject", s.id, now, self._check_subject, s, st, now)
        return out

    # ------------------------------------------------------------ containment

    def _plausible(self, ts: datetime, now: datetime) -> bool:
        return TS_FLOOR <= ts <= now + self.max_skew

    def _contained(self, scope: str, ident: str, now: datetime,
                   check: Callable[..., list[_T]], *args: Any) -> list[_T]:
        """``check(*args)``, or nothing when it raises: the failure is logged with
        the device or household, counted, and the state repaired of impossible
        times (the one cause known), so the other checks of this tick still run."""
        try:
            return check(*args)
        except Exception as e:  # noqa: BLE001 - one household must not stop the rest
            self._problem(f"{scope}_failed", scope, ident, "sensing check failed; skipped",
                          error=f"{type(e).__name__}: {e}"[:300], exc_info=True)
            self.repair(now)
            return []

    def _problem(self, kind: str, scope: str, ident: str, msg: str, *,
                 exc_info: bool = False, **extra: Any) -> None:
        self.problems[kind] += 1
        if self.on_problem is not None:
            try:
                self.on_problem(kind, ident)
            except Exception:  # noqa: BLE001 - a counter must not break a rule
                log.exception("sensing problem hook failed")
        key, t = (kind, ident), time.monotonic()
        if t - self._logged.get(key, -PROBLEM_LOG_PERIOD_S) >= PROBLEM_LOG_PERIOD_S:
            self._logged[key] = t
            level = logging.ERROR if kind.endswith("_failed") else logging.WARNING
            log.log(level, msg, exc_info=exc_info,
                    extra={scope: ident, "problem": kind, "count": self.problems[kind], **extra})

    def _repaired(self, scope: str, ident: str, dropped: list[str], limit: datetime) -> int:
        if not dropped:
            return 0
        self._problem("future_ts_repaired", scope, ident,
                      "sensing state held device times from the future or before"
                      " the floor; dropped them", fields=",".join(dropped),
                      bound=limit.isoformat())
        return 1

    def repair(self, now: datetime) -> int:
        """Drop every time in the state that is later than ``now`` plus the skew or
        before ``hub.protocol.TS_FLOOR``: no device can have sent it, and one such
        time overflows the deadlines computed from it (9999) or outranks all later
        data (a status from 2099). Returns how many devices and households changed;
        each is logged and counted as ``future_ts_repaired``."""
        limit = now + self.max_skew
        if self.started is not None and not TS_FLOOR <= self.started <= limit:
            self.started = None
        changed = 0
        for dev_id, ds in self.devices.items():
            offline_since = ds.offline_since
            dropped = _drop_impossible(ds, limit)
            if "status_ts" in dropped:
                ds.status_seq = -1
            if ds.offline and offline_since is not None and ds.offline_since is None:
                ds.offline_since = now  # so that the device's next data brings it back
            changed += self._repaired("device", dev_id, dropped, limit)
        for sid, st in self.subjects.items():
            dropped = _drop_impossible(st, limit)
            kept = [e for e in st.water_log
                    if not isinstance(e[0], datetime) or TS_FLOOR <= e[0] <= limit]
            if len(kept) != len(st.water_log):
                st.water_log = kept
                dropped.append("water_log")
            if "last_activity" in dropped:
                st.last_activity_device = None
            changed += self._repaired("subject", sid, dropped, limit)
        return changed

    # ------------------------------------------------------------ state

    def _start(self, ts: datetime) -> None:
        if self.started is None or ts < self.started:
            self.started = ts

    def _subject(self, sid: str, ts: datetime) -> SubjectState:
        st = self.subjects.get(sid)
        if st is None:
            st = self.subjects[sid] = SubjectState(baseline=ts)
        elif st.baseline is None or ts < st.baseline:
            st.baseline = ts
        return st

    def _device(self, device_id: str) -> DeviceState:
        return self.devices.setdefault(device_id, DeviceState())

    def snapshot(self) -> dict[str, Any]:
        return {
            "v": 1,
            "started": _iso(self.started),
            "devices": {k: v.to_json() for k, v in self.devices.items()},
            "subjects": {k: v.to_json() for k, v in self.subjects.items()},
            "vitals": {k: v.to_json() for k, v in self.vitals.items()},
        }

    def restore(self, snap: dict[str, Any]) -> None:
        if snap.get("v") != 1:
            raise ValueError(f"unknown sensing snapshot version {snap.get('v')!r}")
        self.started = datetime.fromisoformat(snap["started"]) if snap.get("started") else None
        self.devices = {k: DeviceState.from_json(v) for k, v in snap["devices"].items()}
        self.subjects = {k: SubjectState.from_json(v) for k, v in snap["subjects"].items()}
        self.vitals = {k: VitalsState.from_json(v) for k, v in snap["vitals"].items()}
        # A snapshot saved before device time was bounded may hold the year 9999; the
        # first tick (which knows the time) drops such times before any check runs.
        self._repair_due = True

    # ------------------------------------------------------------ alarms

    def _label(self, dev: DeviceConfigEntry | None, subject: CareSubject | None) -> str:
        if subject is not None:
            return f"{subject.address} {subject.name}"
        if dev is not None:
            return dev.location.label or dev.id
        return "?"

    def _alarm(
        self,
        rule: str,
        cat: Category,
        key: str,
        ts: datetime,
        title: str,
        dev: DeviceConfigEntry | None,
        subject: CareSubject | None,
        firing: bool = True,
        severity: Severity | None = None,
        **evidence: Any,
    ) -> Alarm:
        grid = subject.grid if subject is not None else (dev.grid if dev else None)
        return Alarm(
            rule=rule,
            category=cat,
            severity=severity or self.site.category(cat).severity,
            state=AlarmState.FIRING if firing else AlarmState.CLEARED,
            dedup_key=key,
            ts=ts,
            title=title,
            grid_code=grid,
            device_id=dev.id if dev else None,
            subject_id=subject.id if subject else None,
            evidence=evidence,
        )

    # ------------------------------------------------------------ presence

    def _offline_after(self, dev: DeviceConfigEntry) -> timedelta:
        return timedelta(seconds=dev.heartbeat_s * self.rules.offline.missed_heartbeats)

    def _seen(self, dev: DeviceConfigEntry, ts: datetime) -> list[Alarm]:
        ds = self._device(dev.id)
        if ds.last_seen is None or ts > ds.last_seen:
            ds.last_seen = ts
        if ds.disconnected_since is not None and ts > ds.disconnected_since:
            ds.disconnected_since = ds.disconnect_reason = None
        # Spooled data from before the device dropped out does not bring it back.
        if ds.offline and ds.offline_since is not None and ts > ds.offline_since:
            return self._back_online(dev, ds, ts)
        return []

    def _back_online(self, dev: DeviceConfigEntry, ds: DeviceState, ts: datetime) -> list[Alarm]:
        down_s = (ts - ds.offline_since).total_seconds() if ds.offline_since else None
        ds.offline = False
        ds.back_online_at = ts
        ds.offline_reason = None
        if dev.subject and dev.kind in ACTIVITY_SENSORS:
            # Give the spool time to replay what the sensor saw while it was away
            # before the household's inactivity can be judged again.
            st = self._subject(dev.subject, ts)
            grace = ts + self._offline_after(dev)
            st.resume_after = max(st.resume_after or grace, grace)
        subject = self.site.subject(dev.subject) if dev.subject else None
        log.info("device back online", extra={"device": dev.id, "offline_s": down_s})
        return [
            self._alarm(
                "offline", Category.DEVICE_OFFLINE, f"offline:{dev.id}", ts,
                f"{dev.location.label or dev.id} 设备离线", dev, subject, firing=False,
                back_online_at=ts.isoformat(), offline_s=down_s,
            )
        ]

    def _go_offline(
        self, dev: DeviceConfigEntry, ds: DeviceState, since: datetime, why: str
    ) -> list[Alarm]:
        ds.offline = True
        ds.offline_since = since
        ds.offline_reason = why
        subject = self.site.subject(dev.subject) if dev.subject else None
        log.info("device offline", extra={"device": dev.id, "reason": why})
        return [
            self._alarm(
                "offline", Category.DEVICE_OFFLINE, f"offline:{dev.id}", since,
                f"{dev.location.label or dev.id} 设备离线", dev, subject,
                last_seen=_iso(ds.last_seen), reason=why, heartbeat_s=dev.heartbeat_s,
                missed_heartbeats=self.rules.offline.missed_heartbeats, kind=dev.kind,
            )
        ]

    def _check_device(self, dev: DeviceConfigEntry, now: datetime) -> list[Alarm]:
        ds = self.devices.get(dev.id)
        if ds is None:
            if not self.watch_unseen or self.started is None:
                return []
            ds = self._device(dev.id)
        if ds.offline:
            return []
        if ds.disconnected_since is not None:
            # The grace runs from when the hub heard of it: a retained offline status
            # from a session long gone must still give the device time to come back.
            heard = ds.disconnect_heard or ds.disconnected_since
            if now >= heard + timedelta(seconds=dev.heartbeat_s):
                since, why = ds.disconnected_since, ds.disconnect_reason or "status"
                ds.disconnected_since = ds.disconnect_reason = None
                return self._go_offline(dev, ds, since, why)
        base = ds.last_heard or ds.last_seen or (self.started if self.watch_unseen else None)
        if base is None:
            return []
        deadline = base + self._offline_after(dev)
        if now >= deadline:
            return self._go_offline(dev, ds, deadline, "heartbeat")
        return []

    def _on_status(self, dev: DeviceConfigEntry, msg: Status) -> list[Alarm]:
        ds = self._device(dev.id)
        # Status messages are ordered by (ts, seq): a connection stamps its online
        # status and its Last Will with the same ts, the Will with the higher seq, so
        # the Will supersedes that connection's online and nothing older.
        if ds.status_ts is not None and (msg.ts, msg.seq) < (ds.status_ts, ds.status_seq):
            return []
        ds.status_ts, ds.status_seq = msg.ts, msg.seq
        if msg.state is WireState.ONLINE:
            return self._seen(dev, msg.ts)
        if ds.offline:
            return []
        # A Will carries its connection's start time; offline counts from last seen.
        since = max(msg.ts, ds.last_seen) if ds.last_seen else msg.ts
        ds.disconnected_since, ds.disconnect_reason = since, msg.reason or "status"
        ds.disconnect_heard = ds.last_heard
        return []

    # ------------------------------------------------------------ events

    def _on_event(
        self, dev: DeviceConfigEntry, subject: CareSubject | None, msg: Event
    ) -> list[Alarm]:
        t = msg.type
        who = subject.id if subject else dev.id
        label = self._label(dev, subject)
        if t in ACTIVITY_EVENTS and subject is not None:
            litres = _litres(msg.data) if t is EventType.WATER_FLOW else 0.0
            if t is EventType.WATER_FLOW:
                self._device(dev.id).flow_events = True
            return self._activity(dev, subject, msg.ts, water=t is EventType.WATER_FLOW,
                                  litres=litres)
        if t is EventType.SOS:
            return [self._alarm(
                "sos", Category.SOS, f"sos:{who}", msg.ts, f"{label} 紧急呼叫", dev, subject,
                pressed_at=msg.ts.isoformat(), device_kind=dev.kind, data=_scalars(msg.data),
            )]
        if t is EventType.FALL:
            return [self._alarm(
                "wearable_fall", Category.FALL, f"fall:{who}", msg.ts, f"{label} 手环检测到跌倒",
                dev, subject, source="wearable", data=_scalars(msg.data),
            )]
        if t in (EventType.SMOKE, EventType.SMOKE_CLEAR):
            return self._smoke(dev, subject, msg.ts, t is EventType.SMOKE, msg.data)
        return []

    def _smoke(
        self,
        dev: DeviceConfigEntry,
        subject: CareSubject | None,
        ts: datetime,
        on: bool,
        data: dict[str, Any],
    ) -> list[Alarm]:
        ds = self._device(dev.id)
        if not on and not ds.smoke:
            return []
        ds.smoke = on
        title = f"{self._label(dev, subject)} 烟感报警"
        return [self._alarm(
            "smoke", Category.SMOKE, f"smoke:{dev.id}", ts, title, dev, subject, firing=on,
            location=dev.location.label, data=_scalars(data),
        )]

    # ------------------------------------------------------------ telemetry

    def _on_telemetry(
        self, dev: DeviceConfigEntry, subject: CareSubject | None, msg: Telemetry
    ) -> list[Alarm]:
        out: list[Alarm] = []
        ds = self._device(dev.id)
        for r in msg.readings:
            m, v = r.metric, r.value
            if subject is not None and m in ("motion", "door") and v > 0:
                out += self._activity(dev, subject, msg.ts)
            elif subject is not None and m == "water_l" and v > 0:
                out += self._activity(dev, subject, msg.ts, water=True, litres=v)
            elif m == "water_meter_l":
                prev, ds.meter_total = ds.meter_total, v
                if subject is not None and prev is not None and v > prev:
                    # Flow events already counted this water; the meter only proves use.
                    litres = 0.0 if ds.flow_events else v - prev
                    out += self._activity(dev, subject, msg.ts, water=True, litres=litres)
            elif m == "smoke" and (v > 0) != ds.smoke:
                out += self._smoke(dev, subject, msg.ts, v > 0, {})
            elif m in VITALS:
                out += self._vital(dev, subject, m, v, msg.ts)
        return out

    def _vital(
        self,
        dev: DeviceConfigEntry,
        subject: CareSubject | None,
        metric: str,
        value: float,
        ts: datetime,
    ) -> list[Alarm]:
        lo, hi = getattr(self.rules.vitals, metric)
        n = self.rules.vitals.consecutive
        who = subject.id if subject else dev.id
        key = f"{who}:{metric}"
        vs = self.vitals.setdefault(key, VitalsState())
        label = f"{self._label(dev, subject)} {VITALS_ZH[metric]}异常"
        if not lo <= value <= hi:
            vs.out_run += 1
            vs.in_run = 0
            vs.recent = (vs.recent + [value])[-n:]
            if vs.out_run >= n and not vs.firing:
                vs.firing = True
                return [self._alarm(
                    "vitals", Category.VITALS, f"vitals:{key}", ts,
                    f"{label}（连续{n}次超出{lo:g}-{hi:g}）", dev, subject,
                    metric=metric, readings=list(vs.recent), low=lo, high=hi, consecutive=n,
                )]
            return []
        vs.in_run += 1
        vs.out_run = 0
        vs.recent = []
        # As many good readings to clear as bad ones to fire: a flapping sensor
        # does not flap the incident.
        if vs.firing and vs.in_run >= n:
            vs.firing = False
            return [self._alarm(
                "vitals", Category.VITALS, f"vitals:{key}", ts, label, dev, subject,
                firing=False, metric=metric, value=value, low=lo, high=hi,
            )]
        return []

    # ------------------------------------------------------------ the household

    def _windows(self, s: CareSubject) -> tuple[float, float]:
        r = self.rules.inactivity
        return (s.inactivity_day_s or r.day_window_s, s.inactivity_night_s or r.night_window_s)

    def _activity(
        self,
        dev: DeviceConfigEntry,
        subject: CareSubject,
        ts: datetime,
        water: bool = False,
        litres: float = 0.0,
    ) -> list[Alarm]:
        st = self._subject(subject.id, ts)
        out: list[Alarm] = []
        label = self._label(dev, subject)
        if st.last_activity is None or ts >= st.last_activity:
            st.last_activity = ts
            st.last_activity_device = dev.id
            if st.inactive:
                st.inactive = False
                out.append(self._alarm(
                    "inactivity", Category.INACTIVITY, f"inactivity:{subject.id}", ts,
                    f"{label} 恢复活动", dev, subject, firing=False,
                    activity_at=ts.isoformat(), activity_device=dev.id,
                ))
        if water:
            if st.last_water is None or ts >= st.last_water:
                st.last_water = ts
                if st.water_none:
                    st.water_none = False
                    out.append(self._alarm(
                        "water", Category.WATER, f"water_none:{subject.id}", ts,
                        f"{label} 恢复用水", dev, subject, firing=False, water_at=ts.isoformat(),
                    ))
            if litres > 0:
                st.water_log.append([ts, litres])
                out += self._check_excess(subject, st, ts, dev)
        return out

    def _check_excess(
        self, s: CareSubject, st: SubjectState, now: datetime, dev: DeviceConfigEntry | None
    ) -> list[Alarm]:
        if s.usual_water_l_per_day is None:
            st.water_log = []
            return []
        w = self.rules.water
        since = now - timedelta(seconds=w.excess_window_s)
        st.water_log = [e for e in st.water_log if e[0] > since]
        used = sum(e[1] for e in st.water_log)
        limit = w.excess_factor * s.usual_water_l_per_day * w.excess_window_s / 86400
        label = self._label(dev, s)
        hours = w.excess_window_s / 3600
        if used > limit and not st.water_excess:
            st.water_excess = True
            return [self._alarm(
                "water", Category.WATER, f"water_excess:{s.id}", now,
                f"{label} 用水量异常偏高（{hours:g}小时{used:.0f}升）", dev, s,
                kind="excess", litres=round(used, 1), limit_litres=round(limit, 1),
                window_s=w.excess_window_s, usual_l_per_day=s.usual_water_l_per_day,
            )]
        if used <= limit and st.water_excess:
            st.water_excess = False
            return [self._alarm(
                "water", Category.WATER, f"water_excess:{s.id}", now, f"{label} 用水量恢复正常",
                dev, s, firing=False, kind="excess", litres=round(used, 1),
                limit_litres=round(limit, 1),
            )]
        return []

    def _offline_sensors(self, sid: str, kinds: Iterable[str]) -> list[str]:
        kinds = set(kinds)
        return [
            d.id
            for d in self._household.get(sid, [])
            if d.kind in kinds and (ds := self.devices.get(d.id)) is not None
            and (ds.offline or ds.disconnected_since is not None)
        ]

    def _data_now(self, sid: str, now: datetime) -> datetime | None:
        """How far the household's own data vouches for time having passed.

        Deadlines are judged on data time, not on the hub's clock alone: while a
        spool or a recording replays hours of a household's past, its newest data is
        hours old and its deadlines must not fire yet. Heartbeats keep a live
        household's data time within one offline period of now; a household whose
        sensors fall silent is covered by their offline alarms instead.
        """
        newest: datetime | None = None
        slack = timedelta(0)
        for d in self._household.get(sid, []):
            ds = self.devices.get(d.id)
            if ds is not None and ds.last_seen is not None:
                newest = ds.last_seen if newest is None else max(newest, ds.last_seen)
            slack = max(slack, self._offline_after(d))
        return None if newest is None else min(now, newest + slack)

    def _check_subject(self, s: CareSubject, st: SubjectState, now: datetime) -> list[Alarm]:
        out: list[Alarm] = []
        data_now = self._data_now(s.id, now)
        if data_now is None:
            return out
        now = data_now
        label = self._label(None, s)
        inact = self.rules.inactivity
        base = st.last_activity or st.baseline
        if not st.inactive and base is not None:
            day_s, night_s = self._windows(s)
            due, window = inactivity_deadline(
                base, day_s, night_s, inact.day_start, inact.night_start, self.tz
            )
            if st.resume_after is not None and st.resume_after > due:
                due = st.resume_after
            # An offline sensor cannot see the resident: its own maintenance alarm
            # stands in for the inactivity alarm it would otherwise cause.
            if now >= due and not self._offline_sensors(s.id, ACTIVITY_SENSORS):
                st.inactive = True
                st.inactive_since = due
                hours = (due - base).total_seconds() / 3600
                out.append(self._alarm(
                    "inactivity", Category.INACTIVITY, f"inactivity:{s.id}", due,
                    f"{label} {hours:.1f}小时无活动", None, s,
                    last_activity_at=_iso(st.last_activity),
                    last_activity_device=st.last_activity_device,
                    monitoring_since=_iso(st.baseline),
                    hours_without_activity=round(hours, 2),
                    window=window, window_s=day_s if window == "day" else night_s,
                ))
        w = self.rules.water
        wbase = st.last_water or st.baseline
        if not st.water_none and wbase is not None:
            due = wbase + timedelta(seconds=w.none_window_s)
            if st.resume_after is not None and st.resume_after > due:
                due = st.resume_after
            # Only a meter we have heard from can vouch that no water was used.
            watched = self._heard(s.id, "water") and not self._offline_sensors(s.id, {"water"})
            if now >= due and watched:
                st.water_none = True
                hours = (due - wbase).total_seconds() / 3600
                out.append(self._alarm(
                    "water", Category.WATER, f"water_none:{s.id}", due,
                    f"{label} {hours:.0f}小时未用水", None, s, kind="none",
                    last_water_at=_iso(st.last_water), hours_without_water=round(hours, 2),
                    window_s=w.none_window_s,
                ))
        if st.water_excess:
            out += self._check_excess(s, st, now, None)
        return out

    def _heard(self, sid: str, kind: str) -> bool:
        return any(d.kind == kind and d.id in self.devices for d in self._household.get(sid, []))


def _drop_impossible(state: DeviceState | SubjectState, limit: datetime) -> list[str]:
    """Set each datetime field later than ``limit`` or before the floor to None;
    returns the names of those fields."""
    dropped = []
    for f in fields(state):
        v = getattr(state, f.name)
        if isinstance(v, datetime) and not TS_FLOOR <= v <= limit:
            setattr(state, f.name, None)
            dropped.append(f.name)
    return dropped


def _scalars(data: dict[str, Any]) -> dict[str, Any]:
    """Event data worth keeping as evidence (small scalars only)."""
    return {
        k: v for k, v in list(data.items())[:10]
        if isinstance(v, str | int | float | bool) and (not isinstance(v, str) or len(v) <= 200)
    }
