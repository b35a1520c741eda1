"""Grid tree, duty hours and routing up the escalation chain."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path

import pytest
import yaml

from hub.config import RoleAssignment, Site, load_site
from hub.domain import Category
from hub.grid import GridTree, UnknownUnit
from hub.grid.duty import in_hours

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml"
SITE = load_site(DEMO)
TREE = GridTree.from_site(SITE)
MICRO = "1101050010020103"
GRID = "11010500100201"
NOON = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)  # 12:00 Shanghai


def test_tree_shape() -> None:
    assert len(TREE.units) == 1 + 1 + 1 + 3 + 11
    assert TREE.parent(MICRO).code == GRID
    assert [u.code for u in TREE.ancestors(MICRO)] == [GRID, "110105001002", "110105001", "110105"]
    assert [u.code for u in TREE.children(GRID)] == [GRID + f"{i:02d}" for i in range(1, 5)]
    assert len(TREE.descendants("110105001002")) == 14
    assert TREE.contains(GRID, MICRO) and TREE.contains(MICRO, MICRO)
    assert not TREE.contains("11010500100202", MICRO)
    assert TREE.unit(GRID).level.name == "GRID"


def test_lookups() -> None:
    assert TREE.unit_of_device("pir-3-2-501").code == MICRO
    assert TREE.unit_of_subject("s02").code == "1101050010020102"
    with pytest.raises(UnknownUnit, match="unknown device 'nope'"):
        TREE.unit_of_device("nope")
    with pytest.raises(UnknownUnit, match="unknown care subject"):
        TREE.unit_of_subject("nope")
    with pytest.raises(UnknownUnit, match="unknown grid code"):
        TREE.unit("999")
    assert TREE.locate(None, "cam-b3-lane", None) == MICRO
    assert TREE.locate(None, None, "s03") == "1101050010020202"
    assert TREE.locate(None, "ghost", None) is None


def test_chain_and_routing_walks_up_from_micro_grid() -> None:
    chain = TREE.chain(MICRO)
    assert [(lv.level, lv.unit_code, lv.roles) for lv in chain] == [
        (0, MICRO, ("grid_worker",)),
        (1, GRID, ("grid_leader",)),
        (2, "110105001002", ("community",)),
        (3, "110105001", ("street",)),
        (4, "110105", ("department",)),
    ]
    assert TREE.chain(MICRO, Category.SOS)[2].roles == ("community", "police")
    # Nobody holds a role on the micro-grid: the grid's worker gets it.
    r = TREE.recipients(MICRO, 0, NOON)
    assert [(x.person_id, x.role, x.unit_code, x.phone) for x in r] == [
        ("wang-wei", "grid_worker", GRID, "13955448177")
    ]
    assert [x.person_id for x in TREE.recipients(MICRO, 2, NOON, Category.FIRE_LANE)] == [
        "sun-community"
    ]
    assert [x.person_id for x in TREE.recipients(MICRO, 2, NOON, Category.SMOKE)] == [
        "sun-community", "police-li"
    ]
    assert [x.person_id for x in TREE.recipients("1101050010020303", 1, NOON)] == ["huang-lei"]
    with pytest.raises(ValueError, match="outside 0-4"):
        TREE.recipients(MICRO, 5, NOON)


def _site_with(people: list[dict]) -> Site:
    raw = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    raw["people"] = people
    return Site.model_validate(raw)


def test_duty_hours_and_night_shift_in_site_timezone() -> None:
    site = _site_with([
        {"id": "day", "name": "白班", "roles": [
            {"role": "grid_worker", "unit": GRID, "on_duty": ["08:00", "20:00"]}]},
        {"id": "night", "name": "夜班", "roles": [
            {"role": "grid_worker", "unit": GRID, "on_duty": ["20:00", "08:00"]}]},
        {"id": "lead", "name": "社区", "roles": [{"role": "community", "unit": "110105001002"}]},
    ])
    tree = GridTree.from_site(site)

    def who(h: int, m: int = 0, s: int = 0) -> list[str]:
        # Shanghai is UTC+8: local h:m:s is (h-8) UTC.
        at = datetime(2026, 3, 2, (h - 8) % 24, m, s, tzinfo=UTC)
        return [r.person_id for r in tree.recipients(MICRO, 0, at)]

    assert who(8) == ["day"]
    assert who(19, 59, 59) == ["day"]
    assert who(20) == ["night"]
    assert who(3) == ["night"]
    assert who(7, 59, 59) == ["night"]
    a = site.people[0].roles[0]
    assert tree.on_duty("day", a, datetime(2026, 3, 2, 0, 0, tzinfo=UTC))  # 08:00 local
    assert not tree.on_duty("day", a, datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC))


def test_nobody_on_duty_still_tells_the_nearest_holder_flagged_off_duty() -> None:
    site = _site_with([
        {"id": "day", "name": "白班", "roles": [
            {"role": "grid_worker", "unit": GRID, "on_duty": ["08:00", "20:00"]}]},
    ])
    tree = GridTree.from_site(site)
    r = tree.recipients(MICRO, 0, datetime(2026, 3, 2, 15, 0, tzinfo=UTC))  # 23:00 local
    assert [(x.person_id, x.on_duty) for x in r] == [("day", False)]


def test_empty_level_falls_through_to_next() -> None:
    site = _site_with([
        {"id": "st", "name": "街道", "roles": [{"role": "street", "unit": "110105001"}]},
    ])
    tree = GridTree.from_site(site)
    assert [x.person_id for x in tree.recipients(MICRO, 0, NOON)] == ["st"]
    assert tree.recipients(MICRO, 0, NOON, fallback=False) == []
    assert tree.recipients(MICRO, 4, NOON) == []


def test_in_hours() -> None:
    assert in_hours(None, time(3))
    assert in_hours((time(8), time(8)), time(3))
    assert not in_hours((time(8), time(20)), time(20))
    with pytest.raises(ValueError, match="aware"):
        TREE.on_duty("x", RoleAssignment(role="police", unit=GRID), datetime(2026, 1, 1))
