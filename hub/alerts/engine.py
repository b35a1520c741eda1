"""The incident engine: turns alarms into incident decisions.

Pure: the adapter looks up what the engine needs (the open incident with the alarm's
dedup key, and open incidents about the same subject/device/zone — see
``related_filter``), calls ``decide``, and persists the returned incident, audit rows
and notifications in one transaction. The engine never sees pixels or sockets.

Order of the rules for one alarm:

1. An open incident with the same dedup key exists: a redelivered or older alarm is a
   no-op; otherwise the incident is updated (count, evidence, severity, firing) —
   never a second incident. A clear marks it not firing but keeps it open.
2. No open incident and the alarm is a clear: nothing to do.
3. A matching silence / maintenance window: silenced (nothing is opened).
4. An open incident that inhibits it (a category's ``inhibits`` in the registry:
   SOS/fall/offline of the same household over inactivity): inhibited.
5. An open incident about the same subject or place within the category's group_s:
   a new incident linked to it (``group_id``).
6. Otherwise a new incident, state reported, with the accept deadline running and
   ``notify_levels`` levels of the chain told at once.

Every category the engine meets must be registered (``hub.categories``); the alert
service refuses alarms of other categories at its inlet, and ``decide`` raises
``UnknownCategory`` (a ``ValueError`` naming the code) for one handed in directly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from hub.alerts import lifecycle
from hub.alerts.escalation import Escalator, notify_level
from hub.alerts.model import (
    Action,
    AuditEntry,
    Decision,
    DecisionKind,
    EscalationDecision,
    Incident,
    Notification,
    Transition,
)
from hub.alerts.policy import Policy, Silence, inhibit_rules
from hub.clock import Clock
from hub.config import Site
from hub.domain import Alarm, IncidentState
from hub.grid.tree import TOP_LEVEL, GridTree


@dataclass(frozen=True, slots=True)
class RelatedFilter:
    """What the adapter should load as ``related_open`` for an alarm: open incidents
    with any of these subject/device ids (or zone on that device) whose
    ``last_alarm_ts`` is at or after ``since``. Inhibitors are looked up by subject
    regardless of age (an SOS stays inhibiting while it is open), so ``since`` applies
    only to the device/zone matches."""

    subject_id: str | None
    device_id: str | None
    zone: str | None
    since: datetime


class IncidentEngine:
    def __init__(
        self,
        site: Site,
        tree: GridTree,
        clock: Clock,
        policy: Policy | None = None,
    ) -> None:
        self.site = site
        self.tree = tree
        self.clock = clock
        self.policy = policy or Policy()
        if self.policy.inhibits is None:
            self.policy.inhibits = inhibit_rules(site.registry)
        self.escalator = Escalator(site, tree)

    # ------------------------------------------------------------ silences

    @property
    def silences(self) -> list[Silence]:
        return self.policy.silences

    def set_silences(self, silences: list[Silence]) -> None:
        self.policy.silences = list(silences)

    def add_silence(self, silence: Silence) -> None:
        self.policy.silences.append(silence)

    def remove_silence(self, silence_id: str) -> bool:
        before = len(self.policy.silences)
        self.policy.silences = [s for s in self.policy.silences if s.id != silence_id]
        return len(self.policy.silences) != before

    # ------------------------------------------------------------ alarms

    def related_filter(self, alarm: Alarm) -> RelatedFilter:
        group_s = self.site.category(alarm.category).group_s
        return RelatedFilter(
            alarm.subject_id, alarm.device_id, alarm.zone, alarm.ts - timedelta(seconds=group_s)
        )

    def decide(
        self,
        alarm: Alarm,
        open_incident: Incident | None,
        related_open: list[Incident] | None = None,
        now: datetime | None = None,
    ) -> Decision:
        now = now or self.clock.now()
        related = [
            r
            for r in (related_open or [])
            if r.is_open and r.dedup_key != alarm.dedup_key
        ]
        grid_code = self.tree.locate(alarm.grid_code, alarm.device_id, alarm.subject_id)
        silence = self.policy.silence_for(alarm, grid_code)

        if open_incident is not None and open_incident.is_open:
            if open_incident.dedup_key != alarm.dedup_key:
                raise ValueError(
                    f"open_incident has dedup key {open_incident.dedup_key!r}, "
                    f"the alarm {alarm.dedup_key!r}"
                )
            return self._update(alarm, open_incident, now, silence)

        if not alarm.firing:
            return Decision(DecisionKind.NOOP, reason="cleared alarm with no open incident")
        if silence is not None:
            return Decision(
                DecisionKind.SILENCED,
                reason=f"silenced: {silence.reason}",
                silence_id=silence.id or None,
            )
        inh = self.policy.inhibitor(alarm, related)
        if inh is not None:
            other, why = inh
            return Decision(DecisionKind.INHIBITED, reason=f"inhibited: {why}", related_id=other.id)

        incident = self._new(alarm, grid_code, now)
        audit = [
            AuditEntry(
                incident_id=None,
                at=now,
                actor="engine",
                action=Action.REPORT,
                from_state=None,
                to_state=IncidentState.REPORTED,
                reason=alarm.title,
                source="engine",
                data={"rule": alarm.rule, "alarm_ts": alarm.ts.isoformat(), **_small(alarm)},
            )
        ]
        primary = self._group_with(alarm, related)
        kind = DecisionKind.CREATE
        reason = "new incident"
        if primary is not None:
            gid = primary.group_id or primary.id
            incident = incident.copy(group_id=gid)
            kind = DecisionKind.GROUP
            reason = f"grouped with incident {gid}"
            audit.append(
                AuditEntry(
                    incident_id=None,
                    at=now,
                    actor="engine",
                    action=Action.GROUP,
                    from_state=IncidentState.REPORTED,
                    to_state=IncidentState.REPORTED,
                    reason=f"与事件 {gid} 关联（同一对象或地点，时间相近）",
                    source="engine",
                    data={"group_id": gid, "related_id": primary.id},
                )
            )
        notes = tuple(
            notify_level(self.tree, incident, lv, "new", now)
            for lv in range(incident.escalation_level + 1)
        )
        return Decision(
            kind,
            incident,
            notes,
            tuple(audit),
            reason,
            related_id=primary.id if primary else None,
        )

    def _new(self, alarm: Alarm, grid_code: str | None, now: datetime) -> Incident:
        cfg = self.site.category(alarm.category)
        return Incident(
            dedup_key=alarm.dedup_key,
            category=alarm.category,
            severity=alarm.severity,
            state=IncidentState.REPORTED,
            title=alarm.title,
            opened_at=alarm.ts,
            updated_at=now,
            grid_code=grid_code,
            device_id=alarm.device_id,
            subject_id=alarm.subject_id,
            zone=alarm.zone,
            rule=alarm.rule,
            alarm_count=1,
            firing=True,
            last_alarm_ts=alarm.ts,
            evidence=dict(alarm.evidence),
            evidence_image=alarm.evidence_image,
            firing_evidence=dict(alarm.evidence),
            escalation_level=min(cfg.notify_levels - 1, TOP_LEVEL),
            # The time to accept counts from the moment the hub knows.
            deadline_at=now + timedelta(seconds=cfg.accept_s),
            deadline_kind="accept",
            reported_at=now,
            version=1,
        )

    def _group_with(self, alarm: Alarm, related: list[Incident]) -> Incident | None:
        cfg = self.site.category(alarm.category)
        window = timedelta(seconds=cfg.group_s)
        if not cfg.groups or window.total_seconds() <= 0:
            return None
        categories = self.site.registry
        cands = []
        for r in related:
            if not categories.groups(r.category) or r.id is None:
                continue
            same_subject = alarm.subject_id is not None and r.subject_id == alarm.subject_id
            same_place = alarm.device_id is not None and r.device_id == alarm.device_id and (
                alarm.zone is None or r.zone is None or r.zone == alarm.zone
            )
            last = r.last_alarm_ts or r.opened_at
            if (same_subject or same_place) and abs(alarm.ts - last) <= window:
                cands.append(r)
        if not cands:
            return None
        # The most severe, then the oldest, leads the group.
        return min(cands, key=lambda r: (-int(r.severity), r.opened_at, r.id or 0))

    def _update(
        self, alarm: Alarm, inc: Incident, now: datetime, silence: Silence | None
    ) -> Decision:
        last = inc.last_alarm_ts or inc.opened_at
        if alarm.ts < last:
            return Decision(DecisionKind.NOOP, reason="stale alarm (older than the last one)")
        if alarm.ts == last and alarm.firing == inc.firing:
            return Decision(DecisionKind.NOOP, reason="redelivered alarm")
        if not alarm.firing:
            if not inc.firing:
                return Decision(DecisionKind.NOOP, reason="already cleared")
            new = inc.copy(
                firing=False,
                cleared_at=alarm.ts,
                last_alarm_ts=alarm.ts,
                updated_at=now,
                evidence={**inc.evidence, **alarm.evidence},
                version=inc.version + 1,
            )
            audit = AuditEntry(
                inc.id, now, "engine", Action.CLEAR, inc.state, inc.state,
                reason=f"报警解除：{alarm.title}（事件保持打开，待跟进）",
                source="engine",
                data={"alarm_ts": alarm.ts.isoformat()},
            )
            notes = () if silence else (notify_level(self.tree, new, 0, "cleared", now),)
            return Decision(DecisionKind.UPDATE, new, notes, (audit,), "alarm cleared")

        refired = not inc.firing
        severity = max(inc.severity, alarm.severity)
        new = inc.copy(
            firing=True,
            alarm_count=inc.alarm_count + 1,
            last_alarm_ts=alarm.ts,
            updated_at=now,
            severity=severity,
            title=alarm.title,
            evidence={**inc.evidence, **alarm.evidence},
            evidence_image=alarm.evidence_image or inc.evidence_image,
            # A refire starts a new firing run: its numbers replace the old run's.
            firing_evidence=dict(alarm.evidence) if refired
            else {**inc.firing_evidence, **alarm.evidence},
            version=inc.version + 1,
        )
        notes: tuple[Notification, ...] = ()
        audit: tuple[AuditEntry, ...] = ()
        if (refired or severity > inc.severity) and silence is None:
            why = "报警再次触发" if refired else f"级别升至 {severity.name.lower()}"
            notes = tuple(
                notify_level(self.tree, new, lv, "update", now)
                for lv in range(new.escalation_level + 1)
            )
            audit = (
                AuditEntry(
                    inc.id, now, "engine", Action.COMMENT, inc.state, inc.state,
                    reason=why, source="engine",
                    data={"alarm_ts": alarm.ts.isoformat(), "severity": severity.name.lower()},
                ),
            )
        return Decision(DecisionKind.UPDATE, new, notes, audit, "repeat updates the incident")

    # ------------------------------------------------------------ people's actions

    def transition(
        self,
        incident: Incident,
        action: Action | str,
        *,
        actor: str,
        at: datetime | None = None,
        source: str = "api",
        reason: str | None = None,
        assignee: str | None = None,
        expected_version: int | None = None,
        data: dict[str, Any] | None = None,
        review_at: datetime | None = None,
    ) -> Transition:
        """A lifecycle action (see ``hub.alerts.lifecycle``) plus whom to tell: the
        assignee on dispatch, reopen and supervise; the dispatcher on a return."""
        at = at or self.clock.now()
        if assignee is not None and assignee not in self.tree.people:
            raise lifecycle.LifecycleError(f"unknown person {assignee!r} to dispatch to")
        t = lifecycle.apply(
            incident, action, at=at, actor=actor, site=self.site, source=source,
            reason=reason, assignee=assignee, expected_version=expected_version, data=data,
            review_at=review_at,
        )
        if (t.audit.action is Action.DISPATCH and t.incident.grid_code and assignee
                and not self._inside_grid(assignee, t.incident.grid_code)):
            # 小事不出网格: a dispatch outside the case's grid counts as transferred.
            t = Transition(t.incident, replace(t.audit, data=t.audit.data | {
                "outside_grid": True}), t.notifications)
        notes: tuple[Notification, ...] = ()
        if t.audit.action in (Action.DISPATCH, Action.REOPEN, Action.SUPERVISE):
            notes = self.tell(t.incident, [t.incident.assignee], at)
        elif t.audit.action is Action.RETURN:
            notes = self.tell(t.incident, [incident.dispatched_by], at)
        return Transition(t.incident, t.audit, notes)

    def _inside_grid(self, person_id: str, grid_code: str) -> bool:
        # Inside: the person holds a role in the case's grid (网格, 14 digits) or below;
        # a community or street holder is outside it, as is a neighbouring grid's.
        grid = grid_code[:14]
        return any(ra.unit.startswith(grid) for ra in self.tree.roles_of(person_id))

    def tell(self, incident: Incident, people: list[str | None], at: datetime,
             fallback_level: int = 1) -> tuple[Notification, ...]:
        """A transition notification to ``people`` (those the grid tree knows); with
        nobody among them, the grid's dispatching level (``fallback_level``, the grid
        leader) instead, when the incident has no assignee to tell."""
        rs = [r for p in people if p for r in [self.tree.recipient(p, at)] if r is not None]
        if not rs and fallback_level and incident.grid_code and incident.assignee is None:
            try:
                rs = self.tree.recipients(incident.grid_code, fallback_level, at,
                                          category=incident.category)
            except (KeyError, ValueError):
                rs = []
        if not rs:
            return ()
        return (Notification(
            incident_id=incident.id, grid_code=incident.grid_code,
            level=incident.escalation_level, recipients=tuple(rs), reason="transition",
            severity=incident.severity, title=incident.title, category=incident.category,
            state=incident.state, at=at),)

    # ------------------------------------------------------------ timers

    def review_due(self, incident: Incident, now: datetime) -> Transition | None:
        """A parked incident whose review date came, back to registered, with a
        reminder to whoever dispatched it (else the grid leader)."""
        t = lifecycle.review_due(incident, now)
        if t is None:
            return None
        return Transition(t.incident, t.audit,
                          self.tell(t.incident, [incident.dispatched_by], now))

    def due(self, incident: Incident, now: datetime | None = None) -> EscalationDecision | None:
        return self.escalator.due(incident, now or self.clock.now())


def _small(alarm: Alarm) -> dict[str, Any]:
    out: dict[str, Any] = {"severity": alarm.severity.name.lower()}
    if alarm.confidence != 1.0:
        out["confidence"] = alarm.confidence
    return out


__all__ = ["IncidentEngine", "RelatedFilter"]
