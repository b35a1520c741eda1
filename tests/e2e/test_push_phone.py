"""Push to a locked phone, in a real headless Chromium against a running hub (real
PostgreSQL, real MQTT broker, real ingest and alert service).

The worker's page registers the PWA's service worker. Chromium cannot reach a real
push service here, so the test is the phone's push service: its own P-256 key pair
and auth secret, an endpoint on a local HTTP server (hubtools.pushrecv), registered
through the hub's subscription API with the page's session. An SOS published on the
real broker makes the hub POST an encrypted message there; the server checks the
VAPID JWT (ES256 by the hub's public key, aud, exp) and decrypts it (RFC 8291); the
payload goes to the real service worker through the DevTools Protocol
(ServiceWorker.deliverPushMessage), which must show the notification. A critical
one re-notifies (every 2 s here) until the worker accepts it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.services import Broker
from hubtools.pushrecv import PushService
from tests.e2e import seed
from tests.e2e.browser import errors
from tests.e2e.live import PASSWORD, LiveHub, running_hub

RENOTIFY_S = 2


@pytest.fixture
def hub(db_url: str, broker: Broker, site_id: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveHub]:
    monkeypatch.setenv("HUB_PUSH_RENOTIFY_S", str(RENOTIFY_S))
    monkeypatch.setenv("HUB_PUSH_RENOTIFY_TIMES", "5")
    with running_hub(db_url, broker, site_id, tmp_path) as h:
        pub = seed.publisher(h)
        seed.devices_online(pub, h)
        h.extra_pub = pub  # type: ignore[attr-defined]
        yield h
        pub.loop_stop()
        pub.disconnect()


def _worker_of(hub: LiveHub, device: str) -> str:
    grid = next(d.grid for d in hub.site.devices if d.id == device)
    return next(u for u, _, role, scope in hub.logins
                if role == "grid_worker" and grid.startswith(scope))


def _registration(page: Any, cdp: Any, scope: str, timeout: float = 10.0) -> str:
    regs: dict[str, str] = {}
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: regs.update(
        {r["scopeURL"]: r["registrationId"] for r in e["registrations"] if not r["isDeleted"]}))
    cdp.send("ServiceWorker.enable")
    end = time.monotonic() + timeout
    while scope not in regs:
        assert time.monotonic() < end, f"no service worker registration for {scope}: {regs}"
        page.wait_for_timeout(100)  # lets Playwright hand over the DevTools events
    return regs[scope]


NOTES = """async () => (await (await navigator.serviceWorker.ready)
  .getNotifications()).map((n) => ({title: n.title, body: n.body, tag: n.tag,
  renotify: n.renotify, requireInteraction: n.requireInteraction,
  vibrate: Array.from(n.vibrate || []), data: n.data}))"""


def _shown(page: Any, pred: Any, timeout: float = 5.0) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        notes = page.evaluate(NOTES)
        hit = [n for n in notes if pred(n)]
        if hit:
            return hit[0]  # type: ignore[no-any-return]
        assert time.monotonic() < end, f"not shown; notifications: {notes}"
        page.wait_for_timeout(100)


def test_sos_pushed_to_the_workers_service_worker_until_accepted(browser: Any,
                                                                  hub: LiveHub) -> None:
    worker = _worker_of(hub, "sos-3-2-501")
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN",
                              is_mobile=True, has_touch=True)
    ctx.grant_permissions(["notifications"], origin=hub.url)
    page = ctx.new_page()
    errs = errors(page)
    page.goto(hub.url + "/m")
    page.fill("#login-user", worker)
    page.fill("#login-pass", PASSWORD)
    page.click("#login-btn")
    page.wait_for_selector("#app-view:not([hidden])")
    # The PWA: a manifest, and a service worker controlling /m.
    manifest = page.evaluate("fetch(document.querySelector('link[rel=manifest]').href)"
                             ".then((r) => r.json())")
    assert manifest["start_url"] == "/m" and manifest["display"] == "standalone"
    assert page.evaluate("navigator.serviceWorker.ready.then((r) => r.scope)") == hub.url + "/m"
    # The offline shell: the page's own files in the worker's cache, no API data.
    cached = page.evaluate("""async () => { const out = [];
      for (const k of await caches.keys())
        for (const r of await (await caches.open(k)).keys()) out.push(new URL(r.url).pathname);
      return out; }""")
    assert {"/m", "/static/js/worker.js", "/static/js/push.js", "/static/css/mobile.css",
            "/m/manifest.webmanifest"} <= set(cached), cached
    assert not [u for u in cached if u.startswith("/api/")], cached
    cdp = ctx.new_cdp_session(page)
    reg_id = _registration(page, cdp, hub.url + "/m")

    # The phone's push subscription, registered with the page's own session.
    csrf = next(c["value"] for c in ctx.cookies() if c["name"] == "hub_csrf")
    key = ctx.request.get(hub.url + "/api/push/key").json()["public_key"]
    service = PushService(hub_key=key).start()
    phone = service.phone("w1")
    r = ctx.request.post(hub.url + "/api/push/subscriptions", data=phone.subscription(service.url),
                         headers={"X-CSRF-Token": csrf})
    assert r.status == 201, r.text()
    try:
        # An SOS pressed at 3-2-501, on the real broker.
        t0 = time.time()
        seed.sos(hub.extra_pub, hub.site.site.id)  # type: ignore[attr-defined]
        first = service.wait(1, timeout=10, phone="w1")[0]
        assert first.at - t0 < 3.0, f"push took {first.at - t0:.2f} s"
        assert first.claims["aud"] == service.url
        assert first.headers.get("urgency") == "high"
        msg = first.payload
        iid = msg["incident_id"]
        assert msg["severity"] == "critical" and msg["requireInteraction"] is True
        assert msg["url"] == f"/m?incident={iid}" and "紧急" in msg["title"]

        # The decrypted payload to the real service worker, which shows it.
        cdp.send("ServiceWorker.deliverPushMessage",
                 {"origin": hub.url, "registrationId": reg_id, "data": json.dumps(msg)})
        note = _shown(page, lambda n: n["tag"] == f"incident-{iid}")
        assert note["title"] == msg["title"] and note["requireInteraction"] is True
        assert note["renotify"] is True and note["vibrate"][0] > 0
        assert note["data"]["url"] == f"/m?incident={iid}" and note["data"]["again"] == 0

        # Not accepted: it rings again, replacing the notification under its tag.
        again = service.wait(2, timeout=RENOTIFY_S * 3, phone="w1")[1]
        assert again.payload["incident_id"] == iid and again.payload["again"] == 1
        assert again.at - first.at >= RENOTIFY_S - 0.5
        cdp.send("ServiceWorker.deliverPushMessage", {
            "origin": hub.url, "registrationId": reg_id, "data": json.dumps(again.payload)})
        note = _shown(page, lambda n: n["data"]["again"] == 1)
        assert len([n for n in page.evaluate(NOTES) if n["tag"] == f"incident-{iid}"]) == 1

        # The operator registers and dispatches it to the worker: the "dispatched to
        # me" push, which rings again too until the worker accepts.
        op = hub.session("operator")
        for body in ({"action": "register"}, {"action": "dispatch", "assignee": worker}):
            op.post(f"/api/incidents/{iid}/transitions", json=body).raise_for_status()
        got = service.wait(4, timeout=RENOTIFY_S * 4, phone="w1")
        dispatched = [m for m in got if m.payload["reason"] == "transition"]
        assert dispatched and dispatched[0].payload["incident_id"] == iid
        assert any(m.payload["reason"] == "transition" and m.payload["again"] >= 1 for m in got)

        # The worker accepts (签收) on the phone's session: the re-notifications stop.
        page.evaluate("""async (id) => {
          const csrf = document.cookie.split('; ').find((c) => c.startsWith('hub_csrf=')).slice(9);
          const r = await fetch(`/api/incidents/${id}/transitions`, {method: 'POST',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
            body: JSON.stringify({action: 'accept'})});
          if (!r.ok) throw new Error(await r.text());
        }""", iid)
        time.sleep(0.5)  # a push already leased may still land
        settled = len(service.received)
        time.sleep(RENOTIFY_S * 2.5)
        late = [m.payload for m in service.received[settled:]]
        assert not late, f"re-notified after acceptance: {late}"
        assert not service.refused, service.refused

        # Logging out removes the subscription.
        page.click("#logout")
        page.wait_for_selector("#login-view:not([hidden])")
        with hub.pool.connection() as conn:
            left = conn.execute("SELECT count(*) FROM push_subscriptions").fetchone()
        assert left is not None and left[0] == 0
    finally:
        service.stop()
    # The page's own pushManager.subscribe cannot work in a headless test browser
    # (Chromium says why); that is the step this test stands in for.
    assert not [e for e in errs if ("push" in e.lower() or "sw.js" in e)
                and "does not support the Push API in incognito" not in e], errs
    assert page.get_attribute("#push-btn", "data-push") in ("failed", "on", None)
