"""Camera AI pushes over real HTTP (uvicorn) into real PostgreSQL: a Hikvision or
Dahua camera's event, in the vendor's documented format, becomes an incident with the
camera's snapshot; repeats update it; bad credentials, oversized, malformed and
unknown pushes are refused or counted, never a crash."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import uvicorn
import yaml
from prometheus_client import REGISTRY
from psycopg_pool import ConnectionPool

from hub.alerts.service import AlertService
from hub.api.app import create_app
from hub.api.deps import AppContext
from hub.api.limits import RequestLimits
from hub.clock import ManualClock
from hub.config import Site
from hub.services import free_port
from hub.store import users
from tests.e2e.live import PASSWORD
from tests.integration.alerting import DEMO_SITE, T0, pool_for, service

DATA = Path(__file__).resolve().parents[1] / "data" / "camera_events"
HIK, DAHUA = "cam-b3-lane", "cam-b3-stair2"
HIK_PW, DAHUA_PW = "hik-Secret-1", "dahua-Secret-2"
PUSH_CAP = 1024 * 1024


def _site() -> Site:
    doc = yaml.safe_load(DEMO_SITE.read_text(encoding="utf-8"))
    for d in doc["devices"]:
        if d["id"] == DAHUA:
            d["camera"]["events"] = {"vendor": "dahua", "auth": "basic", "username": "dahua",
                                     "events": {"LeftDetection": "fire_lane",
                                                "ParkingDetection": "fire_lane"}}
    return Site.model_validate(doc)


@dataclass
class Hub:
    url: str
    pool: ConnectionPool
    alerts: AlertService
    data_dir: Path
    clock: ManualClock

    def push(self, device: str, content: bytes, ctype: str, **kw: Any) -> httpx.Response:
        a = kw.pop("auth", None) or (httpx.DigestAuth("hub", HIK_PW) if device == HIK
                                     else httpx.BasicAuth("dahua", DAHUA_PW))
        return httpx.post(f"{self.url}/api/cameras/{device}/events", content=content,
                          headers={"content-type": ctype, **kw.pop("headers", {})},
                          auth=a, timeout=10, **kw)

    def incidents(self, device: str) -> list[dict[str, Any]]:
        with self.pool.connection() as c:
            cur = c.execute(
                "SELECT id, category, dedup_key, firing, alarm_count, evidence_image, grid_code,"
                " state, evidence FROM incidents WHERE device_id = %s ORDER BY id", (device,))
            cols = [d.name for d in cur.description or ()]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


@pytest.fixture
def hub(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    monkeypatch.setenv("HUB_CAMERA_SECRET_CAM_B3_LANE", HIK_PW)
    monkeypatch.setenv("HUB_CAMERA_SECRET_CAM_B3_STAIR2", DAHUA_PW)
    clock = ManualClock(T0)
    with pool_for(db_url) as pool:
        svc = service(pool, clock, data_dir=tmp_path, site=_site())
        # principal None: the guard authenticates as in production.
        ctx = AppContext(pool=pool, site=svc.site, tree=svc.tree, alerts=svc, data_dir=tmp_path,
                         limits=RequestLimits(camera_push_max_bytes=PUSH_CAP))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port,
                                               log_level="warning", access_log=False))
        t = threading.Thread(target=server.run, daemon=True)
        t.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        try:
            yield Hub(f"http://127.0.0.1:{port}", pool, svc, tmp_path, clock)
        finally:
            server.should_exit = True
            t.join(10)


def _jpeg(w: int = 320, h: int = 240) -> bytes:
    img = (np.random.default_rng(7).random((h, w, 3)) * 255).astype(np.uint8)
    cv2.rectangle(img, (100, 80), (220, 180), (0, 0, 255), -1)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _multipart(kind: str, meta_type: str, meta: bytes, jpeg: bytes | None) -> tuple[str, bytes]:
    b = "MIME_boundary"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"event\"\r\n"
            f"Content-Type: {meta_type}\r\nContent-Length: {len(meta)}\r\n\r\n").encode() + meta
    if jpeg is not None:
        body += (f"\r\n--{b}\r\nContent-Disposition: form-data; name=\"Picture\";"
                 f" filename=\"detectionPicture.jpg\"\r\nContent-Type: image/jpeg\r\n"
                 f"Content-Length: {len(jpeg)}\r\n\r\n").encode() + jpeg
    return f"multipart/{kind}; boundary={b}", body + f"\r\n--{b}--\r\n".encode()


def _hik_xml(post: int = 1, state: str = "active", at: str = "17:00:05",
             event: str = "parking") -> bytes:
    return ((DATA / "hikvision_parking.xml").read_bytes()
            .replace(b"<activePostCount>1<", f"<activePostCount>{post}<".encode())
            .replace(b">active<", f">{state}<".encode())
            .replace(b"17:00:05", at.encode())
            .replace(b">parking<", f">{event}<".encode()))


def _token(hub: Hub, username: str) -> str:
    with hub.pool.connection() as conn:
        users.create_demo_users(conn, hub.alerts.site, fixed_password=PASSWORD)
    r = httpx.post(f"{hub.url}/api/auth/login", timeout=10,
                   json={"username": username, "password": PASSWORD, "token": True})
    r.raise_for_status()
    return str(r.json()["token"])


def _count(outcome: str, vendor: str = "hikvision") -> float:
    return REGISTRY.get_sample_value("hub_camera_pushes_total",
                                     {"vendor": vendor, "outcome": outcome}) or 0.0


def test_hikvision_multipart_push_becomes_an_incident_with_the_snapshot(hub: Hub) -> None:
    jpeg = _jpeg()
    ctype, body = _multipart("form-data", "application/xml", _hik_xml(), jpeg)
    r = hub.push(HIK, body, ctype)
    assert r.status_code == 200, r.text
    assert r.json()["alarms"] == 1 and len(r.json()["incidents"]) == 1
    (inc,) = hub.incidents(HIK)
    assert (inc["category"], inc["firing"], inc["state"]) == ("fire_lane", True, "reported")
    assert inc["dedup_key"] == "hikvision:cam-b3-lane:1:parking:20260302T090005Z"
    assert inc["grid_code"] == "1101050010020103"
    assert inc["evidence"]["event_type"] == "parking"
    assert inc["evidence"]["camera_detectionTarget"] == "vehicle"
    assert (hub.data_dir / inc["evidence_image"]).read_bytes() == jpeg
    # The grid worker of the camera's grid sees it, picture included, through the API.
    token = _token(hub, "wang-wei")
    seen = httpx.get(f"{hub.url}/api/incidents/{inc['id']}/evidence", timeout=10,
                     headers={"Authorization": f"Bearer {token}"})
    assert seen.status_code == 200 and seen.content == jpeg

    # The same push again (a camera that did not see the 200): nothing new.
    again = hub.push(HIK, body, ctype)
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    # The camera repeats the event while it lasts: the same incident, counted.
    ctype2, body2 = _multipart("form-data", "application/xml",
                               _hik_xml(post=2, at="17:00:35"), _jpeg())
    assert hub.push(HIK, body2, ctype2).json()["incidents"] == [inc["id"]]
    (inc,) = hub.incidents(HIK)
    assert inc["alarm_count"] == 2
    # It ends: the incident stays open, no longer firing.
    end = hub.push(HIK, _hik_xml(post=3, state="inactive", at="17:00:40"), "application/xml")
    assert end.status_code == 200 and end.json()["incidents"] == [inc["id"]]
    (inc,) = hub.incidents(HIK)
    assert not inc["firing"] and inc["state"] == "reported"
    # A new episode of the same event type is a new incident.
    ctype3, body3 = _multipart("mixed", "application/xml", _hik_xml(at="17:03:00"), _jpeg())
    r3 = hub.push(HIK, body3, ctype3)
    assert r3.status_code == 200
    assert [i["dedup_key"] for i in hub.incidents(HIK)] == [
        "hikvision:cam-b3-lane:1:parking:20260302T090005Z",
        "hikvision:cam-b3-lane:1:parking:20260302T090300Z"]


def test_hikvision_json_push_without_picture(hub: Hub) -> None:
    data = (DATA / "hikvision_fielddetection.json").read_bytes()
    r = hub.push(HIK, data, "application/json")
    assert r.status_code == 200, r.text
    (inc,) = hub.incidents(HIK)
    assert inc["category"] == "fire_lane" and inc["evidence_image"] is None
    with hub.pool.connection() as c:
        sev = c.execute("SELECT severity FROM incidents WHERE id = %s", (inc["id"],)).fetchone()
    assert sev == (2,)  # the site file maps fielddetection to minor


def test_dahua_multipart_push_with_basic_auth(hub: Hub) -> None:
    jpeg = _jpeg(640, 480)
    ctype, body = _multipart("form-data", "application/json",
                             (DATA / "dahua_parking.json").read_bytes(), jpeg)
    r = hub.push(DAHUA, body, ctype)
    assert r.status_code == 200, r.text
    (inc,) = hub.incidents(DAHUA)
    assert inc["dedup_key"] == "dahua:cam-b3-stair2:0:parkingdetection:20260302T090005Z"
    assert (hub.data_dir / inc["evidence_image"]).read_bytes() == jpeg
    text = (DATA / "dahua_leftdetection.txt").read_bytes()
    assert hub.push(DAHUA, text, "text/plain").status_code == 200
    assert len(hub.incidents(DAHUA)) == 2


def test_bad_credentials_are_401_with_a_challenge(hub: Hub) -> None:
    body = _hik_xml()
    r = hub.push(HIK, body, "application/xml", auth=httpx.DigestAuth("hub", "wrong"))
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Digest ")
    before = _count("auth_wrong_scheme")
    basic = hub.push(HIK, body, "application/xml", auth=httpx.BasicAuth("hub", HIK_PW))
    assert basic.status_code == 401  # this camera authenticates with digest only
    assert _count("auth_wrong_scheme") == before + 1
    other = hub.push(DAHUA, body, "application/xml", auth=httpx.BasicAuth("dahua", HIK_PW))
    assert other.status_code == 401  # one camera's password is not another's
    unknown = _count("unknown_camera", "unknown")
    r = hub.push("sos-3-2-501", body, "application/xml")
    assert r.status_code == 401 and r.json()["code"] == "unknown_camera"
    assert _count("unknown_camera", "unknown") == unknown + 1
    assert hub.incidents(HIK) == []


def test_oversized_push_is_413_before_it_is_read(hub: Hub) -> None:
    ctype, body = _multipart("form-data", "application/xml", _hik_xml(),
                             b"\xff\xd8\xff" + bytes(PUSH_CAP))
    r = hub.push(HIK, body, ctype)
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"
    assert hub.incidents(HIK) == []


def test_malformed_push_is_400_saying_why(hub: Hub) -> None:
    before = _count("malformed")
    r = hub.push(HIK, b"<EventNotificationAlert><eventType>VMD", "application/xml")
    assert r.status_code == 400
    assert r.json()["code"] == "push_malformed"
    assert "the XML cannot be read" in r.json()["detail"]
    assert _count("malformed") == before + 1
    r = hub.push(HIK, b"--x\r\n", "multipart/form-data")
    assert r.status_code == 400 and "names no boundary" in r.json()["detail"]
    assert hub.incidents(HIK) == []


def test_unknown_event_types_are_counted_and_heartbeats_ignored(hub: Hub) -> None:
    before = _count("unknown_event_type")
    r = hub.push(HIK, _hik_xml(event="linedetection"), "application/xml")
    assert r.status_code == 200
    assert r.json()["ignored"] == [{"event_type": "linedetection",
                                    "reason": "event type not mapped in the site file"}]
    assert _count("unknown_event_type") == before + 1
    beat = hub.push(HIK, (DATA / "hikvision_videoloss_heartbeat.xml").read_bytes(),
                    "application/xml")
    assert beat.status_code == 200 and beat.json()["alarms"] == 0
    assert hub.incidents(HIK) == []


def test_an_oversized_or_broken_snapshot_costs_the_picture_not_the_alarm(hub: Hub) -> None:
    # A JPEG whose header claims 30000 x 30000: refused from its header, never decoded.
    bomb = bytearray(_jpeg())
    i = bomb.index(b"\xff\xc0")
    bomb[i + 5:i + 9] = (30000).to_bytes(2, "big") * 2
    ctype, body = _multipart("form-data", "application/xml", _hik_xml(), bytes(bomb))
    r = hub.push(HIK, body, ctype)
    assert r.status_code == 200
    (inc,) = hub.incidents(HIK)
    assert inc["evidence_image"] is None
    assert REGISTRY.get_sample_value("hub_image_rejected_total",
                                     {"source": "camera_push", "reason": "too_large"})


def test_a_camera_clock_far_ahead_gives_way_to_the_hubs(hub: Hub) -> None:
    hub.clock.set(T0 - timedelta(hours=1))
    r = hub.push(HIK, _hik_xml(), "application/xml")
    assert r.status_code == 200
    (inc,) = hub.incidents(HIK)
    assert "ts_future" in inc["evidence"]["camera_time_refused"]
    assert inc["dedup_key"].endswith(":20260302T080000Z")


def test_a_raw_basic_header_as_the_firmware_sends_it(hub: Hub) -> None:
    # A raw Basic header of the Dahua camera, as its firmware sends it.
    token = base64.b64encode(f"dahua:{DAHUA_PW}".encode()).decode()
    r = httpx.post(f"{hub.url}/api/cameras/{DAHUA}/events",
                   content=(DATA / "dahua_parking.json").read_bytes(),
                   headers={"content-type": "application/json",
                            "authorization": f"Basic {token}"}, timeout=10)
    assert r.status_code == 200, r.text


def test_a_database_away_is_503_and_nothing_is_kept(hub: Hub, db_url: str) -> None:
    import psycopg

    hub.pool.close()  # the process's pool is gone: every database call now fails
    r = hub.push(HIK, _hik_xml(), "application/xml")
    assert r.status_code == 503 and r.json()["code"] == "unavailable"
    with psycopg.connect(db_url) as c:
        row = c.execute("SELECT count(*) FROM incidents WHERE device_id = %s", (HIK,)).fetchone()
    assert row == (0,)
    assert hub.alerts.applier.queued == 0  # not queued in memory either
