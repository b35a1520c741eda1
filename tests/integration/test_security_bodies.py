"""Request bodies before authentication, and without a size limit, over real HTTP.

The probe: an unauthenticated 300 MB JSON body to a transitions endpoint was read in
full (13.8 s, 900 MB) before the 401, and a multipart request declaring 200 MB held a
worker. The class: nothing reads a body for a caller who is not logged in, and no
route reads more than its cap - whether the size is declared (Content-Length) or not
(chunked, counted as it streams). These tests talk raw HTTP/1.1 to the hub's uvicorn
and never send the big bodies they declare: a hub that waits to read them fails the
test by not answering in time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest

from hub.domain import Alarm, AlarmState, Category, Severity
from hub.services import Broker
from tests.e2e.live import PASSWORD, LiveHub, running_hub
from tests.integration.security_support import RawAnswer, chunked, filler, send_raw

MICRO_IN = "1101050010020103"
MB = 1024 * 1024
ANSWER_S = 2.0  # a refusal that does not read the body comes at once
# The head of a well-formed multipart photo part; what follows it is the "photo".
PART = (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n")


@pytest.fixture
def hub(db_url: str, broker: Broker, site_id: str, tmp_path: Path) -> Iterator[LiveHub]:
    with running_hub(db_url, broker, site_id, tmp_path) as h:
        yield h


def raw(hub: LiveHub, head: str, chunks: Iterable[bytes] = (),
        timeout: float = ANSWER_S + 3) -> RawAnswer:
    """Send ``head`` (request line and headers, no blank line), then ``chunks`` of body
    until the server answers; return its answer."""
    a = send_raw(urlsplit(hub.url).port or 80, head, chunks, timeout)
    if a.timed_out:
        raise AssertionError(f"no answer in {timeout} s (the hub is reading the body?);"
                             f" sent {a.sent} bytes")
    return a


def _host(hub: LiveHub) -> str:
    return urlsplit(hub.url).netloc


def _token(hub: LiveHub, username: str = "wang-wei") -> str:
    import httpx

    r = httpx.post(f"{hub.url}/api/auth/login", timeout=10,
                   json={"username": username, "password": PASSWORD, "token": True})
    r.raise_for_status()
    return str(r.json()["token"])


def _incident(hub: LiveHub) -> int:
    a = Alarm(rule="sos", category=Category.SOS, severity=Severity.CRITICAL,
              state=AlarmState.FIRING, dedup_key=f"body:{uuid.uuid4().hex[:6]}",
              ts=datetime.now(UTC), title="bodies", grid_code=MICRO_IN,
              device_id="sos-3-2-501")
    (res,) = hub.alerts.apply_now([a])
    return int(res.incident.id)


def _refused(a: RawAnswer, status: int, code: str) -> None:
    import json

    assert a.status == status, (a.status, a.body[:300])
    body = json.loads(a.body)
    assert body.get("code") == code and body.get("detail"), body
    assert a.seconds < ANSWER_S, a.seconds
    assert a.headers.get("content-type", "").startswith("application/json")


# ------------------------------------------------------------------ before authentication


def test_bodies_of_unauthenticated_requests_are_not_read(hub: LiveHub) -> None:
    iid = _incident(hub)
    path = f"/api/incidents/{iid}/transitions"
    for auth in ("", "Cookie: hub_session=forged-session-token\r\n",
                 "Authorization: Bearer not-a-token\r\n"):
        # 300 MB declared; the client sends 1 MB of it and waits.
        a = raw(hub, f"POST {path} HTTP/1.1\r\nHost: {_host(hub)}\r\n{auth}"
                     f"Content-Type: application/json\r\nContent-Length: {300 * MB}",
                filler(1 * MB))
        _refused(a, 401, "not_authenticated")
        assert a.sent < 1 * MB or a.seconds < ANSWER_S
    # Chunked, no length declared: the same answer without reading a chunk.
    a = raw(hub, f"POST {path} HTTP/1.1\r\nHost: {_host(hub)}\r\n"
                 "Content-Type: application/json\r\nTransfer-Encoding: chunked",
            chunked(4 * MB))
    _refused(a, 401, "not_authenticated")
    # A multipart upload declaring 200 MB, not logged in.
    a = raw(hub, f"POST /api/incidents/{iid}/attachments HTTP/1.1\r\nHost: {_host(hub)}\r\n"
                 "Content-Type: multipart/form-data; boundary=xyz\r\n"
                 f"Content-Length: {200 * MB}", filler(1 * MB))
    _refused(a, 401, "not_authenticated")


# ------------------------------------------------------------------ size caps


def test_bodies_over_the_route_cap_are_refused_before_they_are_read(hub: LiveHub) -> None:
    iid = _incident(hub)
    bearer = f"Authorization: Bearer {_token(hub)}\r\n"
    # JSON routes: declared too big.
    a = raw(hub, f"POST /api/incidents/{iid}/transitions HTTP/1.1\r\nHost: {_host(hub)}\r\n"
                 f"{bearer}Content-Type: application/json\r\nContent-Length: {300 * MB}",
            filler(1 * MB))
    _refused(a, 413, "body_too_large")
    # The public login route is capped too.
    a = raw(hub, f"POST /api/auth/login HTTP/1.1\r\nHost: {_host(hub)}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {50 * MB}", filler(MB))
    _refused(a, 413, "body_too_large")
    # A photo upload declaring 200 MB (the documented limit is 10 MiB).
    a = raw(hub, f"POST /api/incidents/{iid}/attachments HTTP/1.1\r\nHost: {_host(hub)}\r\n"
                 f"{bearer}Content-Type: multipart/form-data; boundary=xyz\r\n"
                 f"Content-Length: {200 * MB}", filler(MB))
    _refused(a, 413, "body_too_large")


def test_chunked_bodies_are_counted_as_they_stream(hub: LiveHub) -> None:
    iid = _incident(hub)
    bearer = f"Authorization: Bearer {_token(hub)}\r\n"
    a = raw(hub, f"POST /api/incidents/{iid}/transitions HTTP/1.1\r\nHost: {_host(hub)}\r\n"
                 f"{bearer}Content-Type: application/json\r\nTransfer-Encoding: chunked",
            chunked(64 * MB))
    assert a.status == 413 and b'"body_too_large"' in a.body, (a.status, a.body[:300])
    assert a.sent < 8 * MB, a.sent  # stopped soon after the cap, not at the end
    a = raw(hub, f"POST /api/incidents/{iid}/attachments HTTP/1.1\r\nHost: {_host(hub)}\r\n"
                 f"{bearer}Content-Type: multipart/form-data; boundary=xyz\r\n"
                 "Transfer-Encoding: chunked", chunked(64 * MB, 256 * 1024, PART),
            timeout=15)
    assert a.status == 413 and b'"body_too_large"' in a.body, (a.status, a.body[:300])
    assert a.sent < 40 * MB, a.sent


def test_bodies_within_their_caps_still_work(hub: LiveHub) -> None:
    iid = _incident(hub)
    c = hub.session("wang-wei")
    # A photo of a few megabytes (under the 10 MiB limit) is taken.
    photo = np.random.default_rng(5).integers(0, 255, (1500, 2000, 3), np.uint8)
    jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    assert 1 * MB < len(jpeg) < 10 * MB
    r = c.post(f"/api/incidents/{iid}/attachments",
               files={"file": ("p.jpg", jpeg, "image/jpeg")})
    assert r.status_code == 201, r.text
    # A small JSON body sent chunked is read as usual.
    body = b'{"username": "wang-wei", "password": "%s"}' % PASSWORD.encode()
    a = raw(hub, f"POST /api/auth/login HTTP/1.1\r\nHost: {_host(hub)}\r\n"
                 "Content-Type: application/json\r\nTransfer-Encoding: chunked",
            [f"{len(body):x}\r\n".encode() + body + b"\r\n", b"0\r\n\r\n"])
    assert a.status == 200, a.body
    # An authenticated transition with an ordinary body gets its ordinary answer.
    admin = hub.session("admin")
    version = admin.get(f"/api/incidents/{iid}").json()["incident"]["version"]
    r = admin.post(f"/api/incidents/{iid}/transitions",
                   json={"action": "register", "expected_version": version})
    assert r.status_code == 200, r.text
