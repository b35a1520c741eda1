"""The case flow of GB/T 30428.8 in the pure lifecycle: return, park and its review
date, supervise, the on-site check before closing, and who may take each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.alerts import lifecycle
from hub.alerts.lifecycle import LifecycleError, apply, review_due, role_refusal
from hub.alerts.model import Action, Incident
from hub.config import load_site
from hub.domain import Category, IncidentState, Severity

S = IncidentState
SITE = load_site(Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml")
T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
GRID = "1101050010020103"


def incident(state: IncidentState, category: str = Category.WATER, **kw) -> Incident:
    base = dict(id=9, dedup_key="water:s01", category=category, severity=Severity.MINOR,
                state=state, title="用水异常", opened_at=T0, updated_at=T0, grid_code=GRID)
    return Incident(**(base | kw))


def do(inc: Incident, action: Action, at: datetime = T0, actor: str = "op1", **kw):
    return apply(inc, action, at=at, actor=actor, site=SITE, **kw)


def test_return_goes_back_to_the_dispatcher_with_the_assignee_cleared() -> None:
    d = do(incident(S.REGISTERED), Action.DISPATCH, assignee="wang-wei")
    assert d.incident.dispatched_by == "op1"
    a = do(d.incident, Action.ACCEPT, at=T0 + timedelta(seconds=10), actor="wang-wei")
    r = do(a.incident, Action.RETURN, at=T0 + timedelta(seconds=20), actor="wang-wei",
           reason="不属本网格")
    assert r.incident.state is S.REGISTERED
    assert (r.incident.assignee, r.incident.deadline_at, r.incident.accepted_at) == (
        None, None, None)
    assert r.audit.reason == "不属本网格"
    assert r.audit.data == {"returned_by": "wang-wei", "dispatcher": "op1"}


def test_only_the_assignee_returns_and_only_with_a_reason() -> None:
    inc = incident(S.DISPATCHED, assignee="wang-wei")
    with pytest.raises(LifecycleError, match="only the assignee"):
        do(inc, Action.RETURN, actor="li-na", reason="x")
    with pytest.raises(LifecycleError, match="returning needs a reason"):
        do(inc, Action.RETURN, actor="wang-wei", reason="  ")


@pytest.mark.parametrize(("review", "msg"), [
    (None, "needs a review date"),
    (T0, "must lie in the future"),
    (T0 - timedelta(seconds=1), "must lie in the future"),
    (T0 + timedelta(days=365, seconds=1), "within a year"),
])
def test_park_review_date_is_bounded(review: datetime | None, msg: str) -> None:
    with pytest.raises(LifecycleError, match=msg):
        do(incident(S.REGISTERED), Action.PARK, reason="需街道协调", review_at=review)


def test_park_keeps_it_open_and_stops_the_clock() -> None:
    inc = incident(S.ACCEPTED, assignee="wang-wei", deadline_at=T0 + timedelta(hours=1),
                   deadline_kind="handle")
    p = do(inc, Action.PARK, reason="需街道协调", review_at=T0 + timedelta(days=365))
    assert p.incident.state is S.PARKED and p.incident.is_open
    assert (p.incident.deadline_at, p.incident.review_at) == (None, T0 + timedelta(days=365))
    assert p.audit.data["review_at"] == (T0 + timedelta(days=365)).isoformat()
    with pytest.raises(LifecycleError, match="only parking takes a review date"):
        do(incident(S.REGISTERED), Action.COMMENT, reason="x", review_at=T0 + timedelta(1))


def test_review_date_brings_it_back_to_the_second() -> None:
    due = T0 + timedelta(days=3)
    inc = incident(S.PARKED, review_at=due, dispatched_by="op1", version=4)
    assert review_due(inc, due - timedelta(seconds=1)) is None
    t = review_due(inc, due)
    assert t is not None
    assert (t.incident.state, t.incident.review_at, t.incident.version) == (
        S.REGISTERED, None, 5)
    assert (t.audit.action, t.audit.actor, t.audit.from_state) == (
        Action.REVIEW, "system", S.PARKED)
    assert t.audit.data == {"review_at": due.isoformat(), "dispatcher": "op1"}
    assert review_due(incident(S.REGISTERED, review_at=due), due) is None


def test_supervise_only_an_overdue_case() -> None:
    deadline = T0 + timedelta(minutes=10)
    inc = incident(S.DISPATCHED, assignee="wang-wei", deadline_at=deadline,
                   deadline_kind="accept")
    with pytest.raises(LifecycleError, match="not overdue"):
        do(inc, Action.SUPERVISE, at=deadline - timedelta(seconds=1), actor="street",
           reason="请今日办结")
    t = do(inc, Action.SUPERVISE, at=deadline, actor="street", reason="请今日办结")
    assert (t.incident.state, t.incident.supervised_by) == (S.DISPATCHED, "street")


def test_close_waits_for_a_verify_by_someone_else_than_the_handler() -> None:
    inc = incident(S.ACCEPTED, category=Category.FIRE_LANE, assignee="wang-wei")
    h = do(inc, Action.HANDLE, actor="wang-wei", reason="车辆已挪走")
    with pytest.raises(LifecycleError, match="fire_lane needs an on-site check"):
        do(h.incident, Action.CLOSE, reason="ok")
    with pytest.raises(LifecycleError, match="someone other than the handler"):
        do(h.incident, Action.VERIFY, actor="wang-wei", reason="属实")
    v = do(h.incident, Action.VERIFY, actor="op1", reason="现场属实")
    assert (v.incident.state, v.incident.verified_by) == (S.HANDLED, "op1")
    assert do(v.incident, Action.CLOSE, reason="ok").incident.state is S.CLOSED
    # A failed check throws the verification away with the handling.
    r = do(v.incident, Action.REOPEN, reason="车又停回来了")
    assert (r.incident.verified_by, r.incident.handled_by) == (None, None)


def test_verify_required_defaults() -> None:
    reg = SITE.registry
    assert {c.code for c in reg if c.verify_required} >= {
        Category.SOS, Category.SMOKE, Category.FALL, Category.INACTIVITY, Category.FIRE_LANE}
    assert not reg.resolve(Category.WATER).verify_required
    # A category with no verify step closes straight after handling.
    h = do(incident(S.HANDLED, handled_by="wang-wei"), Action.CLOSE, reason="ok")
    assert h.incident.state is S.CLOSED


@pytest.mark.parametrize(("action", "role", "actor", "scope", "want"), [
    (Action.RETURN, "grid_worker", "wang-wei", GRID, None),
    (Action.RETURN, "grid_worker", "li-na", GRID, "only the assignee"),
    (Action.RETURN, "operator", "op1", "", "only the assignee"),
    (Action.PARK, "operator", "op1", GRID, None),
    (Action.PARK, "admin", "lead", "", None),
    (Action.PARK, "grid_worker", "wang-wei", GRID, "may not park"),
    (Action.RESUME, "grid_worker", "wang-wei", GRID, "may not resume"),
    (Action.SUPERVISE, "operator", "street", GRID[:12], None),
    (Action.SUPERVISE, "admin", "lead", "", None),
    (Action.SUPERVISE, "operator", "op1", GRID, "a level above the case's grid"),
    (Action.SUPERVISE, "operator", "x", "110105001003", "a level above the case's grid"),
    (Action.SUPERVISE, "grid_worker", "wang-wei", GRID[:12], "may not supervise"),
    (Action.VERIFY, "operator", "op1", GRID, None),
    (Action.VERIFY, "operator", "wang-wei", GRID, "may not verify their own"),
    (Action.VERIFY, "grid_worker", "li-na", GRID, "may not verify"),
    (Action.VERIFY, "viewer", "v", "", "may not verify"),
])
def test_role_rules(action: Action, role: str, actor: str, scope: str,
                    want: str | None) -> None:
    inc = incident(S.HANDLED, assignee="wang-wei", handled_by="wang-wei")
    got = role_refusal(action, role=role, actor=actor, scope_code=scope, incident=inc)
    assert got is None if want is None else (got is not None and want in got), got


def test_the_console_gets_the_new_states_and_actions() -> None:
    d = lifecycle.describe()
    parked = next(s for s in d["states"] if s["code"] == "parked")
    assert parked["open"] and parked["labels"] == {"zh": "挂账", "en": "Parked"}
    assert parked["actions"] == ["comment", "resume"]
    accepted = next(s for s in d["states"] if s["code"] == "accepted")
    assert {"return", "park", "supervise"} <= set(accepted["actions"])
    park = next(t for t in d["transitions"] if t["action"] == "park")
    assert (park["to"], park["needs_reason"], park["needs_review_at"]) == (
        "parked", True, True)
    for a in ("return", "park", "resume", "supervise", "verify", "review"):
        assert d["actions"][a]["zh"]
