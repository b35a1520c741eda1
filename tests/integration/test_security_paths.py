"""Hostile paths and parameters: NUL bytes, control characters, invalid UTF-8, names
too long for the file system, traversal. The probe's ``GET /static/js/%00.js`` was a
500 with a traceback (``ValueError: embedded null byte`` from ``Path.resolve``). The
class: whatever a path or parameter holds, the answer is a clear 4xx in the API's
error format, never a 500 - on every route that takes a path or a parameter.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from hub.services import Broker
from tests.e2e.live import PASSWORD, LiveHub, running_hub

LONG = "a" * 5000
HOSTILE_NAMES = ["%00", "a%00.js", "%00%00%00", "%0a%0d", "%01%1f%7f", "%ff%fe", "%c0%ae%c0%ae",
                 "%ed%a0%80", LONG, "%2e%2e/" * 30 + "etc/passwd", "..%5c..%5cetc%5cpasswd",
                 "%25%30%30"]


def _paths() -> Iterator[tuple[str, str]]:
    for n in HOSTILE_NAMES:
        yield "GET", f"/static/{n}"
        yield "GET", f"/static/js/{n}"
        yield "GET", f"/static/js/{n}.js"
        yield "GET", f"/{n}"
        yield "GET", f"/m{n}"
        yield "GET", f"/api/attachments/{n}"
        yield "GET", f"/api/incidents/{n}"
        yield "GET", f"/api/incidents/{n}/evidence"
        yield "POST", f"/api/incidents/{n}/transitions"
        yield "POST", f"/api/incidents/{n}/attachments"
        yield "GET", f"/api/devices/{n}"
        yield "GET", f"/api/devices/{n}/readings"
        yield "GET", f"/api/users/{n}"
        yield "DELETE", f"/api/silences/{n}"
        for q in ("device", "grid", "cursor", "since", "until", "subject", "assignee",
                  "category", "state"):
            yield "GET", f"/api/incidents?{q}={n}"
        yield "GET", f"/api/stats?grid={n}"
        yield "GET", f"/api/grid?grid={n}"
        yield "GET", f"/api/devices?grid={n}&kind={n}&health={n}"
        yield "GET", f"/api/devices/sos-3-2-501/readings?metric={n}&since={n}"
        yield "GET", f"/api/stream?grid={n}"
        yield "GET", f"/static/app.js?{n}={n}"
    yield "GET", "/api/incidents/" + "9" * 400
    yield "GET", "/api/attachments/" + "9" * 400
    yield "GET", "/api/incidents/-1/evidence"
    yield "GET", "/static/js/" + "/".join(["a" * 250] * 30) + ".js"


@pytest.fixture
def hub(db_url: str, broker: Broker, site_id: str, tmp_path: Path) -> Iterator[LiveHub]:
    with running_hub(db_url, broker, site_id, tmp_path) as h:
        yield h


def _send(hub: LiveHub, method: str, path: str, token: str | None) -> tuple[int, bytes, str]:
    u = urlsplit(hub.url)
    c = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method != "GET":
        headers["Content-Type"] = "application/json"
    try:
        c.request(method, path, body=b"{}" if method != "GET" else None, headers=headers)
        r = c.getresponse()
        ctype = r.getheader("content-type") or ""
        if ctype.startswith("text/event-stream"):
            return r.status, b"", ctype  # a stream that opened: not an error
        return r.status, r.read(), ctype
    finally:
        c.close()


def test_hostile_paths_and_parameters_are_clear_4xx_never_500(hub: LiveHub) -> None:
    token = httpx.post(f"{hub.url}/api/auth/login", timeout=10, json={
        "username": "admin", "password": PASSWORD, "token": True}).json()["token"]
    bad: list[str] = []
    n = 0
    for method, path in _paths():
        for who in (token, None):
            n += 1
            status, body, ctype = _send(hub, method, path, who)
            where = f"{method} {path[:90]} ({'admin' if who else 'anonymous'}) -> {status}"
            if status >= 500:
                bad.append(f"{where}: {body[:200]!r}")
            elif status >= 400:
                # A clear error: JSON with a detail, like every other API error.
                if not ctype.startswith("application/json") or "detail" not in json.loads(body):
                    bad.append(f"{where}: not a JSON error: {ctype} {body[:120]!r}")
    assert not bad, f"{len(bad)} of {n} requests:\n" + "\n".join(bad[:40])
    # The hub is still well after all of that.
    assert httpx.get(f"{hub.url}/static/js/api.js", timeout=5).status_code == 200
    assert httpx.get(f"{hub.url}/healthz", timeout=5).status_code == 200


def test_stored_file_names_the_os_refuses_are_404_not_500(hub: LiveHub) -> None:
    """Names that reach the file system from the database (an evidence image named by
    a detector, an attachment's path) are looked up as safely as a URL's."""
    import uuid
    from datetime import UTC, datetime

    from hub.domain import Alarm, AlarmState, Category, Severity

    c = hub.session("admin")
    (hub.data_dir / "outside.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    (hub.data_dir / "evidence").mkdir(exist_ok=True)
    (hub.data_dir / "evidence" / "link.jpg").symlink_to("/etc/hostname")
    for name in ("evidence/" + "a" * 5000 + ".jpg", "evidence/" + "/".join(["b" * 255] * 20),
                 "evidence/../../outside.jpg", "evidence/link.jpg", "evidence"):
        a = Alarm(rule="sos", category=Category.SOS, severity=Severity.CRITICAL,
                  state=AlarmState.FIRING, dedup_key=f"p:{uuid.uuid4().hex[:6]}",
                  ts=datetime.now(UTC), title="paths", grid_code="1101050010020103",
                  device_id="sos-3-2-501", evidence_image=name)
        (res,) = hub.alerts.apply_now([a])
        r = c.get(f"/api/incidents/{res.incident.id}/evidence")
        assert r.status_code == 404 and r.json()["detail"], (name[:40], r.status_code)
        with hub.pool.connection() as conn:
            (aid,) = conn.execute(
                "INSERT INTO attachments (incident_id, path, content_type, size_bytes)"
                " VALUES (%s, %s, 'image/jpeg', 1) RETURNING id",
                (res.incident.id, name)).fetchone()
        r = c.get(f"/api/attachments/{aid}")
        assert r.status_code == 404 and r.json()["detail"], (name[:40], r.status_code)
