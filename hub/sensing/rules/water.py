"""Abnormal water use of a household: none at all inside a window (as Chinese
water-meter care programmes watch), or far more than the resident's usual use.

Water volume comes from ``water_flow`` events (``data.litres``, or another key of
``hub.protocol.WATER_LITRE_KEYS``), ``water_l`` readings (litres since the previous
reading), and the deltas of a cumulative ``water_meter_l`` from meters that send no
``water_flow`` events (so the same water is not counted twice). "No water" is only
judged for a household whose meter the hub has heard from and that is not down.

Dedup keys: ``water_none:{subject}``, ``water_excess:{subject}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hub.config import CareSubject, DeviceConfigEntry
from hub.domain import Alarm, Category
from hub.protocol import TS_FLOOR, WATER_LITRE_KEYS, Event, EventType, Telemetry
from hub.sensing.base import (
    Incoming,
    Repair,
    SensingContext,
    drop_impossible,
    iso,
    label,
    make_alarm,
)
from hub.sensing.household import data_now, down_sensors, heard_from, resume_after
from hub.sensing.rules.household_watch import HouseholdWatchRule
from hub.sensing.state import Jsonable


def litres_of(data: dict[str, Any]) -> float:
    for k in WATER_LITRE_KEYS:
        v = data.get(k)
        if isinstance(v, int | float) and not isinstance(v, bool) and v > 0:
            return float(v)
    return 0.0


@dataclass(slots=True)
class WaterState(Jsonable):
    baseline: datetime | None = None  # first data from the household: monitoring starts
    last_water: datetime | None = None
    water_none: bool = False
    water_log: list[list[Any]] = field(default_factory=list)  # [[ts, litres], ...]
    water_excess: bool = False


@dataclass(slots=True)
class MeterState(Jsonable):
    meter_total: float | None = None  # last cumulative water meter reading
    flow_events: bool = False  # sends water_flow events (so meter deltas are not counted twice)


class WaterRule(HouseholdWatchRule[WaterState]):
    name = "water"

    state_type = WaterState

    def __init__(self, ctx: SensingContext) -> None:
        super().__init__(ctx)
        self.meters: dict[str, MeterState] = {}

    # ------------------------------------------------------------ messages

    def on_message(self, m: Incoming) -> list[Alarm]:
        out: list[Alarm] = []
        st = None
        if m.subject is not None:
            st = self._state(m.subject.id, m.ts)
            out += self.ctx.contained("subject", m.subject.id, m.heard, self.check,
                                      m.subject, m.ts)
        used = self._water_used(m)
        if used is not None and st is not None:
            out += self._water(m, st, used)
        return out

    def _water_used(self, m: Incoming) -> float | None:
        """Litres this message says were drawn (0: used, amount unknown), or None
        when it says nothing about water use."""
        msg, dev_id, household = m.msg, m.device.id, m.subject is not None
        if isinstance(msg, Event):
            if msg.type is EventType.WATER_FLOW and household:
                self.meters.setdefault(dev_id, MeterState()).flow_events = True
                return litres_of(msg.data)
            return None
        if not isinstance(msg, Telemetry):
            return None
        used: float | None = None
        for r in msg.readings:
            if r.metric == "water_l" and r.value > 0 and household:
                used = (used or 0.0) + r.value
            elif r.metric == "water_meter_l":
                ms = self.meters.setdefault(dev_id, MeterState())
                prev, ms.meter_total = ms.meter_total, r.value
                if household and prev is not None and r.value > prev:
                    # Flow events already counted this water; the meter only proves use.
                    used = (used or 0.0) + (0.0 if ms.flow_events else r.value - prev)
        return used

    def _water(self, m: Incoming, st: WaterState, litres: float) -> list[Alarm]:
        ts, dev, subject = m.ts, m.device, m.subject
        assert subject is not None
        out: list[Alarm] = []
        if st.last_water is None or ts >= st.last_water:
            st.last_water = ts
            if st.water_none:
                st.water_none = False
                out.append(make_alarm(
                    self.ctx.site, "water", Category.WATER, f"water_none:{subject.id}", ts,
                    f"{label(dev, subject)} 恢复用水", dev, subject, firing=False,
                    water_at=ts.isoformat(),
                ))
        if litres > 0:
            st.water_log.append([ts, litres])
            out += self._check_excess(subject, st, ts, dev)
        return out

    def _check_excess(self, s: CareSubject, st: WaterState, now: datetime,
                      dev: DeviceConfigEntry | None) -> list[Alarm]:
        if s.usual_water_l_per_day is None:
            st.water_log = []
            return []
        w = self.ctx.rules.water
        since = now - timedelta(seconds=w.excess_window_s)
        st.water_log = [e for e in st.water_log if e[0] > since]
        used = sum(e[1] for e in st.water_log)
        limit = w.excess_factor * s.usual_water_l_per_day * w.excess_window_s / 86400
        where = label(dev, s)
        hours = w.excess_window_s / 3600
        if used > limit and not st.water_excess:
            st.water_excess = True
            return [make_alarm(
                self.ctx.site, "water", Category.WATER, f"water_excess:{s.id}", now,
                f"{where} 用水量异常偏高（{hours:g}小时{used:.0f}升）", dev, s,
                kind="excess", litres=round(used, 1), limit_litres=round(limit, 1),
                window_s=w.excess_window_s, usual_l_per_day=s.usual_water_l_per_day,
            )]
        if used <= limit and st.water_excess:
            st.water_excess = False
            return [make_alarm(
                self.ctx.site, "water", Category.WATER, f"water_excess:{s.id}", now,
                f"{where} 用水量恢复正常", dev, s, firing=False, kind="excess",
                litres=round(used, 1), limit_litres=round(limit, 1),
            )]
        return []

    # ------------------------------------------------------------ deadlines

    def check(self, s: CareSubject, now: datetime) -> list[Alarm]:
        st = self.subjects.get(s.id)
        if st is None:
            return []
        w = self.ctx.rules.water
        wbase = st.last_water or st.baseline
        due = None
        if not st.water_none and wbase is not None:
            due = wbase + timedelta(seconds=w.none_window_s)
            grace = resume_after(self.ctx, s.id)
            if grace is not None and grace > due:
                due = grace
        # The household's data time is never later than now.
        if (due is None or now < due) and not st.water_excess:
            return []
        at = data_now(self.ctx, s.id, now)
        if at is None:
            return []
        out: list[Alarm] = []
        if due is not None and wbase is not None:
            # Only a meter we have heard from can vouch that no water was used.
            watched = (heard_from(self.ctx, s.id, "water")
                       and not down_sensors(self.ctx, s.id, {"water"}))
            if at >= due and watched:
                st.water_none = True
                hours = (due - wbase).total_seconds() / 3600
                out.append(make_alarm(
                    self.ctx.site, "water", Category.WATER, f"water_none:{s.id}", due,
                    f"{label(None, s)} {hours:.0f}小时未用水", None, s, kind="none",
                    last_water_at=iso(st.last_water), hours_without_water=round(hours, 2),
                    window_s=w.none_window_s,
                ))
        if st.water_excess:
            out += self._check_excess(s, st, at, None)
        return out

    # ------------------------------------------------------------ memory

    def snapshot(self) -> dict[str, Any]:
        return {"subjects": {k: v.to_json() for k, v in self.subjects.items()},
                "meters": {k: v.to_json() for k, v in self.meters.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        self.subjects = {k: WaterState.from_json(v) for k, v in state.get("subjects", {}).items()}
        self.meters = {k: MeterState.from_json(v) for k, v in state.get("meters", {}).items()}

    def repair(self, limit: datetime, now: datetime) -> list[Repair]:
        out = []
        for sid, st in self.subjects.items():
            dropped = drop_impossible(st, limit)
            kept = [e for e in st.water_log
                    if not isinstance(e[0], datetime) or TS_FLOOR <= e[0] <= limit]
            if len(kept) != len(st.water_log):
                st.water_log = kept
                dropped.append("water_log")
            if dropped:
                out.append(Repair("subject", sid, tuple(dropped)))
        return out
