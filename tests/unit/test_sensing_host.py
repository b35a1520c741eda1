"""The sensing host around its rules: plug-in rules, containment per rule, saved
state per rule, and state saved by the one-class engine (snapshot v1)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.config import Site
from hub.domain import Alarm, Category
from hub.protocol import Event, EventType
from hub.sensing import Incoming, SensingEngine, SensingRule
from hub.sensing.base import RuleBase, make_alarm
from hub.sensing.rules import DEFAULT_RULES
from tests.unit.sensing_support import at, brief, ev, tel

ROOT = Path(__file__).resolve().parents[2]
HOUSE = ("pir-3-2-501", "door-3-2-501", "water-3-2-501", "sos-3-2-501", "smoke-3-2-501",
         "wearable-3-2-501")


def site(heartbeat_s: float = 3600) -> Site:
    raw = yaml.safe_load((ROOT / "deploy" / "sites" / "demo.yaml").read_text(encoding="utf-8"))
    for d in raw["devices"]:
        d["heartbeat_s"] = heartbeat_s
    return Site.model_validate(raw)


# ---------------------------------------------------------------- state of the old engine


def _evening(eng: SensingEngine) -> list[Alarm]:
    """What follows the saved state (15:00): hourly heartbeats, the deadlines, a third
    bad heart rate and the smoke clearing."""
    out: list[Alarm] = []
    for h in range(16, 23):
        for d in HOUSE:
            out += eng.on_message(ev(d, EventType.HEARTBEAT, at(h, 30)))
        out += eng.tick(at(h, 59, 59)) + eng.tick(at(h + 1))
        if h == 21:
            out += eng.tick(at(21, 19, 59)) + eng.tick(at(21, 20))
            out += eng.on_message(tel("wearable-3-2-501", at(21, 30), heart_rate=20))
            out += eng.on_message(ev("smoke-3-2-501", EventType.SMOKE_CLEAR, at(21, 40)))
    return out


EVENING = [
    # The meter rose at 09:20 (use, so activity too): both deadlines are 12 h later.
    ("inactivity:s01", "firing", at(21, 20)),
    ("water_none:s01", "firing", at(21, 20)),
    ("vitals:s01:heart_rate", "firing", at(21, 30)),  # two bad readings were saved
    ("smoke:smoke-3-2-501", "cleared", at(21, 40)),  # the detector was saved alarming
]


def test_a_v1_snapshot_restores_and_goes_on_as_the_old_engine_did(caplog) -> None:  # noqa: ANN001
    """tests/data/sensing_snapshot_v1.json was saved by the one-class engine at 15:00
    (motion 09:00, smoke 09:05, two heart rates of 20, the meter 500 -> 503 L at
    09:20, the door offline 11:00-12:30); the evening it went on to see is EVENING."""
    snap = json.loads((ROOT / "tests" / "data" / "sensing_snapshot_v1.json").read_text())
    assert snap["v"] == 1
    eng = SensingEngine(site())
    with caplog.at_level(logging.INFO, logger="hub.sensing"):
        eng.restore(snap)
    assert any("upgraded from v1" in r.getMessage() for r in caplog.records)
    assert eng.snapshot()["v"] == 2
    assert brief(_evening(eng)) == EVENING
    assert eng.problems == {}


def test_a_v2_snapshot_round_trips_mid_countdown() -> None:
    eng = SensingEngine(site())
    eng.restore(json.loads((ROOT / "tests" / "data" / "sensing_snapshot_v1.json").read_text()))
    saved = json.loads(json.dumps(eng.snapshot()))
    assert set(saved["rules"]) == {r.name for r in eng.all_rules}
    again = SensingEngine(site())
    again.restore(saved)
    assert again.snapshot() == saved
    assert brief(_evening(again)) == EVENING


def test_the_replay_grace_survives_a_restart() -> None:
    """Water used at 07:00; the meter is away from 12:00 to 18:00 and then has 3 h
    (its offline period) to replay what it saw before the household is judged: not
    at 19:00 but at 21:00. A restart at 18:00 keeps that grace (the one-class engine
    saved it as a time ahead of the clock, which the first tick after a restore
    dropped as impossible, so both alarms fired at 19:00)."""
    eng = SensingEngine(site())
    eng.on_message(ev("water-3-2-501", EventType.WATER_FLOW, at(7), litres=1))
    for h in range(7, 19):
        for d in HOUSE:
            if d != "water-3-2-501" or not 12 < h < 18:
                eng.on_message(ev(d, EventType.HEARTBEAT, at(h)))
        eng.tick(at(h))
    assert not eng.presence.is_down("water-3-2-501")
    assert eng.presence.back_online_at("water-3-2-501") == at(18)
    restarted = SensingEngine(site())
    restarted.restore(json.loads(json.dumps(eng.snapshot())))
    out: list[Alarm] = []
    for h in (19, 20):
        for d in HOUSE:
            out += restarted.on_message(ev(d, EventType.HEARTBEAT, at(h)), received_at=at(h))
        out += restarted.tick(at(h))
    out += restarted.tick(at(20, 59, 59))
    assert out == []
    assert brief(restarted.tick(at(21))) == [("inactivity:s01", "firing", at(21)),
                                             ("water_none:s01", "firing", at(21))]
    assert restarted.problems == {}


def test_a_section_that_does_not_restore_starts_that_rule_empty() -> None:
    eng = SensingEngine(site())
    eng.on_message(ev("smoke-3-2-501", EventType.SMOKE, at(9)))
    for i in range(2):
        eng.on_message(tel("wearable-3-2-501", at(9, 1, i), heart_rate=20))
    snap = json.loads(json.dumps(eng.snapshot()))
    snap["rules"]["vitals"] = {"s01:heart_rate": {"out_run": {"$dt": "not a time"}}}
    snap["rules"]["gone"] = {"x": 1}  # a rule this build does not host
    again = SensingEngine(site())
    again.restore(snap)
    assert again.problems["rule_failed"] == 1
    # The vitals run starts over; the smoke detector is still known to be alarming.
    assert again.on_message(tel("wearable-3-2-501", at(9, 2), heart_rate=20)) == []
    cleared = again.on_message(ev("smoke-3-2-501", EventType.SMOKE_CLEAR, at(9, 3)))
    assert brief(cleared) == [("smoke:smoke-3-2-501", "cleared", at(9, 3))]
    with pytest.raises(ValueError, match="snapshot version"):
        again.restore({"v": 3, "rules": {}})


# ---------------------------------------------------------------- plug-in rules


class DoorLeftOpen(RuleBase):
    """A rule written against the protocol only: a door open for 10 minutes."""

    name = "door_left_open"

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.open_since: dict[str, datetime] = {}

    def on_message(self, m: Incoming) -> list[Alarm]:
        if isinstance(m.msg, Event) and m.msg.type is EventType.DOOR_OPEN:
            self.open_since.setdefault(m.device.id, m.ts)
        elif isinstance(m.msg, Event) and m.msg.type is EventType.DOOR_CLOSE:
            self.open_since.pop(m.device.id, None)
        return []

    def tick(self, now: datetime) -> list[Alarm]:
        out = []
        for dev_id, since in list(self.open_since.items()):
            if now >= since + timedelta(minutes=10):
                del self.open_since[dev_id]
                dev = self.ctx.site.device(dev_id)
                out.append(make_alarm(self.ctx.site, self.name, Category.INACTIVITY,
                                      f"door:{dev_id}", since + timedelta(minutes=10),
                                      "门未关", dev, None))
        return out

    def snapshot(self) -> dict[str, Any]:
        return {k: v.isoformat() for k, v in self.open_since.items()}

    def restore(self, state: dict[str, Any]) -> None:
        self.open_since = {k: datetime.fromisoformat(v) for k, v in state.items()}


def test_a_new_rule_plugs_in_with_its_own_state() -> None:
    eng = SensingEngine(site(), rules=[*DEFAULT_RULES, DoorLeftOpen])
    assert isinstance(eng.rule("door_left_open"), SensingRule)
    eng.on_message(ev("door-3-2-501", EventType.DOOR_OPEN, at(9)))
    restarted = SensingEngine(site(), rules=[*DEFAULT_RULES, DoorLeftOpen])
    restarted.restore(json.loads(json.dumps(eng.snapshot())))
    assert restarted.tick(at(9, 9, 59)) == []
    assert brief(restarted.tick(at(9, 10))) == [("door:door-3-2-501", "firing", at(9, 10))]
    with pytest.raises(ValueError, match="distinct"):
        SensingEngine(site(), rules=[*DEFAULT_RULES, DoorLeftOpen, DoorLeftOpen])


class Broken(RuleBase):
    name = "broken"

    def on_message(self, m: Incoming) -> list[Alarm]:
        raise RuntimeError("a bug in one rule")

    def tick(self, now: datetime) -> list[Alarm]:
        raise RuntimeError("a bug in one rule's deadlines")


def test_a_rule_that_raises_stops_no_other_rule(caplog) -> None:  # noqa: ANN001
    problems: list[tuple[str, str]] = []
    eng = SensingEngine(site(heartbeat_s=30), rules=[Broken, *DEFAULT_RULES],
                        on_problem=lambda kind, ident: problems.append((kind, ident)))
    with caplog.at_level(logging.ERROR):
        sos = eng.on_message(ev("sos-3-2-501", EventType.SOS, at(9)))
        offline = eng.tick(at(9, 1, 30))
    assert brief(sos) == [("sos:s01", "firing", at(9))]
    assert brief(offline) == [("offline:sos-3-2-501", "firing", at(9, 1, 30))]
    assert problems == [("device_failed", "sos-3-2-501"), ("rule_failed", "broken")]
    failed = [r for r in caplog.records if getattr(r, "problem", "").endswith("_failed")]
    assert [(getattr(r, "device", None), getattr(r, "rule", None)) for r in failed] == [
        ("sos-3-2-501", "broken"), (None, "broken")]
