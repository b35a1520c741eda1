"""Decoder bombs uploaded as a grid worker's photo, over real HTTP: a JPEG or PNG of a
kilobyte or two whose header claims 20000x20000 is refused from its header, fast,
before OpenCV allocates for it; a real photo still goes through.

``cv2.imdecode`` is a spy here (the hub runs in this process): decoding a bomb fails
the test instead of taking 14 s and 2.3 GB of a shared machine.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from hub.domain import Alarm, AlarmState, Category, Severity
from hub.services import Broker
from tests.bombs import jpeg_bomb, png_bomb, spy_imdecode, webp_bomb
from tests.e2e.live import LiveHub, running_hub

MICRO_IN = "1101050010020103"


@pytest.fixture
def hub(db_url: str, broker: Broker, site_id: str, tmp_path: Path) -> Iterator[LiveHub]:
    with running_hub(db_url, broker, site_id, tmp_path) as h:
        yield h


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return spy_imdecode(monkeypatch)


def _incident(hub: LiveHub) -> int:
    a = Alarm(rule="sos", category=Category.SOS, severity=Severity.CRITICAL,
              state=AlarmState.FIRING, dedup_key=f"bomb:{uuid.uuid4().hex[:6]}",
              ts=datetime.now(UTC), title="bomb", grid_code=MICRO_IN, device_id="sos-3-2-501")
    (res,) = hub.alerts.apply_now([a])
    return int(res.incident.id)


def _metric(hub: LiveHub, reason: str) -> float:
    import httpx

    text = httpx.get(f"{hub.url}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("hub_image_rejected_total{") and 'source="photo"' in line \
                and f'reason="{reason}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_decoder_bomb_photo_uploads_are_refused_from_the_header(
        hub: LiveHub, decodes: list[int]) -> None:
    iid = _incident(hub)
    c = hub.session("wang-wei")
    before = _metric(hub, "too_large")
    for name, bomb, ctype in (("bomb.jpg", jpeg_bomb(), "image/jpeg"),
                              ("bomb.png", png_bomb(), "image/png"),
                              ("bomb.webp", webp_bomb(), "image/webp")):
        t0 = time.perf_counter()
        r = c.post(f"/api/incidents/{iid}/attachments", files={"file": (name, bomb, ctype)})
        took = time.perf_counter() - t0
        assert r.status_code == 413, (name, r.status_code, r.text)
        body = r.json()
        assert body["code"] == "image_too_large" and "pixels" in body["detail"], body
        assert took < 1.0, (name, took)
    assert decodes == []  # every bomb was refused before OpenCV saw it
    assert _metric(hub, "too_large") - before == 3
    # Nothing was stored for them.
    with hub.pool.connection() as conn:
        (n,) = conn.execute("SELECT count(*) FROM attachments WHERE incident_id = %s",
                            (iid,)).fetchone()
    assert n == 0

    # A real phone-sized photo still goes through, shrunk to the served size.
    photo = np.random.default_rng(3).integers(0, 255, (3000, 4000, 3), np.uint8)
    ok, buf = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 70])
    assert ok
    r = c.post(f"/api/incidents/{iid}/attachments",
               files={"file": ("p.jpg", buf.tobytes(), "image/jpeg")})
    assert r.status_code == 201, r.text
    served = c.get(r.json()["url"])
    img = cv2.imdecode(np.frombuffer(served.content, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[:2] == (1200, 1600)
