"""Device health end to end: a Zigbee2MQTT bridge's payloads on the real broker,
through the real ingest and its adapter, the sensing rules and the alert service, to
maintenance incidents in the database that are routed to property management, not
to the grid worker's care chain, and that open no care incident."""

from __future__ import annotations

import json
import time

from hub.alerts.service import AlertService
from hub.clock import SystemClock
from hub.config import Site
from hub.grid.tree import GridTree
from hub.ingest.service import Ingest
from hubtools import loadgen
from tests.integration.alerting import count, pool_for, wait_for

GRID = "11010500100201"
COMMUNITY = "110105001002"


def _site(site_id: str, base: str) -> Site:
    where = {"grid": GRID, "location": {"x": 0.5, "y": 0.5, "label": "3-2-501 门磁"}}
    return Site.model_validate({
        "site": {"id": site_id, "name": "health"},
        "grid": loadgen.GRID,
        "people": [
            {"id": "wang", "name": "王伟", "roles": [{"role": "grid_worker", "unit": GRID}]},
            {"id": "xu", "name": "徐海涛", "roles": [{"role": "property", "unit": COMMUNITY}]},
        ],
        "care_subjects": [{"id": "s01", "name": "王奶奶", "address": "3-2-501", "grid": GRID,
                           "consent": True}],
        "devices": [
            {"id": "door-1", "kind": "door", "subject": "s01", "power": "battery", **where},
            {"id": "leak-1", "kind": "leak", "power": "battery",
             **{**where, "location": {"x": 0.5, "y": 0.5, "label": "3-2-501 厨房"}}},
        ],
        "adapters": [{"kind": "zigbee2mqtt", "base_topic": base, "mqtt_user": f"z2m-{site_id}",
                      "devices": {"3-2-501/door": "door-1", "3-2-501/leak": "leak-1"}}],
    })


def _incidents(pool) -> dict[str, tuple]:  # noqa: ANN001
    with pool.connection() as c:
        rows = c.execute("SELECT category, id, subject_id, device_id, firing, title"
                         " FROM incidents").fetchall()
    return {r[0]: r[1:] for r in rows}


def test_zigbee_sensor_health_reaches_property_management(db_url, broker, site_id) -> None:  # noqa: ANN001
    base = f"z2m/{site_id}"
    site = _site(site_id, base)
    with pool_for(db_url) as pool:
        svc = AlertService(pool, site, GridTree.from_site(site), SystemClock(),
                           webhook_urls=["http://127.0.0.1:9/hook"], webhook_secret="s3cret")
        ing = Ingest(db_url=pool, broker=broker, site=site, client_id=f"ing-{site_id}",
                     shared_group=site_id, batch_wait_ms=10, on_committed=svc.on_messages)
        ing.start()
        pub = loadgen.Publisher(broker)
        try:
            assert ing.wait_connected(10)
            door = {"battery": 60, "voltage": 2950, "contact": True, "linkquality": 120,
                    "tamper": False}
            states = [
                ("door", door),
                ("door", {**door, "battery": 19, "voltage": 2700}),  # low at 20 % or below
                ("door", {**door, "battery": 21, "voltage": 2720}),  # no flapping at 21 %
                ("door", {**door, "battery": 19, "tamper": True}),  # pulled off the frame
                ("leak", {"water_leak": True, "battery": 90, "linkquality": 80}),
            ]
            for name, payload in states:
                pub.publish(f"{base}/3-2-501/{name}", json.dumps(payload).encode())
                time.sleep(0.05)  # distinct receive times: these messages carry no ts
            assert pub.wait_acked(len(states))
            assert wait_for(lambda: len(_incidents(pool)) == 3, 20), _incidents(pool)
            got = _incidents(pool)
            assert set(got) == {"battery_low", "tamper", "water_leak"}  # and no care incident
            assert got["battery_low"][1:] == (None, "door-1", True, "3-2-501 门磁 电量低（19%）")
            assert got["tamper"][1:3] == (None, "door-1")
            assert got["water_leak"][1:3] == (None, "leak-1")
            assert count(pool, "SELECT alarm_count FROM incidents"
                               " WHERE category = 'battery_low'") == 1
            # Told: the property staff, for each of them; the grid worker, for none.
            with pool.connection() as c:
                told = c.execute("SELECT i.category, o.recipient FROM outbox o"
                                 " JOIN incidents i ON i.id = o.incident_id"
                                 " WHERE o.channel = 'webhook'").fetchall()
            assert {cat for cat, _ in told} == set(got)
            assert {who for _, who in told} == {"xu"}

            # A new battery clears the alarm; the incident stays for the staff to close.
            pub.publish(f"{base}/3-2-501/door",
                        json.dumps({**door, "battery": 100, "voltage": 3050}).encode())
            assert pub.wait_acked(1)
            assert wait_for(lambda: _incidents(pool)["battery_low"][3] is False, 20)
            assert count(pool, "SELECT count(*) FROM incidents") == 3
        finally:
            pub.close()
            ing.stop()
            svc.stop()
