"""`hub demo --duration S --json` end to end: real broker, real PostgreSQL, the
simulated compound, the demo staff. Video is left out here (the vision tests cover
footage); everything else is the command a new user runs.

The demo's site id is ``demo`` and its devices' client ids are the site file's, so the
test runs it against a broker of its own: on the machine's common broker another
demo (or a developer's) would share its devices' presence and sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.embedded import start_broker
from hub.services import free_port

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_demo_runs_the_whole_loop(db_url: str, tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "broker")
    try:
        env = {**os.environ, "HUB_DATABASE_URL": db_url, "HUB_MQTT_URL": broker.url,
               "HUB_DATA_DIR": str(tmp_path), "HUB_HTTP_PORT": str(free_port())}
        out = subprocess.run(
            [sys.executable, "-m", "hub.cli", "demo", "--duration", "50", "--json",
             "--no-video"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
        )
    finally:
        broker.stop()
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["readings_stored"] > 0
    sensors = 36  # six households x six sensors; the three cameras are not started here
    assert result["devices"]["online"] >= sensors
    assert result["rejected"] == {}
    # 12-1-203's motion sensor and door contact come through the Zigbee2MQTT bridge.
    zigbee = result["zigbee2mqtt"]
    assert set(zigbee) == {"pir-12-1-203", "door-12-1-203"}
    for readings in zigbee.values():
        assert 0 <= readings["battery"] <= 100 and 0 <= readings["linkquality"] <= 255
    assert zigbee["door-12-1-203"]["contact"] in (0.0, 1.0)
    assert zigbee["door-12-1-203"]["battery"] == 15  # the scenario's low battery
    inc = result["incidents"]
    # Within the first minute: an SOS, a smoke alarm handled and closed inside the
    # grid by the demo staff, an inactivity case from the history phase, vitals.
    assert inc["sos"]["total"] == 1
    assert inc["smoke"] == {"total": 1, "closed": 1}
    assert inc["inactivity"]["total"] == 1
    assert inc["vitals"]["total"] == 1
    assert inc["battery_low"]["total"] == 1  # the Zigbee door contact, at 30 s
    assert result["escalations"]["by_category"]["sos"]["count"] >= 1
    # Family first: 2-1-302's SOS texts her first contact, who never answers; at the
    # window's end (15 s at the demo's scale) the second, who answers "on my way"
    # through the link. Other life-safety cases text their residents' contacts too.
    assert result["contacts_notified"] >= 2
    assert result["contact_answers"] == 1
    assert result["demo_actions"]["close"] == 1
