"""A latched device condition: an event sets it, its clear event (or a telemetry
metric back to 0) clears it, as smoke detectors, leak sensors and tamper switches
report. Each subclass names its events, metric, category and title (smoke, leak,
tamper)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from hub.config import CareSubject, DeviceConfigEntry
from hub.domain import Alarm
from hub.protocol import Event, EventType, Telemetry
from hub.sensing.base import Incoming, RuleBase, SensingContext, label, make_alarm, scalars


class LatchRule(RuleBase):
    """Fires on ``on_event`` (every repeat gives the same firing alarm, which the
    incident engine folds into the open incident), clears on ``off_event`` while
    set; a ``metric`` reading > 0 sets it and 0 clears it, on a change only.

    Dedup key: ``{name}:{device}``."""

    category: ClassVar[str]  # a registered category code (hub.categories)
    on_event: ClassVar[EventType]
    off_event: ClassVar[EventType]
    metric: ClassVar[str]
    what: ClassVar[str]  # the title after the place, e.g. "烟感报警"
    # Whether the alarm names the household (a smoke alarm is about the people in
    # it); maintenance alarms name the device's place only.
    about_household: ClassVar[bool] = True
    # Whether the condition is a fault of the device itself (a tamper switch), which
    # the care rules mention when the device did not see the resident.
    device_fault: ClassVar[bool] = False

    def __init__(self, ctx: SensingContext) -> None:
        super().__init__(ctx)
        self.latched: dict[str, bool] = {}  # device -> set

    def device_problems(self, device_id: str) -> list[str]:
        return [self.category] if self.device_fault and self.latched.get(device_id) else []

    def on_message(self, m: Incoming) -> list[Alarm]:
        msg = m.msg
        if isinstance(msg, Event) and msg.type in (self.on_event, self.off_event):
            return self._set(m.device, m.subject, m.ts, msg.type is self.on_event, msg.data)
        if isinstance(msg, Telemetry):
            out: list[Alarm] = []
            for r in msg.readings:
                if r.metric == self.metric and (r.value > 0) != self.latched.get(m.device.id,
                                                                                 False):
                    out += self._set(m.device, m.subject, m.ts, r.value > 0, {})
            return out
        return []

    def _set(self, dev: DeviceConfigEntry, subject: CareSubject | None, ts: datetime,
             on: bool, data: dict[str, Any]) -> list[Alarm]:
        if not on and not self.latched.get(dev.id, False):
            return []
        self.latched[dev.id] = on
        if not self.about_household:
            subject = None
        return [make_alarm(
            self.ctx.site, self.name, self.category, f"{self.name}:{dev.id}", ts,
            f"{label(dev, subject)} {self.what}", dev, subject, firing=on,
            location=dev.location.label, data=scalars(data),
        )]

    def snapshot(self) -> dict[str, Any]:
        return {k: True for k, on in self.latched.items() if on}

    def restore(self, state: dict[str, Any]) -> None:
        self.latched = {k: bool(v) for k, v in state.items() if v}
