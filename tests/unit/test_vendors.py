"""The pure parts of camera AI pushes (hub/vendors/): the vendors' documented formats,
multipart framing, episodes to the second, the alarm an event becomes, and the
per-camera credentials."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest

from hub.config import CameraEvents, load_site
from hub.domain import AlarmState, Severity
from hub.vendors import auth, dahua, episodes, hikvision
from hub.vendors.alarms import alarm, event_time, mapping_for
from hub.vendors.event import CameraEvent, PushError
from hub.vendors.push import split

DATA = Path(__file__).resolve().parents[1] / "data" / "camera_events"
REPO = Path(__file__).resolve().parents[2]
LOCAL = ZoneInfo("Asia/Shanghai")
T = datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC)  # the sample pushes' time


def _jpeg() -> bytes:
    img = (np.random.default_rng(1).random((120, 160, 3)) * 255).astype(np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _multipart(kind: str, meta_type: str, meta: bytes, jpeg: bytes) -> tuple[str, bytes]:
    b = "hikboundary"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"event\"\r\n"
            f"Content-Type: {meta_type}\r\nContent-Length: {len(meta)}\r\n\r\n").encode()
    body += meta + (f"\r\n--{b}\r\nContent-Disposition: form-data; name=\"picture\";"
                    f" filename=\"parkingPicture.jpg\"\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(jpeg)}\r\n\r\n").encode()
    body += jpeg + f"\r\n--{b}--\r\n".encode()
    return f"multipart/{kind}; boundary={b}", body


# ------------------------------------------------------------------ Hikvision


def test_hikvision_xml_as_documented() -> None:
    ev = hikvision.parse([("application/xml", (DATA / "hikvision_parking.xml").read_bytes())],
                         LOCAL)
    assert (ev.vendor, ev.event_type, ev.active, ev.channel, ev.post_count) == (
        "hikvision", "parking", True, 1, 1)
    assert ev.ts == T
    assert (ev.ip, ev.mac, ev.description) == ("192.168.1.64", "44:19:b6:6e:02:31",
                                               "parking alarm")
    assert ev.details == {"channelName": "Camera 01", "regionID": "1",
                          "detectionTarget": "vehicle"}


def test_hikvision_json_of_newer_firmware() -> None:
    data = (DATA / "hikvision_fielddetection.json").read_bytes()
    ev = hikvision.parse([("application/json", data)], LOCAL)
    assert (ev.event_type, ev.active, ev.channel, ev.ts) == ("fielddetection", True, 1, T)


@pytest.mark.parametrize("kind", ["form-data", "mixed"])
def test_multipart_push_gives_the_alert_and_the_jpeg(kind: str) -> None:
    jpeg = _jpeg()
    ctype, body = _multipart(kind, "application/xml",
                             (DATA / "hikvision_parking.xml").read_bytes(), jpeg)
    push = split(ctype, body)
    assert push.images == [jpeg]
    assert hikvision.parse(push.metadata, LOCAL).event_type == "parking"


def test_a_time_without_offset_is_the_cameras_local_time() -> None:
    xml = (DATA / "hikvision_parking.xml").read_bytes().replace(b"+08:00", b"")
    assert hikvision.parse([("application/xml", xml)], LOCAL).ts == T


@pytest.mark.parametrize(("body", "says"), [
    (b"<EventNotificationAlert><eventType>VMD", "cannot be read"),
    (b"<Foo/>", "root is <Foo>"),
    (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><EventNotificationAlert/>',
     "document type declaration"),
    (b"<EventNotificationAlert><eventState>active</eventState></EventNotificationAlert>",
     "no eventType"),
    (b"<EventNotificationAlert><eventType>VMD</eventType><eventState>on</eventState>"
     b"</EventNotificationAlert>", "neither active nor inactive"),
    (b"<EventNotificationAlert><eventType>VMD</eventType><eventState>active</eventState>"
     b"<channelID>x</channelID></EventNotificationAlert>", "channelID 'x'"),
    (b"<EventNotificationAlert><eventType>VMD</eventType><eventState>active</eventState>"
     b"<dateTime>yesterday</dateTime></EventNotificationAlert>", "not an ISO 8601"),
    (b'{"eventType": "VMD"', "JSON cannot be read"),
])
def test_hikvision_malformed_says_why(body: bytes, says: str) -> None:
    with pytest.raises(PushError) as e:
        hikvision.parse([("application/xml" if body[:1] == b"<" else "application/json",
                          body)], LOCAL)
    assert e.value.reason == "malformed"
    assert says in e.value.detail


def test_multipart_with_a_preamble_and_one_cut_short() -> None:
    jpeg = _jpeg()
    ctype, body = _multipart("mixed", "application/xml",
                             (DATA / "hikvision_parking.xml").read_bytes(), jpeg)
    assert split(ctype, b"This is a multi-part message in MIME format.\r\n" + body).images \
        == [jpeg]
    # Cut in the picture: the event stands, the picture is not taken half.
    cut = split(ctype, body[: len(body) - len(jpeg) // 2])
    assert (len(cut.metadata), cut.images) == (1, [])
    with pytest.raises(PushError, match="no complete part"):
        split(ctype, body[:200])
    with pytest.raises(PushError, match="no part with its boundary"):
        split("multipart/mixed; boundary=other", body)


def test_multipart_without_its_boundary_or_with_too_many_parts() -> None:
    with pytest.raises(PushError, match="no boundary"):
        split("multipart/form-data", b"--x\r\n\r\n")
    part = b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    with pytest.raises(PushError) as e:
        split("multipart/mixed; boundary=b", part * 17 + b"--b--\r\n")
    assert e.value.reason == "too_many_parts"


# ------------------------------------------------------------------ Dahua


def test_dahua_text_as_its_event_manager_writes_it() -> None:
    (ev,) = dahua.parse([("text/plain", (DATA / "dahua_leftdetection.txt").read_bytes())],
                        LOCAL)
    assert (ev.vendor, ev.event_type, ev.active, ev.channel, ev.ts) == (
        "dahua", "LeftDetection", True, 0, T)
    assert ev.details == {"Name": "Rule1", "Class": "Normal", "EventID": "10254"}


def test_dahua_json_and_its_stop() -> None:
    data = (DATA / "dahua_parking.json").read_bytes()
    (ev,) = dahua.parse([("application/json", data)], LOCAL)
    assert (ev.event_type, ev.active, ev.ts) == ("ParkingDetection", True, T)
    stop = data.replace(b'"Start"', b'"Stop"').replace(b'"UTC": 1772442005,', b"")
    (ev,) = dahua.parse([("application/json", stop)], LOCAL)
    assert not ev.active
    assert ev.ts == T  # from LocaleTime, the camera's local time


def test_dahua_malformed_says_why() -> None:
    with pytest.raises(PushError, match="not Start, Stop or Pulse"):
        dahua.parse([("text/plain", b"Code=VideoMotion;action=Go;index=0")], LOCAL)
    with pytest.raises(PushError, match="no Code"):
        dahua.parse([("application/json", b'{"Action": "Start"}')], LOCAL)
    with pytest.raises(PushError, match="is not key=value"):
        dahua.parse([("text/plain", b"Code=VideoMotion;Start")], LOCAL)


# ------------------------------------------------------------------ episodes

P = "hikvision:cam:1:parking"


def _ep(key: str, firing: bool, last: datetime) -> episodes.OpenEpisode:
    return episodes.OpenEpisode(key, firing, last)


def test_first_push_opens_an_episode_named_by_its_time() -> None:
    (s,) = episodes.decide(P, True, T, [], quiet_s=60)
    assert s == episodes.Step(f"{P}:20260302T090005Z", AlarmState.FIRING, T)


def test_pushes_within_the_quiet_period_stay_in_the_episode_to_the_second() -> None:
    key = f"{P}:20260302T090005Z"
    open_ = [_ep(key, True, T)]
    (s,) = episodes.decide(P, True, T + timedelta(seconds=60), open_, quiet_s=60)
    assert s.dedup_key == key
    # One second more and the episode ended 60 s after its last push; a new one opens.
    late = T + timedelta(seconds=61)
    end, new = episodes.decide(P, True, late, open_, quiet_s=60)
    assert end == episodes.Step(key, AlarmState.CLEARED, T + timedelta(seconds=60))
    assert new == episodes.Step(f"{P}:20260302T090106Z", AlarmState.FIRING, late)


def test_inactive_clears_and_the_next_active_opens_a_new_episode() -> None:
    key = f"{P}:20260302T090005Z"
    (s,) = episodes.decide(P, False, T + timedelta(seconds=3), [_ep(key, True, T)], 60)
    assert s == episodes.Step(key, AlarmState.CLEARED, T + timedelta(seconds=3))
    cleared = [_ep(key, False, T + timedelta(seconds=3))]
    assert episodes.decide(P, False, T + timedelta(seconds=4), cleared, 60) == []
    (s,) = episodes.decide(P, True, T + timedelta(seconds=10), cleared, 60)
    assert s.dedup_key == f"{P}:20260302T090015Z"


def test_a_redelivered_push_gets_its_first_key_and_time_again() -> None:
    key = f"{P}:20260302T090005Z"
    (s,) = episodes.decide(P, True, T, [_ep(key, True, T + timedelta(seconds=20))], 60)
    assert s == episodes.Step(key, AlarmState.FIRING, T)


def test_other_event_types_and_channels_are_other_episodes() -> None:
    other = [_ep("hikvision:cam:1:parkingx:20260302T090000Z", True, T),
             _ep("hikvision:cam:2:parking:20260302T090000Z", True, T)]
    (s,) = episodes.decide(P, True, T, other, 60)
    assert s.dedup_key == f"{P}:20260302T090005Z"
    assert episodes.prefix("dahua", "cam", None, "LeftDetection") == "dahua:cam:0:leftdetection"


# ------------------------------------------------------------------ the alarm


def test_the_demo_camera_event_becomes_a_fire_lane_alarm() -> None:
    site = load_site(REPO / "deploy" / "sites" / "demo.yaml")
    dev = site.device("cam-b3-lane")
    assert dev is not None and dev.camera is not None and dev.camera.events is not None
    cfg = dev.camera.events
    ev = hikvision.parse([("application/xml", (DATA / "hikvision_parking.xml").read_bytes())],
                         LOCAL)
    m = mapping_for(cfg, "PARKING")  # case is ignored
    assert m is not None and m.category == "fire_lane"
    when = event_time(ev, T + timedelta(seconds=1), 300)
    (s,) = episodes.decide(episodes.prefix("hikvision", dev.id, 1, "parking"), True,
                           when.ts, [], cfg.quiet_s)
    a = alarm(s, ev, m, dev, site.registry, when, "evidence/cam-b3-lane/x.jpg")
    assert (a.category, a.severity, a.state, a.ts) == ("fire_lane", Severity.MAJOR,
                                                       AlarmState.FIRING, T)
    assert (a.grid_code, a.device_id, a.rule) == (dev.grid, "cam-b3-lane", "camera_ai:hikvision")
    assert a.evidence_image == "evidence/cam-b3-lane/x.jpg"
    assert a.evidence["event_type"] == "parking" and a.evidence["active_post_count"] == 1
    minor = mapping_for(cfg, "fielddetection")
    assert minor is not None
    b = alarm(s, ev, minor, dev, site.registry, when, None)
    assert (b.severity, b.title) == (Severity.MINOR, "消防通道区域入侵")


def test_a_camera_time_out_of_bounds_gives_way_to_the_receive_time() -> None:
    ev = CameraEvent("hikvision", "parking", True, T + timedelta(seconds=301))
    when = event_time(ev, T, 300)
    assert when.ts == T and when.camera_time_refused and "ts_future" in when.camera_time_refused
    assert event_time(ev, T + timedelta(seconds=1), 300).ts == ev.ts
    none = event_time(CameraEvent("dahua", "X", True, None), T, 300)
    assert none.ts == T and none.camera_time_refused == "the push carries no time"


def test_event_types_are_unique_without_regard_to_case() -> None:
    with pytest.raises(ValueError, match="more than once"):
        CameraEvents(vendor="hikvision", events={"VMD": "fall", "vmd": "fall"})


# ------------------------------------------------------------------ credentials

NOW = 1_772_442_005.0


def _verify(header: str | None, scheme: str = "basic", **kw: object) -> auth.Verdict:
    args: dict = {"scheme": scheme, "username": "hub", "secret": "s3cret-Pw", "device_id": "cam",
                  "method": "POST", "target": "/api/cameras/cam/events", "now": NOW}
    args.update(kw)
    return auth.verify(header, **args)


def test_basic_credentials() -> None:
    good = "Basic " + base64.b64encode(b"hub:s3cret-Pw").decode()
    assert _verify(good).ok
    bad = _verify("Basic " + base64.b64encode(b"hub:s3cret-Px").decode())
    assert (bad.ok, bad.reason) == (False, "bad_credentials")
    assert bad.challenge == [f'Basic realm="{auth.REALM}", charset="UTF-8"']
    assert _verify("Basic !!!").reason == "malformed"
    assert _verify(None).reason == "no_credentials"
    # A digest camera does not take Basic, nor a basic camera Digest.
    assert _verify(good, scheme="digest").reason == "wrong_scheme"


def _digest(nonce: str, password: str = "s3cret-Pw", uri: str = "/api/cameras/cam/events",
            alg: str = "MD5") -> str:
    import hashlib

    h = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[alg]

    def hx(s: str) -> str:
        return h(s.encode()).hexdigest()

    ha1, ha2 = hx(f"hub:{auth.REALM}:{password}"), hx(f"POST:{uri}")
    resp = hx(f"{ha1}:{nonce}:00000001:abc:auth:{ha2}")
    return (f'Digest username="hub", realm="{auth.REALM}", nonce="{nonce}", uri="{uri}",'
            f' algorithm={alg}, qop=auth, nc=00000001, cnonce="abc", response="{resp}"')


def test_digest_credentials_and_nonce_lifetime() -> None:
    first = _verify(None, scheme="digest")
    assert not first.ok and first.challenge[0].startswith(f'Digest realm="{auth.REALM}"')
    nonce = auth.make_nonce("s3cret-Pw", "cam", NOW)
    assert _verify(_digest(nonce), scheme="digest").ok
    assert _verify(_digest(nonce, alg="SHA-256"), scheme="digest").ok
    assert _verify(_digest(nonce, password="wrong"), scheme="digest").reason == "bad_credentials"
    assert _verify(_digest(nonce, uri="/other"), scheme="digest").reason == "bad_credentials"
    forged = nonce.split(".")[0] + ".0123456789abcdef0123456789abcdef"
    assert _verify(_digest(forged), scheme="digest").reason == "bad_credentials"
    # Good for NONCE_TTL_S to the second, then stale (and a new challenge says so).
    at_end = _verify(_digest(nonce), scheme="digest", now=NOW + auth.NONCE_TTL_S)
    assert at_end.ok
    stale = _verify(_digest(nonce), scheme="digest", now=NOW + auth.NONCE_TTL_S + 1)
    assert stale.reason == "stale_nonce" and "stale=true" in stale.challenge[0]


def test_each_cameras_secret_comes_from_its_own_variable() -> None:
    env = {"HUB_CAMERA_SECRET_CAM_B3_LANE": "pw1", "HUB_CAMERA_SECRET_CAM_B3_STAIR2": ""}
    assert auth.secret_variable("cam-b3-lane") == "HUB_CAMERA_SECRET_CAM_B3_LANE"
    assert auth.camera_secret("cam-b3-lane", env) == "pw1"
    assert auth.camera_secret("cam-b3-stair2", env) is None  # empty is none
    assert auth.camera_secret("cam-b7-stair1", env) is None
