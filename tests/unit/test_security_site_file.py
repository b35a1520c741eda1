"""Hostile configuration files: a site, edge or scenario file that is not UTF-8, that
nests past any sane depth, or that is huge gives one clear line and exit code 2 (or
the loader's own error), never a traceback. Issue 11, hole 9."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import EdgeConfigError, load_edge_config
from edge.scenario import ScenarioError, load_scenario
from hub import cli
from hub.config import ConfigError, load_site

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml"


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


def test_the_demo_site_still_loads() -> None:
    assert load_site(DEMO).site.id == "demo"
