"""`hub` commands where their extra is not installed: one line naming the extra, exit 2."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from hub.cli import EXTRA_OF_MODULE

ROOT = Path(__file__).resolve().parents[2]
# Brought by a listed requirement, not named in pyproject: ultralytics needs torch,
# psycopg[pool] is psycopg-pool.
TRANSITIVE = {"torch": "vision", "psycopg_pool": "hub"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_module_map_is_pyprojects_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = {_canonical(re.match(r"[A-Za-z0-9._-]+", r).group(0))  # type: ignore[union-attr]
            for r in project["dependencies"]}
    extra_of_dist: dict[str, str] = {}
    for extra in ("hub", "vision", "demo"):
        for req in project["optional-dependencies"][extra]:
            name = _canonical(re.match(r"[A-Za-z0-9._-]+", req).group(0))  # type: ignore[union-attr]
            if name not in base and name != _canonical(project["name"]):
                extra_of_dist[name] = extra
    expected = {m: extra_of_dist[_canonical(d)] for m, dists in packages_distributions().items()
                for d in dists if _canonical(d) in extra_of_dist}
    # psycopg[binary] brings a compiled module nobody imports by name.
    expected.pop("psycopg_binary", None)
    assert EXTRA_OF_MODULE == expected | TRANSITIVE


def _hub(argv: list[str], missing: list[str]) -> subprocess.CompletedProcess[str]:
    # A module set to None in sys.modules cannot be imported: as on a machine without it.
    probe = (f"import sys\nfor m in {missing!r}: sys.modules[m] = None\n"
             f"from hub.cli import main\nsys.exit(main({argv!r}))\n")
    return subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_hub_run_without_the_hub_extra_names_it() -> None:
    r = _hub(["run", "--database-url", "postgresql://h/db", "--mqtt-url", "mqtt://h:1883"],
             ["psycopg", "psycopg_pool"])
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "hub run: module 'psycopg_pool' is not installed: this command needs the 'hub' extra"
        " (pip install 'smart-community-hub[hub]'; ./hubw installs all)"]


def test_a_command_asks_for_the_extra_it_needs_not_the_first_it_missed() -> None:
    """`hub eval` misses the hub's modules first, but installing them would not do."""
    r = _hub(["eval", "--help"], ["prometheus_client"])
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (
        "hub eval: module 'prometheus_client' is not installed: this command needs the"
        " 'vision' extra (pip install 'smart-community-hub[vision]'; ./hubw installs all)")


def test_a_missing_module_of_no_extra_is_a_bug_and_not_hidden() -> None:
    r = _hub(["run", "--database-url", "postgresql://h/db", "--mqtt-url", "mqtt://h:1883"],
             ["hub.node"])
    assert r.returncode == 1 and "Traceback" in r.stderr and "hub.node" in r.stderr
