"""A district: a directory of site files under one grid tree (hub.district), and the
generated compounds of ``hub demo --sites N`` (hub.demo_district)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.config import ConfigError, load_site
from hub.demo_district import DEMO_SITE, community_code, compound, write_district
from hub.district import load_district
from hub.yamlfile import load_yaml_file


@pytest.fixture(scope="module")
def demo_raw() -> dict[str, Any]:
    return load_yaml_file(DEMO_SITE, "site file", ConfigError)


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("district")
    write_district(3, out)
    return out


def _write(folder: Path, name: str, raw: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return p


def test_a_directory_loads_as_one_district(three: Path) -> None:
    d = load_district(three)
    assert sorted(d.sites) == ["demo", "demo-2", "demo-3"]
    assert d.files["demo-2"] == three / "site-0002.yaml"
    # One district, one street, three communities: the files' trees merged.
    assert d.grid.code == "110105"
    [street] = d.grid.children
    assert street.code == "110105001"
    assert [c.code for c in street.children] == ["110105001002", "110105001003", "110105001004"]
    assert [(c.code, c.site_id) for c in d.communities()] == [
        ("110105001002", "demo"), ("110105001003", "demo-2"), ("110105001004", "demo-3")]
    # A scope below a community names its community; one above, all of its own.
    assert [c.site_id for c in d.communities("11010500100302")] == ["demo-2"]
    assert len(d.communities("110105001")) == 3
    assert d.communities("110106") == []
    site2 = d.site_of_device("c2-pir-3-2-501")
    assert site2 is not None and site2.site.id == "demo-2"
    assert d.site_of_device("pir-3-2-501") is d.sites["demo"]
    assert d.site_of_device("nope") is None
    assert d.site_of_grid("1101050010040301") is d.sites["demo-3"]
    assert d.site_of_grid("110105001") is None  # the street is everyone's


def test_compound_one_is_the_demo_and_the_output_is_deterministic(
        tmp_path: Path, demo_raw: dict[str, Any]) -> None:
    a = write_district(3, tmp_path / "a")
    write_district(3, tmp_path / "b")
    for name in ("site-0001.yaml", "site-0002.yaml", "site-0003.yaml"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a.sites["demo"] == load_site(DEMO_SITE)
    # Every generated compound is a whole site: its own devices, subjects, bridge.
    s3 = a.sites["demo-3"]
    assert len(s3.devices) == len(a.sites["demo"].devices)
    assert all(d.id.startswith("c3-") and d.grid.startswith("110105001004") for d in s3.devices)
    assert {d.subject for d in s3.devices if d.subject} <= {s.id for s in s3.care_subjects}
    assert s3.adapters[0].base_topic == "zigbee2mqtt-3"
    assert set(s3.adapters[0].devices.values()) == {"c3-pir-12-1-203", "c3-door-12-1-203"}


def test_a_smaller_run_leaves_no_files_of_a_larger_one(tmp_path: Path) -> None:
    write_district(3, tmp_path)
    assert len(write_district(2, tmp_path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site-0001.yaml", "site-0002.yaml"]


def test_communities_roll_over_to_the_next_street() -> None:
    assert community_code("110105001", "110105001002", 1) == "110105001002"
    assert community_code("110105001", "110105001002", 998) == "110105001999"
    assert community_code("110105001", "110105001002", 999) == "110105002001"


def test_the_same_device_in_two_files_is_refused_naming_both(
        tmp_path: Path, demo_raw: dict[str, Any]) -> None:
    a = _write(tmp_path, "a.yaml", demo_raw)
    other = compound(demo_raw, 2)
    other["devices"][0] = {**other["devices"][0], "id": demo_raw["devices"][0]["id"]}
    b = _write(tmp_path, "b.yaml", other)
    with pytest.raises(ConfigError, match=rf"device id 'pir-3-2-501' is in both {a} and {b}"):
        load_district(tmp_path)


def test_the_same_grid_code_in_two_files_is_refused_naming_both(
        tmp_path: Path, demo_raw: dict[str, Any]) -> None:
    a = _write(tmp_path, "a.yaml", demo_raw)
    other = compound(demo_raw, 2)
    # Compound 2 claims the demo's community beside its own.
    [street] = other["grid"]["children"]
    [mine] = street["children"]
    theirs = demo_raw["grid"]["children"][0]["children"][0]
    other["grid"] = {**other["grid"], "children": [{**street, "children": [theirs, mine]}]}
    b = _write(tmp_path, "b.yaml", other)
    with pytest.raises(ConfigError, match=rf"grid code 110105001002 is in both {a} and {b}"):
        load_district(tmp_path)


def test_another_district_or_a_renamed_street_is_refused(
        tmp_path: Path, demo_raw: dict[str, Any]) -> None:
    _write(tmp_path / "x", "a.yaml", demo_raw)
    other = compound(demo_raw, 2)
    other["grid"] = {**other["grid"], "children": [
        {**other["grid"]["children"][0], "name": "别的街道"}]}
    b = _write(tmp_path / "x", "b.yaml", other)
    with pytest.raises(ConfigError, match=rf"grid 110105001 is named '望京街道' in .*a.yaml but"
                                          rf" '别的街道' in {b}"):
        load_district(tmp_path / "x")
    _write(tmp_path / "y", "a.yaml", demo_raw)
    street = {**other["grid"]["children"][0], "code": "110106001"}
    street["children"] = [_recode(c, "110105001", "110106001") for c in street["children"]]
    moved = {**other, "grid": {"code": "110106", "name": "海淀区", "children": [street]}}
    moved = _recode_refs(moved, "110105001", "110106001")
    b = _write(tmp_path / "y", "b.yaml", moved)
    with pytest.raises(ConfigError, match=rf"{b}: the grid must start at the district 110105"):
        load_district(tmp_path / "y")


def test_the_same_site_id_twice_is_refused(tmp_path: Path, demo_raw: dict[str, Any]) -> None:
    _write(tmp_path, "a.yaml", demo_raw)
    other = compound(demo_raw, 2)
    other["site"] = demo_raw["site"]
    _write(tmp_path, "b.yaml", other)
    with pytest.raises(ConfigError, match=r"site id 'demo' is in both .*a.yaml and .*b.yaml"):
        load_district(tmp_path)


def test_an_empty_directory_and_hidden_files(tmp_path: Path, demo_raw: dict[str, Any]) -> None:
    (tmp_path / ".draft.yaml").write_text("not: [valid", encoding="utf-8")
    (tmp_path / "README.txt").write_text("notes", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds no site file"):
        load_district(tmp_path)
    _write(tmp_path, "only.yaml", demo_raw)
    assert list(load_district(tmp_path).sites) == ["demo"]


def test_load_site_of_a_directory_says_what_it_is(three: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory of site files"):
        load_site(three)


def _recode(node: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    return {**node, "code": new + node["code"][len(old):],
            "children": [_recode(c, old, new) for c in node.get("children", [])]}


def _recode_refs(raw: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    def c(x: str) -> str:
        return new + x[len(old):] if x.startswith(old) else x

    return {**raw,
            "buildings": [{**b, "grid": c(b["grid"])} for b in raw["buildings"]],
            "devices": [{**d, "grid": c(d["grid"])} for d in raw["devices"]],
            "care_subjects": [{**s, "grid": c(s["grid"])} for s in raw["care_subjects"]],
            "people": [{**p, "roles": [{**r, "unit": c(r["unit"]) if len(r["unit"]) > 6
                                        else "110106"} for r in p["roles"]]}
                       for p in raw["people"]]}
