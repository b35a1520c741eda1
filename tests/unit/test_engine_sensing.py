"""Sensors -> sensing rules -> incident engine -> escalation, all pure, on one data
clock: the household story the demo tells, to the second."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hub.alerts.engine import IncidentEngine
from hub.alerts.model import Action, DecisionKind, Incident
from hub.clock import ManualClock
from hub.config import load_site
from hub.domain import Alarm, Category, IncidentState
from hub.grid import GridTree
from hub.protocol import DeviceState, Event, EventType, Status
from hub.sensing import SensingEngine

SITE = load_site(Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml")
TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=TZ)
_seq = itertools.count()


class Hub:
    """Both engines plus a dict standing in for the incidents table."""

    def __init__(self, alive: tuple[str, ...] = ()) -> None:
        self.alive = alive  # devices that send a heartbeat every 30 s
        self.clock = ManualClock(T0)
        tree = GridTree.from_site(SITE)
        self.sensing = SensingEngine(SITE, tree)
        self.engine = IncidentEngine(SITE, tree, self.clock)
        self.incidents: dict[int, Incident] = {}
        self.log: list[tuple[str, str]] = []

    def _apply(self, alarms: list[Alarm]) -> None:
        now = self.clock.now()
        for a in alarms:
            open_inc = next((i for i in self.incidents.values()
                             if i.dedup_key == a.dedup_key and i.is_open), None)
            related = [
                i for i in self.incidents.values()
                if i.is_open and (i.subject_id == a.subject_id or i.device_id == a.device_id)
            ]
            d = self.engine.decide(a, open_inc, related, now)
            self.log.append((d.kind.value, a.dedup_key))
            if d.kind in (DecisionKind.CREATE, DecisionKind.GROUP):
                iid = len(self.incidents) + 1
                self.incidents[iid] = d.incident.copy(id=iid)
            elif d.kind is DecisionKind.UPDATE:
                self.incidents[d.incident.id] = d.incident

    def at(self, seconds: float, step: int = 1) -> None:
        """Advance the clock to T0 + seconds, ticking every ``step`` s on the way."""
        target = T0 + timedelta(seconds=seconds)
        while self.clock.now() < target:
            self.clock.advance(step)
            now = self.clock.now()
            if (now - T0).total_seconds() % 30 == 0:
                for dev in self.alive:
                    self.send(dev, EventType.HEARTBEAT)
            self._apply(self.sensing.tick(now))
            for iid, inc in list(self.incidents.items()):
                while (e := self.engine.due(inc, now)) is not None:
                    self.log.append(("escalate", f"{inc.dedup_key}->{e.to_level}"))
                    inc = self.incidents[iid] = e.incident

    def send(self, device: str, type_: EventType, **data) -> None:
        m = Event(device=device, seq=next(_seq), ts=self.clock.now(), type=type_, data=data)
        self._apply(self.sensing.on_message(m))

    def by_key(self, key: str) -> Incident:
        return next(i for i in self.incidents.values() if i.dedup_key == key)


def test_offline_sensor_raises_maintenance_instead_of_inactivity() -> None:
    # Everyone keeps sending heartbeats except the PIR, which dies at 09:00:00.
    hub = Hub(alive=("door-3-2-501", "water-3-2-501"))
    hub.send("pir-3-2-501", EventType.MOTION)
    for dev in hub.alive:
        hub._apply(hub.sensing.on_message(
            Status(device=dev, seq=next(_seq), ts=T0, state=DeviceState.ONLINE)))
    hub.at(12 * 3600 + 120, step=10)
    assert {k for k, _ in hub.log if k != "escalate"} == {"create"}
    offline = hub.by_key("offline:pir-3-2-501")
    assert offline.category is Category.DEVICE_OFFLINE
    assert offline.opened_at == T0 + timedelta(seconds=90)
    assert not any(i.category is Category.INACTIVITY for i in hub.incidents.values())
    # The water meter is online and saw no use in 12 h: that alarm is not inhibited.
    assert hub.by_key("water_none:s01").opened_at == T0 + timedelta(hours=12)


def test_sos_incident_escalates_to_the_street_then_handled() -> None:
    hub = Hub()
    hub.send("sos-2-1-302", EventType.SOS)
    inc = hub.by_key("sos:s02")
    assert inc.escalation_level == 2 and inc.grid_code == "1101050010020102"
    hub.at(119)
    assert hub.by_key("sos:s02").escalation_level == 2
    hub.at(120)
    inc = hub.by_key("sos:s02")
    assert inc.escalation_level == 3 and inc.escalations == 1  # 街道 (street)
    assert ("escalate", "sos:s02->3") in hub.log
    # The street gets the grid moving: registered, dispatched, accepted, handled,
    # checked on site by someone else than the handler, closed.
    for action, actor, kw in (
        (Action.REGISTER, "op1", {}),
        (Action.DISPATCH, "op1", {"assignee": "liu-yang"}),
        (Action.ACCEPT, "liu-yang", {}),
        (Action.HANDLE, "liu-yang", {"reason": "已上门"}),
        (Action.VERIFY, "op1", {"reason": "现场核查属实"}),
        (Action.CLOSE, "op1", {"reason": "核查通过"}),
    ):
        inc = hub.engine.transition(inc, action, actor=actor, **kw).incident
    assert inc.state is IncidentState.CLOSED and inc.deadline_at is None


def test_sos_inhibits_the_same_households_inactivity_end_to_end() -> None:
    hub = Hub(alive=("pir-3-2-501", "sos-3-2-501"))
    hub.send("pir-3-2-501", EventType.MOTION)
    hub.at(11 * 3600, step=10)
    hub.send("sos-3-2-501", EventType.SOS)
    hub.at(12 * 3600, step=10)  # 21:00: the inactivity deadline passes while the SOS is open
    assert ("inhibited", "inactivity:s01") in hub.log
    assert [i.category for i in hub.incidents.values()] == [Category.SOS]
