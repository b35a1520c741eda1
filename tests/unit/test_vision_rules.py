"""The camera rules' boundary: found by module, run in order, settings validated by
each rule's own model, what the pose stage should do asked through the protocol."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from hub.config import CameraConfig, FallRule, ZoneConfig
from hub.vision import rules
from hub.vision.analyzer import CameraAnalyzer
from hub.vision.people import Person
from hub.vision.rules.base import PoseDemand

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
LANE = ZoneConfig(name="lane", kind="fire_lane", polygon=[(0.1, 0.5), (0.9, 0.5), (0.9, 0.9)])


def test_rules_are_the_modules_that_declare_a_plugin_in_their_order() -> None:
    found = [p.name for p in rules.plugins()]
    assert found[:2] == ["firelane", "fall"]
    assert "base" not in rules.names()
    assert rules.plugin("base") is None and rules.plugin("no_such_rule") is None


def test_a_camera_runs_the_rules_that_find_something_to_watch(tmp_path: Path) -> None:
    with_lane = CameraAnalyzer("cam-1", "1101050010020101", [LANE], FallRule(), tmp_path)
    without = CameraAnalyzer("cam-2", "1101050010020101", [], FallRule(), tmp_path)
    assert [r.name for r in with_lane.rules] == ["firelane", "fall"]
    assert [r.name for r in without.rules] == ["fall"]
    with pytest.raises(KeyError, match="no rule 'firelane'"):
        without.rule("firelane")


def test_the_pose_stage_is_asked_through_the_rules_demands(tmp_path: Path) -> None:
    an = CameraAnalyzer("cam-1", "1101050010020101", [], FallRule(), tmp_path,
                        lying_watch_every_s=0.5)
    fall = an.rule("fall")
    demand = {"now": PoseDemand()}
    fall.pose_demand = lambda ts: demand["now"]  # type: ignore[method-assign]
    assert not an.needs_every_frame(T0) and not an.needs_still_frames(T0)
    demand["now"] = PoseDemand(lying_every_s=0.5)
    assert an.needs_still_frames(T0) and not an.needs_every_frame(T0)
    an._last_lying_pass = T0  # a look was just taken: the next is due 0.5 s later
    assert not an.needs_still_frames(T0 + timedelta(seconds=0.4))
    assert an.needs_still_frames(T0 + timedelta(seconds=0.5))
    demand["now"] = PoseDemand(every_frame=True, lying_every_s=0.0)
    assert an.needs_every_frame(T0) and an.needs_still_frames(T0 + timedelta(seconds=0.1))


def test_camera_rule_settings_are_validated_by_the_rule() -> None:
    with pytest.raises(ValidationError, match=r"unknown camera rule 'crowdng' \(known: "):
        CameraConfig(rules={"crowdng": {}})
    with pytest.raises(ValidationError, match="rule 'fall' takes no camera settings"):
        CameraConfig(rules={"fall": {"confirm_s": 1}})
    assert CameraConfig().rules == {}


def test_a_rule_gets_the_frame_after_the_shared_analysis(tmp_path: Path) -> None:
    """The fall rule sees tracks, the fire-lane rule a mask of where people are."""
    an = CameraAnalyzer("cam-1", "1101050010020101", [LANE], FallRule(), tmp_path)
    seen = []
    for r in an.rules:
        orig = r.process
        r.process = (lambda f, orig=orig, name=r.name:  # type: ignore[method-assign]
                     seen.append((name, f.people_mask is not None, len(f.tracks))) or orig(f))
    k = np.zeros((17, 3), np.float32)
    an.process(T0, np.zeros((240, 320, 3), np.uint8), [Person((10, 10, 50, 120), 0.9, k)])
    assert seen == [("firelane", True, 1), ("fall", True, 1)]
