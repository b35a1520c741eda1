"""The incident lifecycle (GB/T 30428-style), as a pure state machine.

    reported ──register──▶ registered ──dispatch──▶ dispatched ──accept──▶ accepted
       │                      │                        ▲   │                  │
       └──────cancel──────────┴──▶ cancelled           │   └─dispatch (reassign)
                                                       │                   handle
                                   closed ◀──close── handled ──reopen───┘ (check failed)

Every action is validated and yields the incident's next version plus one audit row.
Time limits: dispatching starts the "accept" deadline (category accept_s); accepting
starts the "handle" deadline (handle_s); handling stops the clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hub.alerts.model import Action, AuditEntry, Incident, Transition
from hub.alerts.notifiers.notes import NOTE_LABELS
from hub.categories import CategoryInfo
from hub.config import Site
from hub.domain import IncidentState

S = IncidentState

# action -> (states it may start from, state it leads to; None = unchanged)
RULES: dict[Action, tuple[frozenset[IncidentState], IncidentState | None]] = {
    Action.REGISTER: (frozenset({S.REPORTED}), S.REGISTERED),
    Action.CANCEL: (frozenset({S.REPORTED, S.REGISTERED}), S.CANCELLED),
    Action.DISPATCH: (frozenset({S.REGISTERED, S.DISPATCHED}), S.DISPATCHED),
    Action.ACCEPT: (frozenset({S.DISPATCHED}), S.ACCEPTED),
    Action.HANDLE: (frozenset({S.ACCEPTED}), S.HANDLED),
    Action.CLOSE: (frozenset({S.HANDLED}), S.CLOSED),
    Action.REOPEN: (frozenset({S.HANDLED}), S.DISPATCHED),
    Action.COMMENT: (frozenset(s for s in S if s.is_open), None),
}
# Actions people take; REPORT/ESCALATE/CLEAR/GROUP are the engine's own.
USER_ACTIONS: frozenset[Action] = frozenset(RULES)
_NEEDS_REASON = {
    Action.CANCEL: "cancelling needs a reason (why it is a false alarm)",
    Action.HANDLE: "handling needs a note saying what was done",
    Action.REOPEN: "reopening needs a reason (what the check found)",
    Action.COMMENT: "a comment needs text",
}


class LifecycleError(ValueError):
    """An action that the incident's state does not allow, or one missing what it
    needs. The message says which and why."""


class ConflictError(LifecycleError):
    """The incident changed since the caller read it (optimistic concurrency)."""

    def __init__(self, incident_id: int | None, expected: int, actual: int) -> None:
        super().__init__(
            f"incident {incident_id} was changed by someone else: expected version "
            f"{expected}, it is now at version {actual}; reload and try again"
        )
        self.incident_id = incident_id
        self.expected = expected
        self.actual = actual


# The states in the order an incident passes them (the console lists them so).
FLOW: tuple[IncidentState, ...] = (
    S.REPORTED, S.REGISTERED, S.DISPATCHED, S.ACCEPTED, S.HANDLED, S.CLOSED, S.CANCELLED,
)
# Labels for the console (served by GET /api/meta; the browser holds no copy).
STATE_LABELS: dict[IncidentState, tuple[str, str]] = {
    S.REPORTED: ("上报", "Reported"),
    S.REGISTERED: ("立案", "Registered"),
    S.CANCELLED: ("作废", "Cancelled"),
    S.DISPATCHED: ("派遣", "Dispatched"),
    S.ACCEPTED: ("签收", "Accepted"),
    S.HANDLED: ("处置", "Handled"),
    S.CLOSED: ("结案", "Closed"),
}
ACTION_LABELS: dict[Action, tuple[str, str]] = {
    Action.REGISTER: ("立案", "Register"),
    Action.CANCEL: ("作废（误报）", "Cancel (false alarm)"),
    Action.DISPATCH: ("派遣", "Dispatch"),
    Action.ACCEPT: ("签收", "Accept"),
    Action.HANDLE: ("处置完成", "Mark handled"),
    Action.CLOSE: ("核查结案", "Close after check"),
    Action.REOPEN: ("核查不通过，重新派遣", "Check failed: dispatch again"),
    Action.COMMENT: ("备注", "Comment"),
    Action.REPORT: ("上报", "Reported"),
    Action.ESCALATE: ("超时升级", "Escalated (time limit)"),
    Action.CLEAR: ("告警解除", "Alarm cleared"),
    Action.GROUP: ("合并", "Grouped"),
}


def allowed_actions(state: IncidentState) -> list[Action]:
    """The actions a user may take from ``state`` (for the console's buttons)."""
    return [a for a, (froms, _) in RULES.items() if state in froms]


def describe() -> dict[str, Any]:
    """The lifecycle as data for the console: states in their order with labels,
    whether they are open and which one an incident starts in, the actions people
    take from each state, where each action leads, which need a reason or an
    assignee, and labels for every audit action."""
    return {
        "states": [
            {"code": st.value, "open": st.is_open, "initial": st is S.REPORTED,
             "labels": {"zh": STATE_LABELS[st][0], "en": STATE_LABELS[st][1]},
             "actions": [a.value for a in allowed_actions(st)]}
            for st in FLOW
        ],
        "transitions": [
            {"action": a.value, "from": sorted(f.value for f in froms),
             "to": to.value if to else None, "needs_reason": a in _NEEDS_REASON,
             "needs_assignee": a is Action.DISPATCH}
            for a, (froms, to) in RULES.items()
        ],
        "actions": {k.value: {"zh": zh, "en": en} for k, (zh, en) in ACTION_LABELS.items()}
        | {k: {"zh": zh, "en": en} for k, (zh, en) in NOTE_LABELS.items()},
    }


def _limits(site: Site | CategoryInfo, incident: Incident) -> CategoryInfo:
    # An incident stored under a category that is no longer registered keeps the
    # default limits instead of failing its transitions.
    return site if isinstance(site, CategoryInfo) else site.registry.resolve(incident.category)


def apply(
    incident: Incident,
    action: Action | str,
    *,
    at: datetime,
    actor: str,
    site: Site | CategoryInfo,
    source: str = "api",
    reason: str | None = None,
    assignee: str | None = None,
    expected_version: int | None = None,
    data: dict[str, Any] | None = None,
) -> Transition:
    """Apply one user action to ``incident`` at hub time ``at``. Returns the next
    version of the incident (the input is not modified) and its audit row.

    Raises ``ConflictError`` when ``expected_version`` is given and differs, and
    ``LifecycleError`` for an action the state does not allow or one missing its
    reason/assignee."""
    try:
        action = Action(action)
    except ValueError:
        raise LifecycleError(f"unknown action {action!r}") from None
    if action not in RULES:
        raise LifecycleError(f"{action.value} is done by the engine, not by a person")
    if at.tzinfo is None:
        raise LifecycleError("the time of a transition must be an aware datetime")
    if not actor:
        raise LifecycleError("every transition needs an actor (who did it)")
    if expected_version is not None and expected_version != incident.version:
        raise ConflictError(incident.id, expected_version, incident.version)
    froms, to = RULES[action]
    if incident.state not in froms:
        allowed = ", ".join(a.value for a in allowed_actions(incident.state)) or "none"
        raise LifecycleError(
            f"cannot {action.value} incident {incident.id} in state {incident.state.value}; "
            f"allowed from {incident.state.value}: {allowed}"
        )
    reason = reason.strip() if reason else None
    if action in _NEEDS_REASON and not reason:
        raise LifecycleError(_NEEDS_REASON[action])
    if action is Action.DISPATCH and not assignee:
        raise LifecycleError("dispatching needs an assignee (the person to send)")

    limits = _limits(site, incident)
    new_state = to or incident.state
    ch: dict[str, Any] = {"state": new_state, "updated_at": at, "version": incident.version + 1}
    if action is Action.DISPATCH:
        ch.update(
            assignee=assignee,
            dispatched_at=at,
            deadline_at=at + timedelta(seconds=limits.accept_s),
            deadline_kind="accept",
        )
    elif action is Action.REOPEN:
        ch.update(
            dispatched_at=at,
            accepted_at=None,
            handled_at=None,
            deadline_at=at + timedelta(seconds=limits.accept_s),
            deadline_kind="accept",
        )
    elif action is Action.ACCEPT:
        ch.update(
            accepted_at=at,
            deadline_at=at + timedelta(seconds=limits.handle_s),
            deadline_kind="handle",
        )
        if incident.assignee is None:
            ch["assignee"] = actor
    elif action is Action.HANDLE:
        ch.update(handled_at=at, deadline_at=None, deadline_kind=None)
    elif action in (Action.CLOSE, Action.CANCEL):
        ch.update(closed_at=at, deadline_at=None, deadline_kind=None)

    new = incident.copy(**ch)
    audit_data = dict(data or {})
    if action is Action.DISPATCH:
        audit_data["assignee"] = assignee
        if incident.assignee and incident.assignee != assignee:
            audit_data["previous_assignee"] = incident.assignee
    if new.deadline_at is not None and new.deadline_at != incident.deadline_at:
        audit_data["deadline_at"] = new.deadline_at.isoformat()
        audit_data["deadline_kind"] = new.deadline_kind
    audit = AuditEntry(
        incident_id=incident.id,
        at=at,
        actor=actor,
        action=action,
        from_state=incident.state,
        to_state=new_state,
        reason=reason,
        source=source,
        data=audit_data,
    )
    return Transition(new, audit)
