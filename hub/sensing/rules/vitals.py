"""Vitals out of range for N consecutive readings (``heart_rate``, ``spo2``,
``body_temp``; ranges and N in ``rules.vitals``); as many good readings clear it.

Dedup key: ``vitals:{subject}:{metric}`` (a device without a care subject uses its
device id in place of the subject).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub.config import CareSubject, DeviceConfigEntry
from hub.domain import Alarm, Category
from hub.protocol import Telemetry
from hub.sensing.base import Incoming, RuleBase, SensingContext, label, make_alarm
from hub.sensing.state import Jsonable

VITALS = ("heart_rate", "spo2", "body_temp")
VITALS_ZH = {"heart_rate": "心率", "spo2": "血氧", "body_temp": "体温"}


@dataclass(slots=True)
class VitalsState(Jsonable):
    out_run: int = 0
    in_run: int = 0
    firing: bool = False
    recent: list[float] = field(default_factory=list)  # the latest out-of-range values


class VitalsRule(RuleBase):
    name = "vitals"

    def __init__(self, ctx: SensingContext) -> None:
        super().__init__(ctx)
        self.runs: dict[str, VitalsState] = {}  # "subject:metric"

    def on_message(self, m: Incoming) -> list[Alarm]:
        if not isinstance(m.msg, Telemetry):
            return []
        out: list[Alarm] = []
        for r in m.msg.readings:
            if r.metric in VITALS:
                out += self._vital(m.device, m.subject, r.metric, r.value, m.ts)
        return out

    def _vital(self, dev: DeviceConfigEntry, subject: CareSubject | None, metric: str,
               value: float, ts: datetime) -> list[Alarm]:
        rules = self.ctx.rules.vitals
        lo, hi = getattr(rules, metric)
        n = rules.consecutive
        key = f"{subject.id if subject else dev.id}:{metric}"
        vs = self.runs.setdefault(key, VitalsState())
        title = f"{label(dev, subject)} {VITALS_ZH[metric]}异常"
        if not lo <= value <= hi:
            vs.out_run += 1
            vs.in_run = 0
            vs.recent = (vs.recent + [value])[-n:]
            if vs.out_run >= n and not vs.firing:
                vs.firing = True
                return [make_alarm(
                    self.ctx.site, "vitals", Category.VITALS, f"vitals:{key}", ts,
                    f"{title}（连续{n}次超出{lo:g}-{hi:g}）", dev, subject,
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
            return [make_alarm(
                self.ctx.site, "vitals", Category.VITALS, f"vitals:{key}", ts, title, dev,
                subject, firing=False, metric=metric, value=value, low=lo, high=hi,
            )]
        return []

    def snapshot(self) -> dict[str, Any]:
        return {k: v.to_json() for k, v in self.runs.items()}

    def restore(self, state: dict[str, Any]) -> None:
        self.runs = {k: VitalsState.from_json(v) for k, v in state.items()}
