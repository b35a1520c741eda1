"""Lifecycle: every valid and invalid transition, deadlines, optimistic concurrency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.alerts import lifecycle
from hub.alerts.lifecycle import ConflictError, LifecycleError, apply
from hub.alerts.model import Action, Incident
from hub.config import load_site
from hub.domain import Category, IncidentState, Severity

S = IncidentState
SITE = load_site(Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml")
T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


def incident(state: IncidentState = S.REPORTED, **kw) -> Incident:
    base = dict(
        id=7, dedup_key="sos:s01", category=Category.SOS, severity=Severity.CRITICAL,
        state=state, title="3-2-501 王秀英 紧急呼叫", opened_at=T0, updated_at=T0,
        grid_code="1101050010020103", subject_id="s01",
    )
    base.update(kw)
    return Incident(**base)


def do(inc: Incident, action: Action, at: datetime = T0, **kw):
    kw.setdefault("actor", "op1")
    return apply(inc, action, at=at, site=SITE, **kw)


NEEDS = {
    Action.CANCEL: {"reason": "误报，住户误按"},
    Action.DISPATCH: {"assignee": "wang-wei"},
    Action.HANDLE: {"reason": "已上门，老人无恙"},
    Action.REOPEN: {"reason": "核查未通过"},
    Action.COMMENT: {"reason": "已电话联系子女"},
    Action.RETURN: {"reason": "不属本网格", "actor": "wang-wei"},
    Action.PARK: {"reason": "需街道协调", "review_at": T0 + timedelta(days=30)},
    Action.SUPERVISE: {"reason": "请今日办结"},
    Action.VERIFY: {"reason": "现场核查属实"},
}
# What the incident needs to allow the action besides its state.
PREP = {
    Action.CLOSE: {"verified_by": "op2"},  # SOS needs its on-site check first
    Action.SUPERVISE: {"escalations": 1},  # only an overdue case is supervised
    Action.VERIFY: {"handled_by": "wang-wei"},
}
VALID = [
    (S.REPORTED, Action.REGISTER, S.REGISTERED),
    (S.REPORTED, Action.CANCEL, S.CANCELLED),
    (S.REGISTERED, Action.CANCEL, S.CANCELLED),
    (S.REGISTERED, Action.DISPATCH, S.DISPATCHED),
    (S.DISPATCHED, Action.DISPATCH, S.DISPATCHED),
    (S.DISPATCHED, Action.ACCEPT, S.ACCEPTED),
    (S.ACCEPTED, Action.HANDLE, S.HANDLED),
    (S.HANDLED, Action.CLOSE, S.CLOSED),
    (S.HANDLED, Action.REOPEN, S.DISPATCHED),
    (S.DISPATCHED, Action.RETURN, S.REGISTERED),
    (S.ACCEPTED, Action.RETURN, S.REGISTERED),
    (S.REGISTERED, Action.PARK, S.PARKED),
    (S.DISPATCHED, Action.PARK, S.PARKED),
    (S.ACCEPTED, Action.PARK, S.PARKED),
    (S.PARKED, Action.RESUME, S.REGISTERED),
    (S.REGISTERED, Action.SUPERVISE, S.REGISTERED),
    (S.DISPATCHED, Action.SUPERVISE, S.DISPATCHED),
    (S.ACCEPTED, Action.SUPERVISE, S.ACCEPTED),
    (S.HANDLED, Action.VERIFY, S.HANDLED),
] + [(s, Action.COMMENT, s) for s in S if s.is_open]


@pytest.mark.parametrize(("frm", "action", "to"), VALID)
def test_valid_transition(frm: IncidentState, action: Action, to: IncidentState) -> None:
    inc = incident(frm, assignee="wang-wei" if frm not in (S.REPORTED, S.REGISTERED) else None,
                   **PREP.get(action, {}))
    kw = NEEDS.get(action, {})
    t = do(inc, action, at=T0 + timedelta(seconds=5), **kw)
    assert t.incident.state is to
    assert t.incident.version == inc.version + 1
    assert inc.state is frm  # the input is untouched
    a = t.audit
    assert (a.incident_id, a.actor, a.action) == (7, kw.get("actor", "op1"), action)
    assert (a.from_state, a.to_state) == (frm, to)
    assert a.at == T0 + timedelta(seconds=5)


VALID_PAIRS = {(f, a) for f, a, _ in VALID}
INVALID = [
    (s, a)
    for s in S
    for a in lifecycle.USER_ACTIONS
    if (s, a) not in VALID_PAIRS
]


@pytest.mark.parametrize(("frm", "action"), INVALID)
def test_invalid_transition(frm: IncidentState, action: Action) -> None:
    msg = f"cannot {action.value} incident 7 in state {frm.value}"
    with pytest.raises(LifecycleError, match=msg):
        do(incident(frm), action, **NEEDS.get(action, {}))


def test_invalid_cases_cover_closed_and_cancelled() -> None:
    assert len(INVALID) + len(VALID) == len(S) * len(lifecycle.USER_ACTIONS)
    assert lifecycle.allowed_actions(S.CLOSED) == []
    assert lifecycle.allowed_actions(S.CANCELLED) == []


@pytest.mark.parametrize(
    ("frm", "action", "msg"),
    [
        (S.REPORTED, Action.CANCEL, "cancelling needs a reason"),
        (S.REGISTERED, Action.DISPATCH, "needs an assignee"),
        (S.ACCEPTED, Action.HANDLE, "handling needs a note"),
        (S.HANDLED, Action.REOPEN, "reopening needs a reason"),
    ],
)
def test_missing_reason_or_assignee(frm: IncidentState, action: Action, msg: str) -> None:
    with pytest.raises(LifecycleError, match=msg):
        do(incident(frm), action, reason="   ")


def test_engine_actions_are_not_user_actions() -> None:
    for a in (Action.ESCALATE, Action.REPORT, Action.CLEAR, Action.GROUP, Action.REVIEW):
        with pytest.raises(LifecycleError, match="done by the engine"):
            do(incident(), a)
    with pytest.raises(LifecycleError, match="unknown action"):
        do(incident(), "explode")  # type: ignore[arg-type]
    with pytest.raises(LifecycleError, match="actor"):
        do(incident(), Action.REGISTER, actor="")


def test_conflict_on_stale_version() -> None:
    inc = incident(S.REPORTED, version=4)
    ok = do(inc, Action.REGISTER, expected_version=4)
    assert ok.incident.version == 5
    # A second operator acting on what they read (version 4) loses with a clear error.
    with pytest.raises(ConflictError, match="expected version 4, it is now at version 5") as e:
        do(ok.incident, Action.CANCEL, expected_version=4, reason="误报")
    assert (e.value.expected, e.value.actual, e.value.incident_id) == (4, 5, 7)


def test_deadlines_follow_the_category_limits() -> None:
    sos = SITE.category(Category.SOS)  # accept_s 120, handle_s 900
    t = do(incident(S.REGISTERED), Action.DISPATCH, at=T0, assignee="wang-wei")
    assert t.incident.deadline_at == T0 + timedelta(seconds=sos.accept_s)
    assert t.incident.deadline_kind == "accept"
    assert t.incident.assignee == "wang-wei" and t.incident.dispatched_at == T0
    assert t.audit.data["deadline_at"] == (T0 + timedelta(seconds=120)).isoformat()

    t2 = do(t.incident, Action.ACCEPT, at=T0 + timedelta(seconds=30), actor="wang-wei")
    assert t2.incident.deadline_at == T0 + timedelta(seconds=30 + 900)
    assert t2.incident.deadline_kind == "handle"
    assert t2.incident.accepted_at == T0 + timedelta(seconds=30)

    t3 = do(t2.incident, Action.HANDLE, at=T0 + timedelta(seconds=600), reason="已处置")
    assert t3.incident.deadline_at is None and t3.incident.deadline_kind is None
    assert t3.audit.reason == "已处置"

    # The check fails: back to dispatched, the accept clock runs again.
    t4 = do(t3.incident, Action.REOPEN, at=T0 + timedelta(seconds=700), reason="老人仍不适")
    assert t4.incident.state is S.DISPATCHED
    assert t4.incident.deadline_at == T0 + timedelta(seconds=700 + 120)
    assert t4.incident.accepted_at is None

    t5 = do(t4.incident, Action.ACCEPT, at=T0 + timedelta(seconds=710), actor="wang-wei")
    t6 = do(t5.incident, Action.HANDLE, at=T0 + timedelta(seconds=720), reason="送医")
    # An SOS is closed only after an on-site check by someone else than the handler.
    assert t6.incident.handled_by == "op1"
    with pytest.raises(LifecycleError, match="sos needs an on-site check"):
        do(t6.incident, Action.CLOSE, at=T0 + timedelta(seconds=790), reason="核查通过")
    v = do(t6.incident, Action.VERIFY, at=T0 + timedelta(seconds=790), actor="op2",
           reason="现场属实")
    t7 = do(v.incident, Action.CLOSE, at=T0 + timedelta(seconds=800), reason="核查通过")
    assert t7.incident.state is S.CLOSED and not t7.incident.is_open
    assert t7.incident.closed_at == T0 + timedelta(seconds=800)
    assert t7.incident.version == 9


def test_cancel_stops_the_clock_and_records_reason() -> None:
    inc = incident(S.REPORTED, deadline_at=T0 + timedelta(seconds=120), deadline_kind="accept")
    t = do(inc, Action.CANCEL, reason="误报", source="10.0.0.5")
    assert t.incident.state is S.CANCELLED and t.incident.deadline_at is None
    assert (t.audit.reason, t.audit.source) == ("误报", "10.0.0.5")


def test_reassign_keeps_previous_assignee_in_audit() -> None:
    t = do(incident(S.DISPATCHED, assignee="wang-wei"), Action.DISPATCH, assignee="zhao-min")
    assert t.incident.assignee == "zhao-min"
    assert t.audit.data["previous_assignee"] == "wang-wei"


def test_audit_round_trips_to_json_types() -> None:
    t = do(incident(S.REGISTERED), Action.DISPATCH, assignee="wang-wei")
    d = t.audit.to_dict()
    assert d["action"] == "dispatch" and d["from_state"] == "registered"
    inc2 = Incident.from_dict(t.incident.to_dict())
    assert inc2 == t.incident
