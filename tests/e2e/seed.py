"""Demo-like content for the browser tests and their screenshots: devices reporting
over the real broker, a day of incidents in various states, an evidence snapshot."""

from __future__ import annotations

import itertools
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hub import protocol
from hub.domain import Alarm, AlarmState, Category, Severity
from tests.e2e.live import LiveHub

_seq = itertools.count(int(time.time() * 1000))


def publisher(hub: LiveHub) -> mqtt.Client:
    b = hub.node.broker
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"seed-{next(_seq)}",
                    protocol=MQTTProtocolVersion.MQTTv5)
    if b.username:
        c.username_pw_set(b.username, b.password)
    c.connect(b.host, b.port)
    c.loop_start()
    return c


def publish(c: mqtt.Client, site: str, msg: protocol.Telemetry | protocol.Event
            | protocol.Status, kind: str) -> None:
    info = c.publish(protocol.topic(site, msg.device, kind), protocol.encode(msg), qos=1)
    info.wait_for_publish(5)


def sos(c: mqtt.Client, site: str, device: str = "sos-3-2-501") -> None:
    publish(c, site, protocol.Event(device=device, seq=next(_seq), ts=datetime.now(UTC),
                                    type=protocol.EventType.SOS, data={"button": 1}), "event")


def devices_online(c: mqtt.Client, hub: LiveHub, except_: set[str] = frozenset()) -> None:
    now = datetime.now(UTC)
    for d in hub.site.devices:
        state = protocol.DeviceState.OFFLINE if d.id in except_ else protocol.DeviceState.ONLINE
        publish(c, hub.site.site.id, protocol.Status(device=d.id, seq=next(_seq), ts=now,
                                                     state=state), "status")


def wearable_history(c: mqtt.Client, hub: LiveHub, device: str = "wearable-3-2-501",
                     hours: int = 6) -> None:
    now = datetime.now(UTC)
    for i in range(hours * 12):
        ts = now - timedelta(minutes=5 * (hours * 12 - i))
        hr = 72 + 8 * math.sin(i / 9) + (i % 5)
        publish(c, hub.site.site.id, protocol.Telemetry(
            device=device, seq=next(_seq), ts=ts, readings=[
                protocol.Reading(metric="heart_rate", value=round(hr, 1), unit="bpm"),
                protocol.Reading(metric="spo2", value=97 + (i % 3) * 0.5, unit="%")]),
            "telemetry")


def evidence_image(data_dir: Path, name: str) -> str:
    """A fire-lane style snapshot with the zone drawn in, like the vision part makes."""
    import ultralytics

    src = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    img = cv2.imread(str(src))
    if img is None:
        img = np.full((540, 810, 3), 90, np.uint8)
    img = cv2.resize(img, (640, int(640 * img.shape[0] / img.shape[1])))
    h, w = img.shape[:2]
    zone = np.array([[0.05 * w, 0.95 * h], [0.95 * w, 0.95 * h], [0.8 * w, 0.6 * h],
                     [0.2 * w, 0.6 * h]], np.int32)
    overlay = img.copy()
    cv2.fillPoly(overlay, [zone], (0, 0, 255))
    img = cv2.addWeighted(overlay, 0.25, img, 0.75, 0)
    cv2.polylines(img, [zone], True, (0, 0, 255), 2)
    cv2.rectangle(img, (int(0.3 * w), int(0.55 * h)), (int(0.7 * w), int(0.9 * h)),
                  (0, 255, 255), 2)
    cv2.putText(img, "dwell 74s  share 0.31", (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                (255, 255, 255), 2)
    rel = Path("evidence") / f"{name}.jpg"
    (data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(data_dir / rel), img)
    return rel.as_posix()


def incidents(hub: LiveHub) -> None:
    """Open incidents on the wall and a day of finished ones for the statistics."""
    now = datetime.now(UTC)
    img = evidence_image(hub.data_dir, "firelane-b3")
    a = hub.alerts
    a.apply_now([
        Alarm(rule="firelane", category=Category.FIRE_LANE, severity=Severity.MAJOR,
              state=AlarmState.FIRING, dedup_key="firelane:cam-lane-b3:lane",
              ts=now - timedelta(minutes=7), title="3号楼东侧消防通道 占用",
              grid_code="1101050010020103", zone="lane",
              evidence={"dwell_s": 74.0, "obstructed_share": 0.31, "threshold": 0.15},
              evidence_image=img),
        Alarm(rule="fall", category=Category.FALL, severity=Severity.CRITICAL,
              state=AlarmState.FIRING, dedup_key="fall:s03", ts=now - timedelta(minutes=3),
              title="6-3-601 老人跌倒", grid_code="1101050010020202", subject_id="s03",
              evidence={"posture": "lying", "time_down_s": 42.0, "torso_angle_deg": 81.0}),
        Alarm(rule="inactivity", category=Category.INACTIVITY, severity=Severity.MAJOR,
              state=AlarmState.FIRING, dedup_key="inactivity:s02",
              ts=now - timedelta(minutes=40), title="2-1-302 长时间无活动",
              grid_code="1101050010020102", subject_id="s02",
              evidence={"hours_without_activity": 12.4, "window_h": 12.0}),
        Alarm(rule="offline", category=Category.DEVICE_OFFLINE, severity=Severity.MINOR,
              state=AlarmState.FIRING, dedup_key="offline:water-6-3-601",
              ts=now - timedelta(minutes=25), title="6-3-601 水表 离线",
              grid_code="1101050010020202", device_id="water-6-3-601",
              evidence={"missed_heartbeats": 3}),
    ])
    # Finished ones: handled in the grid, and a false alarm cancelled.
    for i, (grid, who) in enumerate([("1101050010020101", "wang-wei"),
                                     ("1101050010020203", "liu-yang"),
                                     ("1101050010020301", "yang-fan"),
                                     ("1101050010020302", "yang-fan")]):
        (res,) = a.apply_now([Alarm(
            rule="water", category=Category.WATER, severity=Severity.MINOR,
            state=AlarmState.FIRING, dedup_key=f"water:hist{i}",
            ts=now - timedelta(hours=5 - i), title=f"用水异常 #{i}", grid_code=grid)])
        iid = res.incident.id
        for act in ("register", "dispatch", "accept", "handle", "close"):
            a.transition(iid, act, "seed", reason="已上门查看" if act == "handle" else None,
                         assignee=who)
    (res,) = a.apply_now([Alarm(
        rule="smoke", category=Category.SMOKE, severity=Severity.CRITICAL,
        state=AlarmState.FIRING, dedup_key="smoke:hist", ts=now - timedelta(hours=2),
        title="9号楼 烟感 (做饭油烟)", grid_code="1101050010020301")])
    a.transition(res.incident.id, "cancel", "seed", reason="做饭油烟，误报")
