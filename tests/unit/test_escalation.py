"""Escalation to the second with an injected clock, and across a restart."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hub.alerts.engine import IncidentEngine
from hub.alerts.escalation import due
from hub.alerts.model import Action, DecisionKind, Incident
from hub.clock import ManualClock
from hub.config import load_site
from hub.domain import Alarm, AlarmState, Category, IncidentState, Severity
from hub.grid import GridTree

SITE = load_site(Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml")
TREE = GridTree.from_site(SITE)
T0 = datetime(2026, 3, 2, 2, 0, 0, tzinfo=UTC)


def inactivity(ts: datetime = T0) -> Alarm:
    return Alarm(
        rule="inactivity", category=Category.INACTIVITY, severity=Severity.MAJOR,
        state=AlarmState.FIRING, dedup_key="inactivity:s01", ts=ts,
        title="3-2-501 王秀英 12.0小时无活动", subject_id="s01",
    )


def sos(ts: datetime = T0) -> Alarm:
    return Alarm(
        rule="sos", category=Category.SOS, severity=Severity.CRITICAL, state=AlarmState.FIRING,
        dedup_key="sos:s01", ts=ts, title="3-2-501 王秀英 紧急呼叫", subject_id="s01",
        device_id="sos-3-2-501",
    )


def dispatched_sos(clock: ManualClock) -> tuple[IncidentEngine, Incident]:
    eng = IncidentEngine(SITE, TREE, clock)
    inc = eng.decide(inactivity(), None, []).incident.copy(id=1)
    inc = eng.transition(inc, Action.REGISTER, actor="op1").incident
    inc = eng.transition(inc, Action.DISPATCH, actor="op1", assignee="wang-wei").incident
    return eng, inc


def test_accept_limit_escalates_at_exact_seconds() -> None:
    clock = ManualClock(T0)
    eng, inc = dispatched_sos(clock)  # inactivity: accept_s 600
    assert inc.deadline_at == T0 + timedelta(seconds=600)
    assert eng.due(inc, T0 + timedelta(seconds=599)) is None
    e = eng.due(inc, T0 + timedelta(seconds=600))
    assert e is not None and (e.from_level, e.to_level) == (0, 1)
    inc = e.incident
    assert inc.escalation_level == 1 and inc.escalations == 1
    assert inc.deadline_at == T0 + timedelta(seconds=1200) and inc.deadline_kind == "accept"
    assert inc.state is IncidentState.DISPATCHED  # escalation does not change the state
    assert [r.person_id for r in e.notifications[0].recipients] == ["zhao-min"]
    assert e.notifications[0].reason == "escalated" and e.notifications[0].level == 1
    assert (e.audit.actor, e.audit.action, e.audit.source) == ("system", Action.ESCALATE, "system")
    assert "网格长" in e.audit.reason
    assert eng.due(inc, T0 + timedelta(seconds=1199)) is None
    e = eng.due(inc, T0 + timedelta(seconds=1200))
    assert e.to_level == 2
    assert [r.person_id for r in e.notifications[0].recipients] == ["sun-community", "police-li"]


def test_sos_accept_s_120_nothing_at_119_then_120_and_240() -> None:
    clock = ManualClock(T0)
    eng = IncidentEngine(SITE, TREE, clock)
    inc = eng.decide(sos(), None, []).incident.copy(id=5)
    assert inc.escalation_level == 2  # worker, leader and community told at once
    assert eng.due(inc, T0 + timedelta(seconds=119)) is None
    e1 = eng.due(inc, T0 + timedelta(seconds=120))
    assert (e1.from_level, e1.to_level) == (2, 3)
    assert [r.person_id for r in e1.notifications[0].recipients] == ["zhou-street"]
    assert eng.due(e1.incident, T0 + timedelta(seconds=239)) is None
    e2 = eng.due(e1.incident, T0 + timedelta(seconds=240))
    assert e2.to_level == 4 and e2.notifications[0].recipients[0].person_id == "ma-dept"
    # At the top: the next time-out stops the clock instead of escalating further.
    e3 = eng.due(e2.incident, T0 + timedelta(seconds=360))
    assert e3.exhausted and e3.to_level == 4 and e3.notifications == ()
    assert e3.incident.deadline_at is None
    assert eng.due(e3.incident, T0 + timedelta(days=1)) is None


def test_accept_stops_accept_escalation_and_starts_handle_limit() -> None:
    clock = ManualClock(T0)
    eng, inc = dispatched_sos(clock)
    clock.advance(100)
    inc = eng.transition(inc, Action.ACCEPT, actor="wang-wei").incident
    assert eng.due(inc, T0 + timedelta(seconds=600)) is None  # the accept limit is gone
    # handle_s 3600 from the accept at 100 s.
    assert eng.due(inc, T0 + timedelta(seconds=3699)) is None
    e = eng.due(inc, T0 + timedelta(seconds=3700))
    assert e.incident.deadline_kind == "handle" and "处置超时" in e.audit.reason
    assert e.incident.deadline_at == T0 + timedelta(seconds=3700 + 3600)
    inc = eng.transition(e.incident, Action.HANDLE, actor="wang-wei", reason="已处理").incident
    assert eng.due(inc, T0 + timedelta(days=3)) is None


def test_closed_incident_never_escalates() -> None:
    clock = ManualClock(T0)
    eng = IncidentEngine(SITE, TREE, clock)
    inc = eng.decide(sos(), None, []).incident.copy(id=1)
    inc = eng.transition(inc, Action.CANCEL, actor="op1", reason="误按").incident
    assert eng.due(inc, T0 + timedelta(hours=5)) is None


def test_restart_in_the_middle_of_a_countdown() -> None:
    clock = ManualClock(T0)
    eng = IncidentEngine(SITE, TREE, clock)
    d = eng.decide(sos(), None, [])
    assert d.kind is DecisionKind.CREATE
    row = json.dumps(d.incident.copy(id=9).to_dict())  # what the store keeps

    # The hub dies 70 s in; a new process with a new engine starts at 100 s.
    clock2 = ManualClock(T0 + timedelta(seconds=100))
    eng2 = IncidentEngine(SITE, GridTree.from_site(SITE), clock2)
    inc = Incident.from_dict(json.loads(row))
    assert inc.deadline_at == T0 + timedelta(seconds=120)
    fired = []
    for _ in range(25):  # the adapter's 1-second tick
        e = eng2.due(inc)
        if e is not None:
            fired.append(clock2.now())
            inc = e.incident
        clock2.advance(1)
    assert fired == [T0 + timedelta(seconds=120)]
    assert inc.escalation_level == 3 and inc.version == 2


def test_late_tick_catches_up_one_level_per_call_at_the_original_times() -> None:
    inc = IncidentEngine(SITE, TREE, ManualClock(T0)).decide(inactivity(), None, []).incident
    now = T0 + timedelta(seconds=1900)  # three limits of 600 s have run out
    steps = []
    while (e := due(inc, now, site=SITE, tree=TREE)) is not None:
        steps.append((e.to_level, e.audit.data["deadline_at"]))
        inc = e.incident
    assert steps == [
        (1, (T0 + timedelta(seconds=600)).isoformat()),
        (2, (T0 + timedelta(seconds=1200)).isoformat()),
        (3, (T0 + timedelta(seconds=1800)).isoformat()),
    ]
    assert inc.deadline_at == T0 + timedelta(seconds=2400)
