"""Inactivity: no sign of the resident inside a window (day and night windows in the
site's local time, ``hub.sensing.windows``).

Activity is ``motion``, ``door_open``, ``door_close`` and ``water_flow`` events;
telemetry ``motion``/``door`` > 0, ``water_l`` > 0, or a rising ``water_meter_l``.
An offline or disconnected activity sensor cannot see the resident: while one is
down, the alarm is not raised (the sensor's own maintenance alarm stands in for it),
and after it comes back the household gets the replay grace before it is judged. An
activity sensor with an open health problem (battery low, weak link, tamper) still
counts: the alarm is raised, naming the sensor and its problem in the title and in
``sensor_problems``, for the operator to doubt.

Dedup key: ``inactivity:{subject}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.config import CareSubject, DeviceConfigEntry
from hub.domain import Alarm, Category
from hub.protocol import Event, EventType, Telemetry
from hub.sensing.base import (
    Incoming,
    Repair,
    SensingContext,
    iso,
    label,
    make_alarm,
    repair_states,
)
from hub.sensing.household import ACTIVITY_SENSORS, data_now, down_sensors, resume_after
from hub.sensing.rules.household_watch import HouseholdWatchRule
from hub.sensing.state import Jsonable
from hub.sensing.windows import inactivity_deadline

ACTIVITY_EVENTS = frozenset(
    {EventType.MOTION, EventType.DOOR_OPEN, EventType.DOOR_CLOSE, EventType.WATER_FLOW}
)


@dataclass(slots=True)
class ActivityState(Jsonable):
    baseline: datetime | None = None  # first data from the household: monitoring starts
    last_activity: datetime | None = None
    last_activity_device: str | None = None
    inactive: bool = False  # inactivity alarm firing
    inactive_since: datetime | None = None


class InactivityRule(HouseholdWatchRule[ActivityState]):
    name = "inactivity"

    state_type = ActivityState

    def __init__(self, ctx: SensingContext) -> None:
        super().__init__(ctx)
        self.meters: dict[str, float] = {}  # device -> last cumulative meter (litres)

    # ------------------------------------------------------------ messages

    def on_message(self, m: Incoming) -> list[Alarm]:
        subject = m.subject
        if subject is None:
            return []
        st = self._state(subject.id, m.ts)
        # A deadline that ran out before this message (no tick in between, or a
        # replay) fires first, at its own time.
        out = self.ctx.contained("subject", subject.id, m.heard, self.check, subject, m.ts)
        if self._is_activity(m):
            out += self._activity(m, st)
        return out

    def _is_activity(self, m: Incoming) -> bool:
        msg = m.msg
        if isinstance(msg, Event):
            return msg.type in ACTIVITY_EVENTS
        if not isinstance(msg, Telemetry):
            return False
        active = False
        for r in msg.readings:
            if r.metric in ("motion", "door", "water_l") and r.value > 0:
                active = True
            elif r.metric == "water_meter_l":
                prev, self.meters[m.device.id] = self.meters.get(m.device.id), r.value
                active |= prev is not None and r.value > prev
        return active

    def _activity(self, m: Incoming, st: ActivityState) -> list[Alarm]:
        ts, dev, subject = m.ts, m.device, m.subject
        if st.last_activity is not None and ts < st.last_activity:
            return []
        st.last_activity = ts
        st.last_activity_device = dev.id
        if not st.inactive:
            return []
        st.inactive = False
        return [make_alarm(
            self.ctx.site, "inactivity", Category.INACTIVITY, f"inactivity:{subject.id}", ts,
            f"{label(dev, subject)} 恢复活动", dev, subject, firing=False,
            activity_at=ts.isoformat(), activity_device=dev.id,
        )]

    # ------------------------------------------------------------ deadlines

    def _windows(self, s: CareSubject) -> tuple[float, float]:
        r = self.ctx.rules.inactivity
        return (s.inactivity_day_s or r.day_window_s, s.inactivity_night_s or r.night_window_s)

    def check(self, s: CareSubject, now: datetime) -> list[Alarm]:
        st = self.subjects.get(s.id)
        if st is None or st.inactive:
            return []
        base = st.last_activity or st.baseline
        if base is None:
            return []
        inact = self.ctx.rules.inactivity
        day_s, night_s = self._windows(s)
        due, window = inactivity_deadline(
            base, day_s, night_s, inact.day_start, inact.night_start, self.ctx.tz
        )
        grace = resume_after(self.ctx, s.id)
        if grace is not None and grace > due:
            due = grace
        if now < due:  # the household's data time is never later than now
            return []
        at = data_now(self.ctx, s.id, now)
        # An offline sensor cannot see the resident: its own maintenance alarm
        # stands in for the inactivity alarm it would otherwise cause.
        if at is None or at < due or down_sensors(self.ctx, s.id, ACTIVITY_SENSORS):
            return []
        st.inactive = True
        st.inactive_since = due
        hours = (due - base).total_seconds() / 3600
        # A faulty sensor (a low battery, an opened case) may have missed the
        # resident: the alarm is raised all the same, since she may be in trouble,
        # but it says which sensors to doubt.
        faulty = self._faulty_sensors(s.id)
        title = f"{label(None, s)} {hours:.1f}小时无活动"
        if faulty:
            title += "（传感器待检修：" + "；".join(
                f"{d.location.label or d.id} "
                + "、".join(self.ctx.site.category(c).name_zh for c in cats)
                for d, cats in faulty) + "）"
        return [make_alarm(
            self.ctx.site, "inactivity", Category.INACTIVITY, f"inactivity:{s.id}", due,
            title, None, s,
            last_activity_at=iso(st.last_activity),
            last_activity_device=st.last_activity_device,
            monitoring_since=iso(st.baseline),
            hours_without_activity=round(hours, 2),
            window=window, window_s=day_s if window == "day" else night_s,
            **({"sensor_problems": {d.id: cats for d, cats in faulty}} if faulty else {}),
        )]

    def _faulty_sensors(self, sid: str) -> list[tuple[DeviceConfigEntry, list[str]]]:
        return [(d, cats) for d in self.ctx.household(sid)
                if d.kind in ACTIVITY_SENSORS and (cats := self.ctx.device_problems(d.id))]

    # ------------------------------------------------------------ memory

    def snapshot(self) -> dict[str, Any]:
        return {"subjects": {k: v.to_json() for k, v in self.subjects.items()},
                "meters": dict(self.meters)}

    def restore(self, state: dict[str, Any]) -> None:
        self.subjects = {k: ActivityState.from_json(v)
                         for k, v in state.get("subjects", {}).items()}
        self.meters = {k: float(v) for k, v in state.get("meters", {}).items()}

    def repair(self, limit: datetime, now: datetime) -> list[Repair]:
        out = repair_states("subject", self.subjects, limit)
        for r in out:
            if "last_activity" in r.fields:
                self.subjects[r.ident].last_activity_device = None
        return out
