"""The site file: the demo compound is valid, and a wrong file names the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hub.config import ConfigError, load_site
from hub.domain import GridLevel

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml"


def test_demo_compound_is_what_the_issue_describes() -> None:
    site = load_site(DEMO)
    levels = [GridLevel.of_code(n.code) for n, _ in site.grid.walk()]
    assert levels.count(GridLevel.GRID) == 3
    assert levels.count(GridLevel.MICRO_GRID) == 11
    assert len(site.buildings) == 12
    assert len(site.care_subjects) == 6 and all(s.consent for s in site.care_subjects)
    for s in site.care_subjects:
        kinds = {d.kind for d in site.devices if d.subject == s.id}
        assert kinds == {"pir", "door", "water", "sos", "smoke", "wearable"}, s.id
    cams = [d for d in site.devices if d.kind == "camera"]
    assert any(z.kind == "fire_lane" for c in cams for z in c.camera.zones)


def write(tmp_path: Path, raw: object) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return p


def demo_raw() -> dict:
    return yaml.safe_load(DEMO.read_text(encoding="utf-8"))


def test_unknown_key_is_named(tmp_path: Path) -> None:
    raw = demo_raw()
    raw["care_subjects"][0]["consnet"] = True
    with pytest.raises(ConfigError, match=r"care_subjects\.0\.consnet: unknown key"):
        load_site(write(tmp_path, raw))


def test_dangling_grid_code_is_named(tmp_path: Path) -> None:
    raw = demo_raw()
    raw["devices"][4]["grid"] = "11010500100299"
    with pytest.raises(ConfigError, match=r"devices\.4\.grid: unknown grid code 11010500100299"):
        load_site(write(tmp_path, raw))


def test_child_code_must_extend_its_parent(tmp_path: Path) -> None:
    raw = demo_raw()
    grid1 = raw["grid"]["children"][0]["children"][0]["children"][0]
    grid1["code"], grid1["children"] = "11010500199901", []
    with pytest.raises(ConfigError, match="01 must extend its parent's code 110105001002"):
        load_site(write(tmp_path, raw))


def test_zone_outside_the_image_is_refused(tmp_path: Path) -> None:
    raw = demo_raw()
    cam = next(d for d in raw["devices"] if d["kind"] == "camera" and d["camera"]["zones"])
    cam["camera"]["zones"][0]["polygon"][0] = [1.5, 0.2]
    with pytest.raises(ConfigError, match="outside 0-1 coordinates"):
        load_site(write(tmp_path, raw))


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("site: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_site(p)
    with pytest.raises(ConfigError, match="cannot read site file"):
        load_site(tmp_path / "nope.yaml")
