"""Maintenance incidents reach property management (物业), not the grid workers' care
chain, and still escalate: through the real alert service, the outbox, a signed
webhook and the real broker."""

from __future__ import annotations

from hub.alerts.service import AlertService
from hub.clock import ManualClock
from hub.domain import Category, Severity
from hub.grid.tree import GridTree
from hub.protocol import alerts_topic
from tests.integration.alerting import (
    GRID1,
    T0,
    AlertListener,
    HookServer,
    alarm,
    count,
    demo_site,
    pool_for,
    wait_for,
)

SECRET = "s3cret-for-tests"
COMMUNITY = "110105001002"  # where the demo names its property staff (xu-property)


def test_device_offline_goes_to_property_staff_then_escalates(db_url, broker, site_id) -> None:
    base = demo_site()
    site = base.model_copy(update={"site": base.site.model_copy(update={"id": site_id})})
    hook = HookServer(SECRET)
    app = AlertListener(broker, ["sc/v1/alerts/#"])
    clock = ManualClock(T0)
    with pool_for(db_url) as pool:
        svc = AlertService(pool, site, GridTree.from_site(site), clock, broker=broker,
                           webhook_urls=[hook.url], webhook_secret=SECRET)
        svc.start()
        try:
            [res] = svc.apply_now([alarm(
                "offline:pir-3-2-501", category=Category.DEVICE_OFFLINE,
                severity=Severity.MINOR, device="pir-3-2-501", subject="s01")])
            assert res.incident is not None and res.incident.category == "device_offline"

            assert hook.got.wait(10), "no webhook call"
            assert wait_for(lambda: count(pool, "SELECT count(*) FROM outbox WHERE"
                                          " delivered_at IS NULL") == 0)
            told = [(c["body"]["recipient"]["person_id"], c["body"]["recipient"]["role"])
                    for c in hook.calls]
            assert told == [("xu-property", "property")], told
            assert wait_for(lambda: any(t == alerts_topic(COMMUNITY) for t, _ in app.messages))
            assert not any(t == alerts_topic(GRID1) for t, _ in app.messages), app.messages

            # Nobody accepted within the category's accept_s (3600 s): one level up,
            # the grid leader of 第一网格.
            hook.calls.clear()
            clock.advance(3599)
            svc.tick()
            assert count(pool, "SELECT escalation_level FROM incidents WHERE id = %s",
                         res.incident.id) == 0
            clock.advance(1)
            svc.tick()
            assert wait_for(lambda: len(hook.calls) >= 1)
            assert wait_for(lambda: count(pool, "SELECT count(*) FROM outbox WHERE"
                                          " delivered_at IS NULL") == 0)
            told = {c["body"]["recipient"]["person_id"] for c in hook.calls}
            assert told == {"zhao-min"}, told
            assert count(pool, "SELECT escalation_level FROM incidents WHERE id = %s",
                         res.incident.id) == 1
        finally:
            svc.stop()
            app.close()
            hook.close()
