"""Edge agent configuration for the demo compound: every non-camera device of the
site file, one agent, and the demo scenario.

The demo must show an inactivity incident in its first minutes although the window
is many hours: the scenario's history phase publishes the past hours of one
household so that its last sign of life was just under a window ago. The window
depends on the local time (day or night), so the scenario is adjusted to the site's
rules at the moment the demo starts (see :func:`adjust_scenario`) and written next to
the spool.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from edge.config import ZIGBEE_KINDS, DeviceSpec, EdgeConfig, Household, Zigbee2MQTTBridge
from edge.scenario import Scenario, dump_scenario, load_scenario
from hub.config import Site
from hub.services import Broker

DEMO_SCENARIO = Path(__file__).resolve().parents[1] / "deploy" / "scenarios" / "demo.yaml"
INACTIVITY_MARGIN_S = 30.0  # the inactivity alarm is due this long after start


def inactivity_window_s(site: Site, at: datetime) -> float:
    r = site.rules.inactivity
    local = at.astimezone(ZoneInfo(site.site.timezone)).time()
    day = _between(local, r.day_start, r.night_start)
    return r.day_window_s if day else r.night_window_s


def _between(t: time, a: time, b: time) -> bool:
    return a <= t < b if a <= b else (t >= a or t < b)


def adjust_scenario(sc: Scenario, site: Site, start: datetime,
                    margin_s: float = INACTIVITY_MARGIN_S) -> Scenario:
    """Fit the history to the site's rules in force at ``start``: a household's last
    sign of life (or water use) falls ``margin_s`` short of its window, and the
    history is shorter than the windows. The hub judges a household from the first
    message it sees of it and ticks its deadlines by the clock, so a history longer
    than a window would raise an alarm before the rest of that history arrived."""
    window = inactivity_window_s(site, start)
    water = site.rules.water.none_window_s
    span_h = (min(window, water) - margin_s / 2) / 3600
    hist = []
    for h in sc.history:
        upd: dict[str, float] = {"hours": span_h}
        if h.inactive_for is not None:
            upd["inactive_for"] = max(0.0, window - margin_s)
        if h.no_water_for is not None:
            upd["no_water_for"] = max(0.0, water - margin_s)
        hist.append(h.model_copy(update=upd))
    return sc.model_copy(update={"history": hist})


def demo_edge_config(site: Site, broker: Broker, workdir: str | Path, *,
                     scenario: str | Path | None = DEMO_SCENARIO,
                     start: datetime | None = None, time_factor: float = 1.0) -> EdgeConfig:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    sensors = [d for d in site.devices if d.kind != "camera"]
    subjects = {d.subject for d in sensors if d.subject}
    households = [Household(id=s.id, address=s.address) for s in site.care_subjects
                  if s.id in subjects]
    # The site's first Zigbee2MQTT bridge is simulated too: its devices speak as it.
    bridge = site.adapters[0] if site.adapters else None
    zigbee = {dev: name for name, dev in bridge.devices.items()} if bridge else {}
    devices = [DeviceSpec(id=d.id, kind=d.kind, subject=d.subject, heartbeat_s=d.heartbeat_s,
                          zigbee2mqtt=zigbee.get(d.id) if d.kind in ZIGBEE_KINDS else None)
               for d in sensors]
    sc_path: Path | None = None
    if scenario is not None:
        start = start or datetime.now(UTC)
        sc = adjust_scenario(load_scenario(scenario), site, start)
        sc = sc.model_copy(update={"start": start})
        sc_path = workdir / "scenario.yaml"
        dump_scenario(sc, sc_path)
    return EdgeConfig(
        broker=f"mqtt://{broker.host}:{broker.port}", username=broker.username,
        password=broker.password, site=site.site.id, spool=workdir / "spool.sqlite",
        timezone=site.site.timezone, households=households, devices=devices,
        scenario=sc_path, time_factor=time_factor,
        zigbee2mqtt=Zigbee2MQTTBridge(base_topic=bridge.base_topic) if bridge else
        Zigbee2MQTTBridge())
