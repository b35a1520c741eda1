"""``hub demo --sites N``: N compounds of one district, generated from the demo's.

Compound 1 is the demo compound itself (``deploy/sites/demo.yaml``, site id
``demo``); compound k (2..N) is a copy of it in the next community of the same
street (``110105001`` + a 3-digit community number; past 999 communities the next
street), with site id ``demo-k``, device, care-subject and grid-staff ids prefixed
``c<k>-``, its own Zigbee2MQTT base topic and broker user, and its codes moved under
its community. Street and district staff are the same people in every file. The
output depends only on N and the demo file, so a load test gets the same district
every time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hub.config import ConfigError
from hub.district import District, load_district
from hub.domain import GridLevel
from hub.yamlfile import load_yaml_file

DEMO_SITE = Path(__file__).resolve().parents[1] / "deploy" / "sites" / "demo.yaml"
MAX_COMPOUNDS = 999 * 9  # communities 001-999 of streets ...001 to ...009


def community_code(street: str, community: str, k: int) -> str:
    """Compound k's community code (k = 1: the demo's own)."""
    first = int(community[GridLevel.STREET:])
    n = first + k - 1
    street_no = int(street[GridLevel.DISTRICT:]) + (n - 1) // 999
    return f"{street[:GridLevel.DISTRICT]}{street_no:03d}{(n - 1) % 999 + 1:03d}"


def compound(raw: dict[str, Any], k: int) -> dict[str, Any]:
    """The demo site file's content as compound k."""
    if k == 1:
        return raw
    district = raw["grid"]
    [street] = district["children"]
    [community] = street["children"]
    old = community["code"]
    new = community_code(street["code"], old, k)
    pre = f"c{k}-"

    def code(c: str) -> str:
        return new + c[len(old):] if c.startswith(old) else c

    def tree(n: dict[str, Any]) -> dict[str, Any]:
        return {**n, "code": code(n["code"]), "children": [tree(c) for c in n.get("children", [])]}

    new_street = new[:GridLevel.STREET]
    grid_tree = tree(community)
    grid_tree["name"] = f"{community['name']} {k}"
    street_node = {**street, "code": new_street, "children": [grid_tree]}
    if new_street != street["code"]:
        street_node["name"] = f"{street['name']} {new_street[GridLevel.DISTRICT:]}"
    devices = {d["id"] for d in raw.get("devices", [])}
    subjects = {s["id"] for s in raw.get("care_subjects", [])}

    def local(p: dict[str, Any]) -> bool:
        return any(len(r["unit"]) >= GridLevel.COMMUNITY for r in p.get("roles", []))

    people = [{**p, "id": pre + p["id"] if local(p) else p["id"],
               "roles": [{**r, "unit": code(r["unit"])} for r in p.get("roles", [])]}
              for p in raw.get("people", [])]
    out = {
        **raw,
        "site": {**raw["site"], "id": f"{raw['site']['id']}-{k}",
                 "name": f"{raw['site']['name']} {k}"},
        "grid": {**district, "children": [street_node]},
        "buildings": [{**b, "grid": code(b["grid"])} for b in raw.get("buildings", [])],
        "people": people,
        "devices": [{**d, "id": pre + d["id"], "grid": code(d["grid"]),
                     **({"subject": pre + d["subject"]} if d.get("subject") in subjects else {})}
                    for d in raw.get("devices", [])],
        "care_subjects": [{**s, "id": pre + s["id"], "grid": code(s["grid"])}
                          for s in raw.get("care_subjects", [])],
        "adapters": [{**a, "base_topic": f"{a['base_topic']}-{k}",
                      "mqtt_user": f"{a['mqtt_user']}-{k}",
                      "devices": {n: pre + d if d in devices else d
                                  for n, d in a["devices"].items()}}
                     for a in raw.get("adapters", [])],
    }
    return out


def write_district(n: int, out_dir: Path, source: Path = DEMO_SITE) -> District:
    """Write compounds 1..n as ``out_dir/site-0001.yaml``... (files of an earlier,
    larger run are removed) and load them back as the district they make."""
    if not 1 <= n <= MAX_COMPOUNDS:
        raise ConfigError(f"--sites must be 1 to {MAX_COMPOUNDS}, not {n}")
    raw = load_yaml_file(source, "site file", ConfigError)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("site-*.yaml"):
        old.unlink()
    for k in range(1, n + 1):
        text = yaml.safe_dump(compound(raw, k), allow_unicode=True, sort_keys=False)
        (out_dir / f"site-{k:04d}.yaml").write_text(text, encoding="utf-8")
    return load_district(out_dir)
