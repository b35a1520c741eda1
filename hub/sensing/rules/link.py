"""Weak link: a Zigbee device's ``linkquality`` (LQI, 0-255) at or below its power
class's ``weak_link_lqi`` for ``weak_link_readings`` readings in a row raises a
maintenance incident (a router to add, a sensor to move); as many readings at or
above ``link_ok_lqi`` clear it. LQI swings from message to message: a run of
readings, and a gap between the two thresholds, keep one bad message from raising
it and one good one from clearing it. Readings between the thresholds break both
runs. Readings older than the last one applied change nothing.

Dedup key: ``weak_link:{device}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from hub.categories import CategoryInfo
from hub.domain import Alarm, Severity
from hub.protocol import Telemetry
from hub.sensing.base import Incoming, label, make_alarm
from hub.sensing.rules.device_health import DeviceHealthRule
from hub.sensing.state import Jsonable

WEAK_LINK = "weak_link"
CATEGORIES = (
    CategoryInfo(
        code=WEAK_LINK, case_code="0904", name_zh="信号弱", name_en="Weak link",
        severity=Severity.MINOR, accept_s=86400, handle_s=7 * 86400, groups=False,
        route="property", icon="📶", colour="#94a3b8"),
)


@dataclass(slots=True)
class LinkState(Jsonable):
    weak: bool = False
    weak_run: int = 0
    ok_run: int = 0
    at: datetime | None = None  # the data time of the latest reading applied
    recent: list[float] = field(default_factory=list)  # the latest readings of the run


class LinkRule(DeviceHealthRule[LinkState]):
    name = "link"

    problem = WEAK_LINK
    state_type = LinkState

    def holds(self, st: LinkState) -> bool:
        return st.weak

    def on_message(self, m: Incoming) -> list[Alarm]:
        if not isinstance(m.msg, Telemetry):
            return []
        out: list[Alarm] = []
        for r in m.msg.readings:
            if r.metric != "linkquality":
                continue
            if not 0 <= r.value <= 255:
                self.ctx.report("reading_out_of_range", m.device.id,
                                "linkquality reading outside 0-255 ignored", value=r.value)
                continue
            out += self._lqi(m, r.value)
        return out

    def _lqi(self, m: Incoming, lqi: float) -> list[Alarm]:
        dev = m.device
        st = self.devices.setdefault(dev.id, LinkState())
        if st.at is not None and m.ts < st.at:
            return []
        st.at = m.ts
        limits = self.ctx.rules.health.of(dev.power)
        n = limits.weak_link_readings
        weak, ok = lqi <= limits.weak_link_lqi, lqi >= limits.link_ok_lqi
        st.weak_run = st.weak_run + 1 if weak else 0
        st.ok_run = st.ok_run + 1 if ok else 0
        st.recent = (st.recent + [lqi])[-n:] if weak or ok else []
        if (st.weak and st.ok_run < n) or (not st.weak and st.weak_run < n):
            return []
        st.weak = not st.weak
        where = label(dev, None)
        title = f"{where} 信号弱（LQI {lqi:g}）" if st.weak else f"{where} 信号恢复（LQI {lqi:g}）"
        return [make_alarm(
            self.ctx.site, self.name, WEAK_LINK, f"{WEAK_LINK}:{dev.id}", m.ts, title, dev,
            None, firing=st.weak, lqi=lqi, readings=list(st.recent),
            weak_at_lqi=limits.weak_link_lqi, ok_at_lqi=limits.link_ok_lqi, consecutive=n,
            power=dev.power, kind=dev.kind,
        )]
