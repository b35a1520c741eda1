"""Hostile configuration files: a site, edge or scenario file that is not UTF-8, that
nests past any sane depth, that aliases itself into billions of nodes, or that is huge
gives one clear line and exit code 2 (or the loader's own error), never a traceback
or a hang. Issue 11, hole 9."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.config import EdgeConfigError, load_edge_config
from edge.scenario import ScenarioError, load_scenario
from hub import cli
from hub.config import ConfigError, load_site

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml"


def _alias_bomb(k: int = 200) -> bytes:
    """Each grid level's first child is anchored and repeated k - 1 times by alias."""
    rest = ", ".join

    def level(n: int, code: str, inner: str) -> str:
        return (f"[&m{n} {{code: '{code}', name: u{n}{inner}}}, "
                f"{rest([f'*m{n}'] * (k - 1))}]")

    units = level(4, "1101050010020101", "")
    units = level(3, "11010500100201", f", children: {units}")
    units = level(2, "110105001002", f", children: {units}")
    units = level(1, "110105001", f", children: {units}")
    return (f"site: {{id: demo, name: bomb}}\n"
            f"grid: {{code: '110105', name: d, children: {units}}}\n").encode()


def _hostile_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        # Latin-1 bytes: not UTF-8 (the probe's UnicodeDecodeError).
        "not_utf8": b"site:\n  id: demo\n  name: Caf\xe9\n",
        # The same file in UTF-16, with its byte-order mark.
        "utf16": DEMO.read_text(encoding="utf-8").encode("utf-16"),
        # 5,000 levels of flow nesting (the probe's RecursionError) ...
        "deep_flow": b"site: " + b"[" * 5000 + b"]" * 5000 + b"\n",
        # ... and of block nesting.
        "deep_block": "".join(f"{' ' * i}k{i}:\n" for i in range(5000)).encode() + b" " * 5000
        + b"x: 1\n",
        # Past the size limit.
        "huge": b"# " + b"x" * (9 * 1024 * 1024) + b"\n",
        # Aliases ("billion laughs"): 3.5 kB that PyYAML loads as a few hundred shared
        # nodes, but that every validator walks as 200**4 grid units, each checked
        # against its parent; hub check-site ran until it was killed.
        "alias_bomb": _alias_bomb(),
    }
    out = {}
    for name, data in files.items():
        p = tmp_path / f"{name}.yaml"
        p.write_bytes(data)
        out[name] = p
    return out


@pytest.mark.parametrize("name", ["not_utf8", "utf16", "deep_flow", "deep_block", "huge"])
def test_hostile_site_file_is_a_config_error(tmp_path: Path, name: str) -> None:
    path = _hostile_files(tmp_path)[name]
    with pytest.raises(ConfigError) as e:
        load_site(path)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg, msg


@pytest.mark.parametrize("name", ["not_utf8", "deep_flow", "deep_block", "huge"])
def test_hub_check_site_gives_one_line_and_exit_2(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _hostile_files(tmp_path)[name]
    assert cli.main(["check-site", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("hub: ") and str(path) in err, err


@pytest.mark.parametrize("name", ["not_utf8", "deep_flow"])
def test_hub_run_with_a_hostile_site_file_exits_2(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _hostile_files(tmp_path)[name]
    # The site file is loaded before anything connects: these URLs are never used.
    rc = cli.main(["run", "--config", str(path), "--database-url",
                   "postgresql://nobody@127.0.0.1:1/none", "--mqtt-url", "mqtt://127.0.0.1:1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(path) in err, err


@pytest.mark.parametrize("name", ["not_utf8", "deep_flow", "deep_block"])
def test_hostile_edge_config_and_scenario_are_their_errors(tmp_path: Path, name: str) -> None:
    path = _hostile_files(tmp_path)[name]
    with pytest.raises(EdgeConfigError, match="edge config"):
        load_edge_config(path)
    with pytest.raises(ScenarioError, match="scenario"):
        load_scenario(path)


def _limited_memory() -> None:
    limit = 2 * 1024**3  # a bomb that gets through fails here instead of taking the machine
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


LOADERS = {
    "site": "from hub.config import load_site as load",
    "edge_config": "from edge.config import load_edge_config as load",
    "scenario": "from edge.scenario import load_scenario as load",
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_an_alias_bomb_is_a_config_error_not_a_hang(tmp_path: Path, loader: str) -> None:
    """Each loader in a process of its own, bounded in time and memory: one that
    expands the aliases fails the test instead of taking the machine."""
    path = _hostile_files(tmp_path)["alias_bomb"]
    code = (f"{LOADERS[loader]}\nimport sys\ntry:\n    load(sys.argv[1])\n"
            "except ValueError as e:\n    print(e)\n    sys.exit(2)\n")
    t0 = time.monotonic()
    try:
        r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                           text=True, timeout=30, preexec_fn=_limited_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the {loader} loader ran past 30 s on a 4 kB alias bomb")
    assert r.returncode == 2, (r.returncode, r.stderr[-500:])
    assert "Traceback" not in r.stderr and "alias" in r.stdout, r.stdout
    assert str(path) in r.stdout and r.stdout.count("\n") == 1, r.stdout
    assert time.monotonic() - t0 < 20


def test_hub_check_site_on_an_alias_bomb_gives_one_line_and_exit_2(tmp_path: Path) -> None:
    path = _hostile_files(tmp_path)["alias_bomb"]
    try:
        r = subprocess.run([sys.executable, "-m", "hub.cli", "check-site", str(path)],
                           capture_output=True, text=True, timeout=30,
                           preexec_fn=_limited_memory)
    except subprocess.TimeoutExpired:
        pytest.fail("hub check-site ran past 30 s on a 4 kB alias bomb")
    assert r.returncode == 2, r.stderr[-500:]
    assert "Traceback" not in r.stderr and r.stderr.startswith("hub: "), r.stderr[-500:]
    assert r.stderr.count("\n") == 1 and "alias" in r.stderr, r.stderr


def test_anchors_and_aliases_of_a_sane_size_still_work(tmp_path: Path) -> None:
    """Aliases are YAML, and a site file may share a duty roster between people."""
    text = DEMO.read_text(encoding="utf-8")
    assert "- role: grid_worker\n    unit: '11010500100201'" in text
    text = text.replace("- role: grid_worker\n    unit: '11010500100201'",
                        "- &w1\n    role: grid_worker\n    unit: '11010500100201'", 1)
    text = text.replace("  - role: grid_leader\n    unit: '11010500100201'\n",
                        "  - role: grid_leader\n    unit: '11010500100201'\n  - *w1\n", 1)
    p = tmp_path / "aliased.yaml"
    p.write_text(text, encoding="utf-8")
    zhao = next(x for x in load_site(p).people if x.id == "zhao-min")
    assert [r.role for r in zhao.roles] == ["grid_leader", "grid_worker"]


def test_the_demo_site_still_loads() -> None:
    assert load_site(DEMO).site.id == "demo"
