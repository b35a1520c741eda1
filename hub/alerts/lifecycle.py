"""The incident lifecycle (GB/T 30428-style), as a pure state machine.

    reported ──register──▶ registered ──dispatch──▶ dispatched ──accept──▶ accepted
       │                      │                        ▲   │                  │
       └──────cancel──────────┴──▶ cancelled           │   └─dispatch (reassign)
                                                       │                   handle
                                   closed ◀──close── handled ──reopen───┘ (check failed)

The case flow of GB/T 30428.8 on top of it: 退回 ``return`` (the assignee gives a
dispatch back with a reason: registered again, assignee cleared), 挂账 ``park`` (not
solvable now: parked until a review date at most a year ahead, still open; ``resume``
or the review date, ``review_due``, bring it back to registered), 督办 ``supervise`` (a
higher level flags an overdue case; the state does not change) and 核查 ``verify``
(for a category with ``verify_required``, closing waits for a check by someone other
than the handler).

Every action is validated and yields the incident's next version plus one audit row.
Time limits: dispatching starts the "accept" deadline (category accept_s); accepting
starts the "handle" deadline (handle_s); handling, returning and parking stop the clock.
Who may take an action is ``role_refusal`` (pure, the API answers 403 with it).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

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
    Action.RETURN: (frozenset({S.DISPATCHED, S.ACCEPTED}), S.REGISTERED),
    Action.PARK: (frozenset({S.REGISTERED, S.DISPATCHED, S.ACCEPTED}), S.PARKED),
    Action.RESUME: (frozenset({S.PARKED}), S.REGISTERED),
    Action.SUPERVISE: (frozenset({S.REGISTERED, S.DISPATCHED, S.ACCEPTED}), None),
    Action.VERIFY: (frozenset({S.HANDLED}), None),
}
# Actions people take; REPORT/ESCALATE/CLEAR/GROUP/REVIEW are the engine's own.
USER_ACTIONS: frozenset[Action] = frozenset(RULES)
_NEEDS_REASON = {
    Action.CANCEL: "cancelling needs a reason (why it is a false alarm)",
    Action.HANDLE: "handling needs a note saying what was done",
    Action.REOPEN: "reopening needs a reason (what the check found)",
    Action.COMMENT: "a comment needs text",
    Action.RETURN: "returning needs a reason (why it cannot be done by you)",
    Action.PARK: "parking needs a reason (why it cannot be solved now)",
    Action.SUPERVISE: "supervising needs a reason (what is expected, by when)",
    Action.VERIFY: "verifying needs a note saying what the on-site check found",
}
MAX_PARK = timedelta(days=365)  # a review date at most a year ahead


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
    S.PARKED,
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
    S.PARKED: ("挂账", "Parked"),
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
    Action.RETURN: ("退回", "Return to dispatcher"),
    Action.PARK: ("挂账", "Park until review"),
    Action.RESUME: ("恢复办理", "Take up again"),
    Action.SUPERVISE: ("督办", "Supervise (overdue)"),
    Action.VERIFY: ("现场核查", "Verify on site"),
    Action.REVIEW: ("挂账到期", "Review date reached"),
}
Role = Literal["admin", "operator", "grid_worker", "viewer"]


def allowed_actions(state: IncidentState) -> list[Action]:
    """The actions a user may take from ``state`` (for the console's buttons)."""
    return [a for a, (froms, _) in RULES.items() if state in froms]


def describe() -> dict[str, Any]:
    """The lifecycle as data for the console: states in their order with labels,
    whether they are open and which one an incident starts in, the actions people
    take from each state, where each action leads, which need a reason, an
    assignee or a review date, and labels for every audit action."""
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
             "needs_assignee": a is Action.DISPATCH,
             "needs_review_at": a is Action.PARK}
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
    review_at: datetime | None = None,
) -> Transition:
    """Apply one user action to ``incident`` at hub time ``at``. Returns the next
    version of the incident (the input is not modified) and its audit row.

    Raises ``ConflictError`` when ``expected_version`` is given and differs, and
    ``LifecycleError`` for an action the state does not allow or one missing its
    reason/assignee/review date, a close that waits for its on-site check, a verify
    by the handler, a return by someone other than the assignee, or supervising a case
    that is not overdue."""
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
    _check_case_flow(incident, action, at, actor, limits, review_at)

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
        ch.update(handled_at=at, handled_by=actor, deadline_at=None, deadline_kind=None)
    elif action in (Action.CLOSE, Action.CANCEL):
        ch.update(closed_at=at, deadline_at=None, deadline_kind=None)
    elif action is Action.RETURN:
        ch.update(assignee=None, dispatched_at=None, accepted_at=None, deadline_at=None,
                  deadline_kind=None)
    elif action is Action.PARK:
        ch.update(review_at=review_at, deadline_at=None, deadline_kind=None)
    elif action is Action.RESUME:
        ch.update(review_at=None)
    elif action is Action.SUPERVISE:
        ch.update(supervised_by=actor)
    elif action is Action.VERIFY:
        ch.update(verified_by=actor)
    if action is Action.DISPATCH:
        ch["dispatched_by"] = actor
    if action is Action.REOPEN:
        # A failed check: the next handling needs its own check.
        ch.update(handled_by=None, verified_by=None)

    new = incident.copy(**ch)
    audit_data = dict(data or {})
    if action is Action.DISPATCH:
        audit_data["assignee"] = assignee
        if incident.assignee and incident.assignee != assignee:
            audit_data["previous_assignee"] = incident.assignee
    if action is Action.RETURN:
        audit_data["returned_by"] = incident.assignee
        audit_data["dispatcher"] = incident.dispatched_by
    if action is Action.PARK and review_at is not None:
        audit_data["review_at"] = review_at.isoformat()
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


def _check_case_flow(incident: Incident, action: Action, at: datetime, actor: str,
                     limits: CategoryInfo, review_at: datetime | None) -> None:
    if action is Action.RETURN and actor != incident.assignee:
        raise LifecycleError(
            f"only the assignee ({incident.assignee or 'nobody'}) may return incident "
            f"{incident.id}")
    if action is Action.PARK:
        if review_at is None:
            raise LifecycleError("parking needs a review date (review_at)")
        if review_at.tzinfo is None:
            raise LifecycleError("the review date must carry a time zone")
        if review_at <= at:
            raise LifecycleError("the review date must lie in the future")
        if review_at > at + MAX_PARK:
            raise LifecycleError("the review date must lie within a year")
    elif review_at is not None:
        raise LifecycleError("only parking takes a review date")
    if action is Action.SUPERVISE and not _overdue(incident, at):
        raise LifecycleError(
            f"incident {incident.id} is not overdue: supervising is for a case whose "
            "time limit ran out")
    if action is Action.VERIFY and actor == incident.handled_by:
        raise LifecycleError("the on-site check must be made by someone other than the "
                             f"handler ({incident.handled_by})")
    if action is Action.CLOSE and limits.verify_required and not incident.verified_by:
        raise LifecycleError(
            f"category {limits.code} needs an on-site check (verify) before closing")


def _overdue(incident: Incident, at: datetime) -> bool:
    return incident.escalations > 0 or (
        incident.deadline_at is not None and incident.deadline_at <= at)


def review_due(incident: Incident, at: datetime) -> Transition | None:
    """A parked incident whose review date has come goes back to registered, for the
    dispatcher to take up again (the timers notify them); None when it is not due."""
    if incident.state is not S.PARKED or incident.review_at is None or incident.review_at > at:
        return None
    new = incident.copy(state=S.REGISTERED, review_at=None, updated_at=at,
                        version=incident.version + 1)
    audit = AuditEntry(
        incident_id=incident.id, at=at, actor="system", action=Action.REVIEW,
        from_state=S.PARKED, to_state=S.REGISTERED, source="system",
        data={"review_at": incident.review_at.isoformat(),
              "dispatcher": incident.dispatched_by})
    return Transition(new, audit)


def role_refusal(action: Action | str, *, role: Role | str, actor: str, scope_code: str,
                 incident: Incident) -> str | None:
    """Why ``actor`` (with ``role`` over the grid subtree ``scope_code``) may not take
    a case-flow action on ``incident``; None when they may. Return: the assignee only.
    Park and resume: a dispatcher (operator) or leader (admin). Supervise: an operator
    or admin whose scope lies above the case's grid unit. Verify: an operator or admin,
    never the handler."""
    a = Action(action)
    if a is Action.RETURN:
        if actor != incident.assignee:
            return "only the assignee may return a dispatch"
    elif a in (Action.PARK, Action.RESUME):
        if role not in ("operator", "admin"):
            return f"role {role!r} may not {a.value} incidents (dispatchers and leaders may)"
    elif a is Action.SUPERVISE:
        if role not in ("operator", "admin"):
            return f"role {role!r} may not supervise incidents"
        grid = incident.grid_code or ""
        if not (grid.startswith(scope_code) and len(scope_code) < len(grid)):
            return (f"supervising needs a level above the case's grid unit {grid or '-'}; "
                    f"your scope is {scope_code or 'the whole site'}")
    elif a is Action.VERIFY:
        if role not in ("operator", "admin"):
            return f"role {role!r} may not verify incidents"
        if actor == incident.handled_by:
            return "the handler may not verify their own handling"
    return None
