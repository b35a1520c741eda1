"""Incident types shared by the incident engine and its adapters (store, notifiers, API).

Pure data. Conventions the adapters rely on:

* ``Incident.version`` starts at 1 for a new incident and goes up by exactly one with
  every change the core makes (alarm update, transition, escalation). Persist with
  ``UPDATE ... SET version = new.version WHERE id = ... AND version = new.version - 1``;
  zero rows updated means someone else won: raise ``ConflictError``.
* ``Incident.id`` is ``None`` until the store assigns one; the core's Notifications and
  AuditEntries for a new incident carry ``incident_id=None`` too — fill them with
  ``.for_incident(id)`` after the insert.
* Timers are data: ``deadline_at``/``deadline_kind`` on the incident row. After a
  restart, load open incidents and call ``hub.alerts.escalation.due()`` on a tick.
* ``to_dict()``/``from_dict()`` round-trip through JSON (ISO datetimes, enum values).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Literal

from hub.domain import IncidentState, Severity
from hub.grid.tree import Recipient

DeadlineKind = Literal["accept", "handle"]


class Action(enum.StrEnum):
    """What happened to an incident; every one is an audit row."""

    REPORT = "report"  # the engine opened it from an alarm (上报)
    REGISTER = "register"  # 立案: reported -> registered
    CANCEL = "cancel"  # 作废: reported|registered -> cancelled, reason required
    DISPATCH = "dispatch"  # 派遣: registered -> dispatched, to a person
    ACCEPT = "accept"  # 签收: dispatched -> accepted
    HANDLE = "handle"  # 处置: accepted -> handled, with a note
    CLOSE = "close"  # 核查结案: handled -> closed after the check
    REOPEN = "reopen"  # check failed: handled -> dispatched again
    RETURN = "return"  # 退回: the assignee gives a dispatch back, with a reason
    PARK = "park"  # 挂账: not solvable now, parked until a review date
    RESUME = "resume"  # a parked incident taken up again before its review date
    SUPERVISE = "supervise"  # 督办: a higher level flags an overdue case
    VERIFY = "verify"  # 核查: the on-site check before closing, not by the handler
    REVIEW = "review"  # a parked incident's review date came (actor "system")
    COMMENT = "comment"  # a note; no state change
    ESCALATE = "escalate"  # a time limit ran out (actor "system"); no state change
    CLEAR = "clear"  # the alarm cleared (e.g. the person got up); stays open
    GROUP = "group"  # linked to a related incident


class DecisionKind(enum.StrEnum):
    CREATE = "create"  # insert ``incident`` (new, id None)
    UPDATE = "update"  # write ``incident`` (same id, version + 1)
    GROUP = "group"  # insert ``incident`` (new) linked to ``related_id`` via group_id
    NOOP = "noop"  # redelivered / stale alarm, or a cleared alarm with nothing open
    INHIBITED = "inhibited"  # suppressed by another open incident (``related_id``)
    SILENCED = "silenced"  # suppressed by a silence / maintenance window (``silence_id``)


NotificationReason = Literal["new", "update", "escalated", "transition", "cleared"]


def _dt(v: str | datetime | None) -> datetime | None:
    if v is None or isinstance(v, datetime):
        return v
    return datetime.fromisoformat(v)


@dataclass(slots=True)
class Incident:
    """One grid incident (网格事件). Mutable for convenience inside the core, but the
    core always returns a fresh copy (``dataclasses.replace``) and never mutates the
    object it was given."""

    dedup_key: str
    category: str  # a category code (hub.categories)
    severity: Severity
    state: IncidentState
    title: str
    opened_at: datetime  # data timestamp of the first alarm
    updated_at: datetime  # hub time of the last change
    grid_code: str | None = None
    device_id: str | None = None
    subject_id: str | None = None
    zone: str | None = None
    rule: str = ""
    id: int | None = None
    alarm_count: int = 1
    firing: bool = True
    last_alarm_ts: datetime | None = None  # data timestamp of the latest alarm
    cleared_at: datetime | None = None  # data timestamp of the latest clear
    evidence: dict[str, Any] = field(default_factory=dict)  # the latest alarm's, clears too
    evidence_image: str | None = None
    # The numbers of the alarms that fired it (the latest firing run's); a clear never
    # touches them, so "why it fired" still shows them after the alarm cleared.
    firing_evidence: dict[str, Any] = field(default_factory=dict)
    # Highest level of the escalation chain notified so far (0 = grid worker).
    escalation_level: int = 0
    escalations: int = 0  # how many times a time limit ran out ("escalated" in stats)
    deadline_at: datetime | None = None
    deadline_kind: DeadlineKind | None = None
    assignee: str | None = None  # person id
    group_id: int | None = None  # id of the incident this one was grouped with
    reported_at: datetime | None = None  # hub time the incident was opened
    dispatched_at: datetime | None = None
    accepted_at: datetime | None = None
    handled_at: datetime | None = None
    closed_at: datetime | None = None  # closed or cancelled
    review_at: datetime | None = None  # when a parked incident comes back (挂账)
    dispatched_by: str | None = None  # who dispatched it last: a return goes back to them
    handled_by: str | None = None  # who marked it handled: they may not verify it
    verified_by: str | None = None  # who checked it on site (核查)
    supervised_by: str | None = None  # the higher level that flagged it (督办)
    version: int = 1

    @property
    def is_open(self) -> bool:
        return self.state.is_open

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for f in fields(self):
            v = d[f.name]
            if isinstance(v, datetime):
                d[f.name] = v.isoformat()
            elif isinstance(v, enum.Enum):
                d[f.name] = v.value if not isinstance(v, Severity) else v.name.lower()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Incident:
        kw = dict(d)
        kw["category"] = str(kw["category"])
        kw["severity"] = Severity.parse(kw["severity"])
        kw["state"] = IncidentState(kw["state"])
        for name in (
            "opened_at", "updated_at", "last_alarm_ts", "cleared_at", "deadline_at",
            "reported_at", "dispatched_at", "accepted_at", "handled_at", "closed_at",
            "review_at",
        ):
            kw[name] = _dt(kw.get(name))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in kw.items() if k in known})

    def copy(self, **changes: Any) -> Incident:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One append-only audit row: who, when, why, from where."""

    incident_id: int | None
    at: datetime  # hub time
    actor: str  # a person/user id, "engine" or "system"
    action: Action
    from_state: IncidentState | None
    to_state: IncidentState
    reason: str | None = None
    source: str = "api"  # "api", "engine", "system", or the client's IP
    data: dict[str, Any] = field(default_factory=dict)

    def for_incident(self, incident_id: int) -> AuditEntry:
        return replace(self, incident_id=incident_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action.value,
            "from_state": self.from_state.value if self.from_state else None,
            "to_state": self.to_state.value,
            "reason": self.reason,
            "source": self.source,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class Notification:
    """Tell the people of one escalation level about an incident. One per level, so
    the notifiers can rate-limit per recipient."""

    incident_id: int | None
    grid_code: str | None
    level: int
    recipients: tuple[Recipient, ...]
    reason: NotificationReason
    severity: Severity
    title: str
    category: str
    state: IncidentState
    at: datetime  # hub time the decision was made

    def for_incident(self, incident_id: int) -> Notification:
        return replace(self, incident_id=incident_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "grid_code": self.grid_code,
            "level": self.level,
            "recipients": [r.to_dict() for r in self.recipients],
            "reason": self.reason,
            "severity": self.severity.name.lower(),
            "title": self.title,
            "category": str(self.category),
            "state": self.state.value,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """What the engine says to do with one alarm. ``incident`` is what to insert
    (CREATE, GROUP) or write back (UPDATE); None for NOOP/INHIBITED/SILENCED."""

    kind: DecisionKind
    incident: Incident | None = None
    notifications: tuple[Notification, ...] = ()
    audit: tuple[AuditEntry, ...] = ()
    reason: str = ""
    related_id: int | None = None  # the incident grouped with / inhibiting this alarm
    silence_id: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """Result of a lifecycle action: the incident to write (version + 1), its audit
    row, and whom to tell."""

    incident: Incident
    audit: AuditEntry
    notifications: tuple[Notification, ...] = ()


@dataclass(frozen=True, slots=True)
class EscalationDecision:
    """A time limit ran out. ``to_level == from_level`` with ``exhausted`` means the
    chain's top was reached: the deadline is cleared and nobody new is told."""

    incident: Incident
    from_level: int
    to_level: int
    audit: AuditEntry
    notifications: tuple[Notification, ...] = ()
    exhausted: bool = False


__all__ = [
    "Action",
    "AuditEntry",
    "Decision",
    "DecisionKind",
    "DeadlineKind",
    "EscalationDecision",
    "Incident",
    "Notification",
    "NotificationReason",
    "Transition",
    "Recipient",
]
