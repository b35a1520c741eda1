"""Which chat and SMS channels a notification goes to, as outbox rows written in the
incident's transaction: every channel of the site file whose ``grids`` name a unit
told; a chat channel gets one message per unit, an SMS gateway one per person told
there with a phone. The message is rendered here, Chinese first, so delivery needs
neither the site nor the incident."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hub.alerts.model import Notification
from hub.alerts.notifiers.registry import Message
from hub.store.outbox import OutboxRow

SEVERITY_ZH = {"critical": "紧急", "major": "重要", "minor": "一般", "info": "提示"}
REASON = {"new": ("新告警", "new"), "update": ("更新", "update"),
          "escalated": ("升级", "escalated"), "transition": ("状态变更", "changed"),
          "cleared": ("已解除", "cleared")}


def incident_link(public_url: str, incident_id: int | None) -> str:
    return f"{public_url.rstrip('/')}/api/incidents/{incident_id}"


def message(n: Notification, site: Any, public_url: str) -> Message:
    sev = n.severity.name.lower()
    try:
        cat = site.category(str(n.category))
        names = (cat.name_zh, cat.name_en)
    except LookupError:
        names = (str(n.category), str(n.category))
    zh, en = REASON.get(n.reason, (n.reason, n.reason))
    return Message(
        title=f"【{SEVERITY_ZH.get(sev, sev)}】{names[0]} #{n.incident_id} {n.title}",
        lines=(f"{zh}，第 {n.level} 级 · 网格 {n.grid_code or '-'}",
               f"{names[1]} ({en}, level {n.level}), {n.at.isoformat(timespec='seconds')}"),
        url=incident_link(public_url, n.incident_id), severity=sev,
        incident_id=n.incident_id)


class ChannelPlan:
    def __init__(self, site: Any, public_url: str = "") -> None:
        self.site = site
        self.public_url = public_url
        self.by_unit: dict[str, list[Any]] = {}
        for c in getattr(site, "channels", ()):
            for g in c.grids:
                self.by_unit.setdefault(g, []).append(c)

    def rows(self, n: Notification, units: Sequence[str]) -> list[OutboxRow]:
        if not self.by_unit:
            return []
        msg = message(n, self.site, self.public_url).to_dict()
        urgent = n.reason == "new" and n.severity.name == "CRITICAL"
        out: list[OutboxRow] = []
        for u in units:
            for c in self.by_unit.get(u, ()):
                if c.kind != "sms":
                    out.append(OutboxRow(c.kind, u, {"message": msg, "urgent": urgent},
                                         incident_id=n.incident_id, target=c.name))
                    continue
                for r in n.recipients:
                    if r.unit_code == u and r.phone:
                        out.append(OutboxRow(
                            "sms", r.person_id,
                            {"message": msg, "phone": r.phone, "urgent": urgent},
                            incident_id=n.incident_id, target=c.name))
        return out
