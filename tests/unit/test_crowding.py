"""Crowding in a zone: the head count's hysteresis on the frames' own timestamps (to
the second), feet inside the polygon, one dedup key per episode, the site file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from hub.categories import REGISTRY, load_plugins
from hub.config import CameraConfig, ConfigError, FallRule, ZoneConfig, load_site
from hub.domain import AlarmState
from hub.vision.analyzer import CameraAnalyzer
from hub.vision.people import L_ANKLE, R_ANKLE, Person
from hub.vision.rules.crowding import CrowdingCounter, feet, in_zone
from hub.vision.zones import Zone

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SIZE = (640, 480)
# The lower half of the picture: where people stand, not where their heads are.
PLAZA = ZoneConfig(name="plaza", kind="watch", polygon=[(0, 0.5), (1, 0.5), (1, 1), (0, 1)])
REPO = Path(__file__).resolve().parents[2]


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def run(counter: CrowdingCounter, counts: list[int], step: float = 1.0) -> list[tuple[float, str]]:
    out = []
    for i, n in enumerate(counts):
        d = counter.update(at(i * step), n)
        if d is not None:
            out.append((i * step, d.state.value))
    return out


def test_fires_after_exactly_the_dwell_above_the_threshold() -> None:
    c = CrowdingCounter(max_people=3, dwell_s=10, clear_s=5, grace_s=0)
    # 4 > 3 from 0 s: not at 9 s, at 10 s; three people is not a crowd at all.
    assert run(c, [3, 3] + [4] * 12)[0] == (12.0, "firing")
    c = CrowdingCounter(max_people=3, dwell_s=10, clear_s=5, grace_s=0)
    assert run(c, [3] * 30) == []


def test_a_short_dip_keeps_the_dwell_a_longer_one_restarts_it() -> None:
    c = CrowdingCounter(max_people=2, dwell_s=10, clear_s=5, grace_s=2)
    # Over at 0-3 s, a dip at 4-5 s (2 s after the last over): still fires at 10 s.
    assert run(c, [3, 3, 3, 3, 2, 2] + [3] * 6)[0] == (10.0, "firing")
    c = CrowdingCounter(max_people=2, dwell_s=10, clear_s=5, grace_s=2)
    # A dip of 3 s (4, 5, 6 s) restarts it: over again from 7 s, fires at 17 s.
    got = run(c, [3, 3, 3, 3, 2, 2, 2] + [3] * 12)
    assert got == [(17.0, "firing")]


def test_clears_after_the_clear_time_at_or_below_the_threshold() -> None:
    c = CrowdingCounter(max_people=2, dwell_s=5, clear_s=4, grace_s=0)
    # Fires at 5 s; at 8 s the count drops to 2 (not above N), back to 3 at 10 s (the
    # clear time restarts), down from 11 s: cleared at 15 s.
    got = run(c, [3] * 8 + [2, 2, 3] + [1] * 6)
    assert got == [(5.0, "firing"), (15.0, "cleared")]


def test_each_episode_has_its_own_dedup_key_and_the_clear_carries_it(tmp_path: Path) -> None:
    an = analyzer(tmp_path, max_people=1, dwell_s=2, clear_s=1)
    crowd = [standing(100), standing(300)]
    alarms = []
    for t, people in [(0, crowd), (1, crowd), (2, crowd), (3, []), (4, []),
                      (10, crowd), (11, crowd), (12, crowd), (13, [])]:
        alarms += [(t, a) for a in an.process(at(t), frame(), people)]
    assert [(t, a.state) for t, a in alarms] == [
        (2, AlarmState.FIRING), (4, AlarmState.CLEARED), (12, AlarmState.FIRING)]
    keys = [a.dedup_key for _, a in alarms]
    assert keys[0] == keys[1] == "crowding:cam-plaza:plaza:20260301T090000"
    assert keys[2] == "crowding:cam-plaza:plaza:20260301T090010"


def test_the_alarm_carries_the_numbers_and_a_snapshot(tmp_path: Path) -> None:
    an = analyzer(tmp_path, max_people=2, dwell_s=3, clear_s=2)
    crowd = [standing(x) for x in (80, 220, 360, 500)]
    alarms = [a for t in range(5) for a in an.process(at(t), frame(), crowd)]
    assert len(alarms) == 1
    a = alarms[0]
    assert (a.rule, a.category, a.zone, a.device_id) == ("crowding", "crowding", "plaza",
                                                         "cam-plaza")
    assert a.evidence == {"count": 4, "threshold": 2, "peak_count": 4, "dwell_s": 3.0,
                          "dwell_required_s": 3.0, "clear_s": 2.0,
                          "since": "2026-03-01T09:00:00+00:00"}
    assert a.title == "广场 人员聚集（4人）"
    load_plugins()  # the console labels every number the alarm carries
    assert set(a.evidence) == set(REGISTRY.get("crowding").evidence_labels)
    assert a.evidence_image and (tmp_path / a.evidence_image).is_file()


def test_people_count_where_their_feet_are() -> None:
    zone = Zone(PLAZA)
    inside = standing(100)  # ankles at y 400 (inside)
    head_in_feet_out = person((300, 0, 340, 200), ankles_y=190)  # all above the zone
    no_ankles = person((400, 100, 440, 300), ankles_y=None)  # box bottom at 300: inside
    unsure = standing(500, score=0.3)
    assert feet(no_ankles) == (420.0, 300.0)
    assert feet(inside) == (100.0, 400.0)
    got = in_zone([inside, head_in_feet_out, no_ankles, unsure], zone, SIZE, min_score=0.4)
    assert got == [inside, no_ankles]


def test_the_category_is_registered_by_the_rule_module() -> None:
    load_plugins()
    info = REGISTRY.get("crowding")
    assert (info.name_zh, info.name_en, info.life_safety) == ("人员聚集", "Crowding", False)


def test_the_site_file_names_a_bad_crowding_entry(tmp_path: Path) -> None:
    text = (REPO / "deploy/sites/demo.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "site.yaml"
    bad.write_text(text.replace("        - zone: lawn\n", "        - zone: lawm\n"),
                   encoding="utf-8")
    with pytest.raises(ConfigError, match=r"crowding\.zones\.0\.zone: no zone 'lawm' on this "
                                          r"camera \(its zones: lawn\)"):
        load_site(bad)
    bad.write_text(text.replace("          max_people: 1\n", "          max_peple: 1\n"),
                   encoding="utf-8")
    with pytest.raises(ConfigError, match=r"crowding\.zones\.0\.max_peple: unknown key"):
        load_site(bad)
    with pytest.raises(ValueError, match=r"crowding\.zones\.0\.max_people: Input should be "
                                         r"greater than or equal to 1"):
        CameraConfig(zones=[PLAZA], rules={"crowding": {"zones": [{"zone": "plaza",
                                                                   "max_people": 0}]}})
    with pytest.raises(ValueError, match="zone 'plaza' is watched twice"):
        CameraConfig(zones=[PLAZA], rules={"crowding": {"zones": [
            {"zone": "plaza", "max_people": 3}, {"zone": "plaza", "max_people": 5}]}})


def test_the_demo_camera_watches_its_lawn() -> None:
    site = load_site(REPO / "deploy/sites/demo.yaml")
    cam = site.device("cam-b7-stair1")
    assert cam is not None and cam.camera is not None
    z = cam.camera.rules["crowding"].zones[0]
    assert (z.zone, z.max_people, z.dwell_s, z.clear_s) == ("lawn", 1, 5, 5)


# -- helpers ---------------------------------------------------------------------


def person(box: tuple[float, float, float, float], ankles_y: float | None,
           score: float = 0.9) -> Person:
    k = np.zeros((17, 3), np.float32)
    if ankles_y is not None:
        cx = (box[0] + box[2]) / 2
        k[L_ANKLE] = (cx - 5, ankles_y, 0.9)
        k[R_ANKLE] = (cx + 5, ankles_y, 0.9)
    return Person(box, score, k)


def standing(cx: float, score: float = 0.9) -> Person:
    """Someone standing in the plaza: head at y 180, feet at y 400."""
    return person((cx - 30, 180, cx + 30, 410), ankles_y=400, score=score)


def frame() -> np.ndarray:
    return np.full((SIZE[1], SIZE[0], 3), 120, np.uint8)


def analyzer(tmp_path: Path, **zone: float) -> CameraAnalyzer:
    cam = CameraConfig(zones=[PLAZA], rules={"crowding": {"zones": [{"zone": "plaza", **zone}]}})
    return CameraAnalyzer("cam-plaza", "1101050010020101", list(cam.zones), FallRule(),
                          tmp_path / "evidence", label="广场", settings=cam.rules)
