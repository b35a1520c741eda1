"""An SOS press on the real broker, through the real ingest, the sensing rules and
the incident engine, to a signed webhook received by a local HTTP server and to an
MQTT notification on the grid worker's alerts topic."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from hub.alerts.service import AlertService
from hub.clock import SystemClock
from hub.grid.tree import GridTree
from hub.ingest.service import Ingest
from hub.protocol import Event, EventType, Kind, alerts_topic, encode, topic
from hubtools.loadgen import Publisher
from tests.integration.alerting import (
    GRID1,
    AlertListener,
    HookServer,
    count,
    demo_site,
    pool_for,
    wait_for,
)

SECRET = "s3cret-for-tests"


def test_sos_press_reaches_webhook_and_grid_worker_app(db_url, broker, site_id) -> None:
    base = demo_site()
    site = base.model_copy(update={"site": base.site.model_copy(update={"id": site_id})})
    hook = HookServer(SECRET)
    app = AlertListener(broker, [alerts_topic(GRID1)])
    with pool_for(db_url) as pool:
        svc = AlertService(pool, site, GridTree.from_site(site), SystemClock(), broker=broker,
                           webhook_urls=[hook.url], webhook_secret=SECRET)
        svc.start()
        ing = Ingest(db_url=pool, broker=broker, site=site, client_id=f"ing-{site_id}",
                     shared_group=site_id, batch_wait_ms=10, on_committed=svc.on_messages)
        ing.start()
        pub = Publisher(broker)
        try:
            assert ing.wait_connected(10)
            ev = Event(device="sos-3-2-501", seq=1, ts=datetime.now(UTC), type=EventType.SOS)
            pub.publish(topic(site_id, "sos-3-2-501", Kind.EVENT), encode(ev))

            # The grid worker's app hears about it on its grid's topic.
            assert app.got.wait(10), "no MQTT alert notification"
            t, note = app.messages[0]
            assert t == alerts_topic(GRID1)
            assert note["category"] == "sos" and note["severity"] == "critical"
            assert note["reason"] == "new" and note["grid_code"].startswith(GRID1)

            # The webhook got a signed call per person told (worker, leader, community...).
            assert hook.got.wait(10), "no webhook call"
            assert wait_for(lambda: count(pool, "SELECT count(*) FROM outbox WHERE"
                                          " delivered_at IS NULL") == 0)
            assert hook.calls and all(c["valid"] for c in hook.calls)
            people = {c["body"]["recipient"]["person_id"] for c in hook.calls}
            assert "wang-wei" in people  # the grid worker of 第一网格
            first = hook.calls[0]["body"]
            assert first["incident"]["subject_id"] == "s01"
            assert first["notification"]["incident_id"] == first["incident"]["id"]
            assert hook.calls[0]["timestamp"] == first["sent_at"]
            assert count(pool, "SELECT count(*) FROM incidents WHERE category = 'sos'") == 1

            # The same press delivered again (QoS 1 redelivery) changes nothing.
            pub.publish(topic(site_id, "sos-3-2-501", Kind.EVENT), encode(ev))
            time.sleep(1.0)
            assert count(pool, "SELECT count(*) FROM incidents") == 1
            assert count(pool, "SELECT alarm_count FROM incidents") == 1
        finally:
            pub.close()
            ing.stop()
            svc.stop()
            app.close()
            hook.close()
