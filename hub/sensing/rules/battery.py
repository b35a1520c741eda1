"""Battery low: a device's ``battery`` reading (percent, 0-100) at or below its power
class's ``battery_low_pct`` raises a maintenance incident for property management;
it clears at ``battery_ok_pct`` or above, so a battery wavering at 19-21 % does not
flap. A device that reports only Zigbee2MQTT's ``battery_low`` flag (0/1) is judged
on the flag. Readings older than the last one applied (a spool replaying) change
nothing.

The alarm names the device's place, not the household: a battery is the property
staff's work, and it never stands in for a care alarm (see ``inactivity``).

Dedup key: ``battery_low:{device}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hub.categories import CategoryInfo
from hub.config import DeviceConfigEntry
from hub.domain import Alarm, Severity
from hub.protocol import Telemetry
from hub.sensing.base import Incoming, label, make_alarm
from hub.sensing.rules.device_health import DeviceHealthRule
from hub.sensing.state import Jsonable

BATTERY_LOW = "battery_low"
CATEGORIES = (
    CategoryInfo(
        code=BATTERY_LOW, case_code="0902", name_zh="电量低", name_en="Battery low",
        severity=Severity.MINOR, accept_s=86400, handle_s=3 * 86400, groups=False,
        route="property", icon="🔋", colour="#78716c"),
)


@dataclass(slots=True)
class BatteryState(Jsonable):
    low: bool = False
    pct: float | None = None  # the latest percentage applied
    at: datetime | None = None  # the data time of the latest reading applied


class BatteryRule(DeviceHealthRule[BatteryState]):
    name = "battery"

    problem = BATTERY_LOW
    state_type = BatteryState

    def holds(self, st: BatteryState) -> bool:
        return st.low

    def on_message(self, m: Incoming) -> list[Alarm]:
        if not isinstance(m.msg, Telemetry):
            return []
        pct = flag = None
        for r in m.msg.readings:
            if r.metric == "battery":
                if not 0 <= r.value <= 100:
                    self.ctx.report("reading_out_of_range", m.device.id,
                                    "battery reading outside 0-100 % ignored", value=r.value)
                    continue
                pct = r.value
            elif r.metric == "battery_low":
                flag = r.value > 0
        st = self.devices.get(m.device.id)
        if pct is None and (flag is None or (st is not None and st.pct is not None)):
            return []  # a device that reports a percentage is judged on it
        if st is None:
            st = self.devices[m.device.id] = BatteryState()
        if st.at is not None and m.ts < st.at:
            return []
        st.at = m.ts
        limits = self.ctx.rules.health.of(m.device.power)
        if pct is not None:
            st.pct = pct
            low = True if pct <= limits.battery_low_pct else (
                False if pct >= limits.battery_ok_pct else st.low)
        else:
            low = bool(flag)
        if low == st.low:
            return []
        st.low = low
        return [self._alarm(m.device, m.ts, low, pct, limits.battery_low_pct,
                            limits.battery_ok_pct)]

    def _alarm(self, dev: DeviceConfigEntry, ts: datetime, low: bool, pct: float | None,
               low_at: float, ok_at: float) -> Alarm:
        where = label(dev, None)
        shown = f"（{pct:g}%）" if pct is not None else ""
        title = f"{where} 电量低{shown}" if low else f"{where} 电量恢复{shown}"
        return make_alarm(
            self.ctx.site, self.name, BATTERY_LOW, f"{BATTERY_LOW}:{dev.id}", ts, title, dev,
            None, firing=low, battery_pct=pct, low_at_pct=low_at, ok_at_pct=ok_at,
            power=dev.power, kind=dev.kind, source="battery" if pct is not None else "flag",
        )
