"""Incident engine: dedup, clear, grouping, inhibition, silences, notifications."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.alerts.engine import IncidentEngine
from hub.alerts.lifecycle import LifecycleError
from hub.alerts.model import Action, DecisionKind, Incident
from hub.alerts.policy import Silence
from hub.clock import ManualClock
from hub.config import load_site
from hub.domain import Alarm, AlarmState, Category, IncidentState, Severity
from hub.grid import GridTree

SITE = load_site(Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml")
TREE = GridTree.from_site(SITE)
T0 = datetime(2026, 3, 2, 2, 0, 0, tzinfo=UTC)  # 10:00 in Shanghai
G = "1101050010020103"


def alarm(
    cat: Category = Category.SOS,
    key: str = "sos:s01",
    ts: datetime = T0,
    state: AlarmState = AlarmState.FIRING,
    severity: Severity = Severity.CRITICAL,
    **kw,
) -> Alarm:
    kw.setdefault("subject_id", "s01")
    kw.setdefault("device_id", "sos-3-2-501")
    return Alarm(
        rule=cat.value, category=cat, severity=severity, state=state, dedup_key=key, ts=ts,
        title=f"3-2-501 王秀英 {cat.value}", **kw,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def engine(clock: ManualClock) -> IncidentEngine:
    return IncidentEngine(SITE, TREE, clock)


class Store:
    """The smallest stand-in for the adapter: keeps incidents in a dict and applies
    decisions the way the real store does (ids on insert, one open per dedup key)."""

    def __init__(self, engine: IncidentEngine) -> None:
        self.engine = engine
        self.incidents: dict[int, Incident] = {}
        self.decisions: list = []

    def open_by_key(self, key: str) -> Incident | None:
        for i in self.incidents.values():
            if i.dedup_key == key and i.is_open:
                return i
        return None

    def feed(self, a: Alarm):
        related = [
            i for i in self.incidents.values()
            if i.is_open and (i.subject_id == a.subject_id or i.device_id == a.device_id)
        ]
        d = self.engine.decide(a, self.open_by_key(a.dedup_key), related)
        if d.kind in (DecisionKind.CREATE, DecisionKind.GROUP):
            iid = len(self.incidents) + 1
            self.incidents[iid] = d.incident.copy(id=iid)
        elif d.kind is DecisionKind.UPDATE:
            assert d.incident.version == self.incidents[d.incident.id].version + 1
            self.incidents[d.incident.id] = d.incident
        self.decisions.append(d)
        return d


def test_new_sos_incident_notifies_three_levels_with_accept_deadline(
    engine: IncidentEngine, clock: ManualClock
) -> None:
    clock.advance(3)
    d = engine.decide(alarm(evidence={"button": 1}), None, [])
    assert d.kind is DecisionKind.CREATE
    inc = d.incident
    assert inc.id is None and inc.version == 1
    assert inc.state is IncidentState.REPORTED and inc.firing
    assert inc.grid_code == G and inc.opened_at == T0
    assert inc.reported_at == T0 + timedelta(seconds=3)
    assert inc.deadline_at == T0 + timedelta(seconds=3 + 120) and inc.deadline_kind == "accept"
    assert inc.escalation_level == 2  # notify_levels 3: worker, leader, community at once
    levels = [(n.level, [r.person_id for r in n.recipients]) for n in d.notifications]
    assert levels == [(0, ["wang-wei"]), (1, ["zhao-min"]), (2, ["sun-community", "police-li"])]
    assert all(n.reason == "new" for n in d.notifications)
    assert [a.action for a in d.audit] == [Action.REPORT]
    assert d.audit[0].actor == "engine" and d.audit[0].to_state is IncidentState.REPORTED
    json.dumps([n.to_dict() for n in d.notifications])  # JSON-able for the outbox


def test_major_incident_notifies_only_the_grid_worker(engine: IncidentEngine) -> None:
    a = alarm(Category.INACTIVITY, "inactivity:s01", severity=Severity.MAJOR)
    d = engine.decide(a, None, [])
    assert [(n.level, n.recipients[0].person_id) for n in d.notifications] == [(0, "wang-wei")]
    assert d.incident.escalation_level == 0
    assert d.incident.deadline_at == T0 + timedelta(seconds=600)


def test_redelivered_alarm_never_creates_a_second_incident(engine: IncidentEngine) -> None:
    store = Store(engine)
    a = alarm()
    assert store.feed(a).kind is DecisionKind.CREATE
    for _ in range(3):
        assert store.feed(a).kind is DecisionKind.NOOP  # same alarm redelivered
    assert len(store.incidents) == 1
    assert store.incidents[1].alarm_count == 1 and store.incidents[1].version == 1


def test_repeats_update_the_same_incident(engine: IncidentEngine, clock: ManualClock) -> None:
    store = Store(engine)
    store.feed(alarm())
    clock.advance(10)
    d = store.feed(alarm(ts=T0 + timedelta(seconds=10), evidence={"presses": 2}))
    assert d.kind is DecisionKind.UPDATE and d.notifications == ()  # nothing new to tell
    inc = store.incidents[1]
    assert (inc.alarm_count, inc.version, inc.last_alarm_ts) == (2, 2, T0 + timedelta(seconds=10))
    assert inc.evidence["presses"] == 2
    # An alarm older than the last one (out of order) changes nothing.
    assert store.feed(alarm(ts=T0 + timedelta(seconds=5))).kind is DecisionKind.NOOP
    assert len(store.incidents) == 1


def test_clear_keeps_incident_open_and_refire_notifies(engine: IncidentEngine) -> None:
    store = Store(engine)
    fall = dict(cat=Category.FALL, key="fall:s01", device_id="wearable-3-2-501")
    store.feed(alarm(**fall))
    d = store.feed(alarm(**fall, ts=T0 + timedelta(seconds=30), state=AlarmState.CLEARED))
    assert d.kind is DecisionKind.UPDATE
    inc = store.incidents[1]
    assert not inc.firing and inc.is_open and inc.cleared_at == T0 + timedelta(seconds=30)
    assert [n.reason for n in d.notifications] == ["cleared"]
    assert d.audit[0].action is Action.CLEAR
    # A second clear is a no-op; firing again tells the levels already involved.
    again = alarm(**fall, ts=T0 + timedelta(seconds=31), state=AlarmState.CLEARED)
    assert store.feed(again).kind is DecisionKind.NOOP
    d = store.feed(alarm(**fall, ts=T0 + timedelta(seconds=60)))
    assert store.incidents[1].firing
    assert [n.reason for n in d.notifications] == ["update", "update"]  # fall notify_levels 2


def test_clear_without_open_incident_is_noop(engine: IncidentEngine) -> None:
    d = engine.decide(alarm(state=AlarmState.CLEARED), None, [])
    assert d.kind is DecisionKind.NOOP and d.incident is None


def test_severity_rise_notifies(engine: IncidentEngine) -> None:
    store = Store(engine)
    key = dict(cat=Category.FALL, key="fall:cam:1", device_id="cam-b3-stair2", subject_id=None)
    store.feed(alarm(**key, severity=Severity.MAJOR))
    d = store.feed(alarm(**key, ts=T0 + timedelta(seconds=60), severity=Severity.CRITICAL))
    assert store.incidents[1].severity is Severity.CRITICAL
    assert d.notifications and d.notifications[0].reason == "update"


def test_sos_inhibits_same_household_inactivity(engine: IncidentEngine) -> None:
    store = Store(engine)
    store.feed(alarm())
    d = store.feed(alarm(Category.INACTIVITY, "inactivity:s01", ts=T0 + timedelta(hours=3),
                         severity=Severity.MAJOR, device_id=None))
    assert d.kind is DecisionKind.INHIBITED and d.related_id == 1
    assert "SOS" in d.reason
    # Another household is not inhibited.
    d2 = store.feed(alarm(Category.INACTIVITY, "inactivity:s02", subject_id="s02", device_id=None,
                          severity=Severity.MAJOR))
    assert d2.kind is DecisionKind.CREATE
    assert d2.incident.grid_code == "1101050010020102"
    # Once the SOS is closed, inactivity opens normally.
    store.incidents[1] = store.incidents[1].copy(state=IncidentState.CLOSED)
    d3 = store.feed(alarm(Category.INACTIVITY, "inactivity:s01", ts=T0 + timedelta(hours=4),
                          severity=Severity.MAJOR, device_id=None))
    assert d3.kind is DecisionKind.CREATE


def test_offline_sensor_inhibits_inactivity(engine: IncidentEngine) -> None:
    store = Store(engine)
    d = store.feed(alarm(Category.DEVICE_OFFLINE, "offline:pir-3-2-501", device_id="pir-3-2-501",
                         severity=Severity.MINOR))
    assert d.kind is DecisionKind.CREATE  # the maintenance incident
    d = store.feed(alarm(Category.INACTIVITY, "inactivity:s01", ts=T0 + timedelta(hours=12),
                         severity=Severity.MAJOR, device_id=None))
    assert d.kind is DecisionKind.INHIBITED and "offline" in d.reason


def test_grouping_same_subject_close_in_time(engine: IncidentEngine) -> None:
    store = Store(engine)
    store.feed(alarm(Category.FALL, "fall:s01", device_id="wearable-3-2-501"))
    # SOS 200 s later (fall/sos group_s default 300): linked, still its own incident.
    d = store.feed(alarm(ts=T0 + timedelta(seconds=200)))
    assert d.kind is DecisionKind.GROUP and d.incident.group_id == 1 and d.related_id == 1
    assert [a.action for a in d.audit] == [Action.REPORT, Action.GROUP]
    assert d.notifications  # still told: it is a new danger signal
    # Smoke 301 s after the SOS, its last alarm, is too late to join.
    d = store.feed(alarm(Category.SMOKE, "smoke:smoke-3-2-501", device_id="smoke-3-2-501",
                         ts=T0 + timedelta(seconds=501)))
    assert d.kind is DecisionKind.CREATE and d.incident.group_id is None
    # Exactly at the window's edge joins (<= group_s).
    d = store.feed(alarm(Category.VITALS, "vitals:s01:heart_rate", device_id="wearable-3-2-501",
                         severity=Severity.MAJOR, ts=T0 + timedelta(seconds=801)))
    assert d.kind is DecisionKind.GROUP and d.incident.group_id == 3


def test_offline_never_groups(engine: IncidentEngine) -> None:
    store = Store(engine)
    store.feed(alarm())
    d = store.feed(alarm(Category.DEVICE_OFFLINE, "offline:sos-3-2-501", severity=Severity.MINOR))
    assert d.kind is DecisionKind.CREATE


def test_silence_window_to_the_second(engine: IncidentEngine) -> None:
    start = T0 + timedelta(seconds=100)
    engine.add_silence(Silence(start, start + timedelta(hours=1), "换电池",
                               device_id="smoke-3-2-501", id="m1", maintenance=True))
    smoke = dict(cat=Category.SMOKE, key="smoke:smoke-3-2-501", device_id="smoke-3-2-501")
    before = alarm(**smoke, ts=start - timedelta(seconds=1))
    assert engine.decide(before, None, []).kind is DecisionKind.CREATE
    d = engine.decide(alarm(**smoke, ts=start), None, [])
    assert d.kind is DecisionKind.SILENCED and d.silence_id == "m1" and "换电池" in d.reason
    last = start + timedelta(hours=1) - timedelta(seconds=1)
    assert engine.decide(alarm(**smoke, ts=last), None, []).kind is DecisionKind.SILENCED
    after = alarm(**smoke, ts=last + timedelta(seconds=1))
    assert engine.decide(after, None, []).kind is DecisionKind.CREATE
    # Another device of the household is not silenced.
    assert engine.decide(alarm(ts=start), None, []).kind is DecisionKind.CREATE
    assert engine.remove_silence("m1")
    assert engine.decide(alarm(**smoke, ts=start), None, []).kind is DecisionKind.CREATE


def test_silence_by_zone_category_and_grid_subtree(engine: IncidentEngine) -> None:
    end = T0 + timedelta(days=1)
    engine.set_silences([
        Silence(T0, end, "道路施工", zone="lane", category=Category.FIRE_LANE),
        Silence(T0, end, "第二网格演练", grid_code="11010500100202"),
    ])
    lane = alarm(Category.FIRE_LANE, "firelane:cam-b3-lane:lane", device_id="cam-b3-lane",
                 subject_id=None, zone="lane", severity=Severity.MAJOR)
    assert engine.decide(lane, None, []).kind is DecisionKind.SILENCED
    other_zone = alarm(Category.FIRE_LANE, "firelane:cam-b3-lane:x", device_id="cam-b3-lane",
                       subject_id=None, zone="x", severity=Severity.MAJOR)
    assert engine.decide(other_zone, None, []).kind is DecisionKind.CREATE
    s03 = alarm(key="sos:s03", subject_id="s03", device_id="sos-6-3-601")  # grid 02
    assert engine.decide(s03, None, []).kind is DecisionKind.SILENCED


def test_silence_keeps_updating_but_does_not_notify(engine: IncidentEngine) -> None:
    store = Store(engine)
    fall = dict(cat=Category.FALL, key="fall:s01", device_id="wearable-3-2-501")
    store.feed(alarm(**fall))
    engine.add_silence(Silence(T0, T0 + timedelta(hours=1), "测试", subject_id="s01"))
    d = store.feed(alarm(**fall, ts=T0 + timedelta(seconds=5), state=AlarmState.CLEARED))
    assert d.kind is DecisionKind.UPDATE and d.notifications == ()
    assert not store.incidents[1].firing


def test_silence_validation() -> None:
    with pytest.raises(ValueError, match="must match something"):
        Silence(T0, T0 + timedelta(hours=1), "x")
    with pytest.raises(ValueError, match="before it starts"):
        Silence(T0, T0, "x", device_id="d")
    with pytest.raises(ValueError, match="needs a reason"):
        Silence(T0, T0 + timedelta(hours=1), " ", device_id="d")
    s = Silence(T0, T0 + timedelta(hours=1), "x", zone="lane", category=Category.FIRE_LANE)
    assert Silence.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_dispatch_notifies_assignee_and_rejects_unknown_person(engine: IncidentEngine) -> None:
    store = Store(engine)
    store.feed(alarm())
    inc = store.incidents[1]
    t = engine.transition(inc, Action.REGISTER, actor="op1")
    t = engine.transition(t.incident, Action.DISPATCH, actor="op1", assignee="wang-wei",
                          expected_version=2)
    assert t.incident.state is IncidentState.DISPATCHED
    told = [(n.reason, n.recipients[0].person_id) for n in t.notifications]
    assert told == [("transition", "wang-wei")]
    with pytest.raises(LifecycleError, match="unknown person"):
        engine.transition(t.incident, Action.DISPATCH, actor="op1", assignee="nobody")


def test_wrong_open_incident_is_a_programming_error(engine: IncidentEngine) -> None:
    d = engine.decide(alarm(), None, [])
    with pytest.raises(ValueError, match="dedup key"):
        engine.decide(alarm(key="sos:other"), d.incident, [])


def test_unknown_place_still_opens_incident(engine: IncidentEngine) -> None:
    d = engine.decide(alarm(subject_id=None, device_id="ghost"), None, [])
    assert d.kind is DecisionKind.CREATE and d.incident.grid_code is None
    assert all(n.recipients == () for n in d.notifications)


def test_related_filter(engine: IncidentEngine) -> None:
    f = engine.related_filter(alarm())
    assert (f.subject_id, f.device_id) == ("s01", "sos-3-2-501")
    assert f.since == T0 - timedelta(seconds=300)
