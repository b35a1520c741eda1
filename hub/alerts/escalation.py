"""Escalation (吹哨): when an incident's time limit runs out it goes one level up the
grid tree and the people there are told.

Timers are data: ``deadline_at``/``deadline_kind`` live on the incident row, so a
restarted hub simply loads open incidents and calls ``due()`` on its tick. Each call
takes at most one step; the next deadline is the previous one plus the same limit
(not "now" plus the limit), so a tick that runs late — or a restart in the middle of
a countdown — still escalates at the exact seconds: accept_s=120 escalates at 120 s,
240 s, ... after dispatch. Call ``due()`` in a loop until it returns None to catch up
after a long outage.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hub.alerts.model import Action, AuditEntry, EscalationDecision, Incident, Notification
from hub.config import Site
from hub.grid.tree import LEVEL_NAMES, TOP_LEVEL, GridTree

_KIND_ZH = {"accept": "签收", "handle": "处置"}


def notify_level(
    tree: GridTree, incident: Incident, level: int, reason: str, at: datetime
) -> Notification:
    recipients = (
        tree.recipients(incident.grid_code, level, at, incident.category)
        if incident.grid_code and incident.grid_code in tree.units
        else []
    )
    return Notification(
        incident_id=incident.id,
        grid_code=incident.grid_code,
        level=level,
        recipients=tuple(recipients),
        reason=reason,  # type: ignore[arg-type]
        severity=incident.severity,
        title=incident.title,
        category=incident.category,
        state=incident.state,
        at=at,
    )


class Escalator:
    def __init__(self, site: Site, tree: GridTree) -> None:
        self.site = site
        self.tree = tree

    def limit_s(self, incident: Incident) -> float:
        cfg = self.site.registry.resolve(incident.category)
        return cfg.handle_s if incident.deadline_kind == "handle" else cfg.accept_s

    def due(self, incident: Incident, now: datetime) -> EscalationDecision | None:
        """One escalation step if ``incident``'s deadline has passed at ``now``
        (deadline <= now), else None."""
        if not incident.is_open or incident.deadline_at is None or now < incident.deadline_at:
            return None
        kind = incident.deadline_kind or "accept"
        frm = incident.escalation_level
        overdue_s = (now - incident.deadline_at).total_seconds()
        data = {
            "deadline_kind": kind,
            "deadline_at": incident.deadline_at.isoformat(),
            "from_level": frm,
            "overdue_s": overdue_s,
        }
        if frm >= TOP_LEVEL:
            new = incident.copy(
                deadline_at=None,
                deadline_kind=None,
                updated_at=now,
                version=incident.version + 1,
            )
            audit = _audit(
                incident, now,
                f"{_KIND_ZH.get(kind, kind)}超时，已到最高级（{LEVEL_NAMES[frm]}），停止升级",
                {**data, "to_level": frm, "exhausted": True},
            )
            return EscalationDecision(new, frm, frm, audit, (), exhausted=True)

        to = frm + 1
        next_deadline = incident.deadline_at + timedelta(seconds=self.limit_s(incident))
        new = incident.copy(
            escalation_level=to,
            escalations=incident.escalations + 1,
            deadline_at=next_deadline,
            deadline_kind=kind,
            updated_at=now,
            version=incident.version + 1,
        )
        audit = _audit(
            incident, now, f"{_KIND_ZH.get(kind, kind)}超时，升级至{LEVEL_NAMES[to]}",
            {**data, "to_level": to, "next_deadline_at": next_deadline.isoformat()},
        )
        note = notify_level(self.tree, new, to, "escalated", now)
        return EscalationDecision(new, frm, to, audit, (note,))


def due(
    incident: Incident, now: datetime, *, site: Site, tree: GridTree
) -> EscalationDecision | None:
    return Escalator(site, tree).due(incident, now)


def _audit(incident: Incident, now: datetime, reason: str, data: dict[str, Any]) -> AuditEntry:
    """The audit row of an escalation step: the system acts, the state stays."""
    return AuditEntry(
        incident_id=incident.id,
        at=now,
        actor="system",
        action=Action.ESCALATE,
        from_state=incident.state,
        to_state=incident.state,
        reason=reason,
        source="system",
        data=data,
    )
