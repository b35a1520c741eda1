"""Versions of the sensing engine's saved state, and the upgrade from older ones.

v2 (now): ``{"v": 2, "started": iso|None, "rules": {rule name: that rule's state}}``.
v1 (the one-class engine): ``{"v": 1, "started", "devices", "subjects", "vitals"}``,
a device's presence, water meter and smoke flag in one record, a household's
inactivity and water state in another. Its fields keep their names in v2, in the
section of the rule that owns them.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = 2


def upgrade(snap: dict[str, Any]) -> dict[str, Any]:
    """``snap`` in the current version; raises ValueError for a version it does not know."""
    v = snap.get("v")
    if v == SNAPSHOT_VERSION:
        return snap
    if v == 1:
        out = from_v1(snap)
        log.info("sensing snapshot upgraded from v1 to v2",
                 extra={"devices": len(snap.get("devices") or {}),
                        "subjects": len(snap.get("subjects") or {})})
        return out
    raise ValueError(f"unknown sensing snapshot version {v!r}")


def from_v1(snap: dict[str, Any]) -> dict[str, Any]:
    devices: dict[str, dict[str, Any]] = snap.get("devices") or {}
    subjects: dict[str, dict[str, Any]] = snap.get("subjects") or {}
    meters = {k: d for k, d in devices.items()
              if d.get("meter_total") is not None or d.get("flow_events")}
    return {
        "v": SNAPSHOT_VERSION,
        "started": snap.get("started"),
        "rules": {
            # Each rule reads the fields it owns and leaves the others.
            "offline": devices,
            "inactivity": {
                "subjects": subjects,
                "meters": {k: d["meter_total"] for k, d in meters.items()
                           if d.get("meter_total") is not None},
            },
            "water": {"subjects": subjects, "meters": meters},
            "smoke": {k: True for k, d in devices.items() if d.get("smoke")},
            "vitals": snap.get("vitals") or {},
        },
    }
