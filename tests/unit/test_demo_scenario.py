"""The demo scenario on the simulated clock: a device behind the Zigbee2MQTT bridge
never emits twice at one instant. The bridge stamps each message with the device's
last_seen, so two emissions of one instant are two readings of one time, stored in
either order; the demo's low battery at +30 s met the door contact's 30 s heartbeat,
and its summary showed the heartbeat's battery about every other run."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.demo import demo_edge_config
from edge.scenario import load_scenario
from edge.simulation import Simulation
from hub.config import load_site
from hub.services import Broker

SITE = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml"


@pytest.mark.parametrize("start", [
    datetime(2026, 3, 2, 2, 0, tzinfo=UTC),  # 10:00 in Shanghai: the day window
    datetime(2026, 3, 2, 15, 0, tzinfo=UTC),  # 23:00: the night window
])
def test_bridged_devices_never_emit_twice_at_one_instant(tmp_path: Path,
                                                         start: datetime) -> None:
    site = load_site(SITE)
    bridged = {d for a in site.adapters for d in a.devices.values()}
    cfg = demo_edge_config(site, Broker("127.0.0.1", 1), tmp_path, start=start)
    assert cfg.scenario is not None
    sim = Simulation(cfg, load_scenario(cfg.scenario), start, ZoneInfo(site.site.timezone))
    sim.history()
    live = sim.advance(start + timedelta(seconds=180))
    at = Counter((e.device, e.ts) for e in live if e.device in bridged)
    assert at, "the bridged devices emitted nothing in the first 3 minutes"
    twice = sorted((d, (ts - start).total_seconds()) for (d, ts), n in at.items() if n > 1)
    assert twice == []
    # The scenario's low battery is among them.
    assert any(e.device == "door-12-1-203" and e.readings == (("battery", 15.0, "%"),)
               for e in live)
