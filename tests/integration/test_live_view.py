"""Live view and the empty-lane renewal over a running hub (real HTTP, PostgreSQL and
broker): MJPEG from frames published on the broker, the camera's retained config
boosted while watched and back to its base when nobody watches, the viewer limits,
and an operator renewing a fire lane's reference through the vision worker that
owns the camera, recorded in the device audit trail."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import REGISTRY

from hub import protocol
from hub.api.liveview import LiveLimits
from hub.protocol import FrameMeta, Kind
from hub.services import Broker
from hub.vision.worker import VisionWorker
from tests.e2e.live import LiveHub, running_hub
from tests.integration.alerting import wait_for

CAM = "cam-b3-lane"  # the demo's fire-lane camera, in grid 11010500100201


@pytest.fixture
def hub(db_url: str, broker: Broker, site_id: str, tmp_path: Path) -> Iterator[LiveHub]:
    with running_hub(db_url, broker, site_id, tmp_path) as h:
        yield h


class Camera:
    """Publishes real JPEG frames of a textured lane, each different, like an agent,
    and watches the camera's retained config."""

    def __init__(self, broker: Broker, site: str, device: str) -> None:
        self.site, self.device = site, device
        self.configs: list[dict[str, Any]] = []
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = self._on
        self.c.connect(broker.host, broker.port)
        self.c.subscribe(protocol.topic(site, device, Kind.CONFIG), qos=1)
        self.c.loop_start()
        self.seq = 0
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        rng = np.random.default_rng(3)
        self.base = rng.integers(90, 160, (240, 320, 3), dtype=np.uint8)

    def _on(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.payload:
            self.configs.append(json.loads(msg.payload))

    def frame(self) -> bytes:
        self.seq += 1
        img = self.base.copy()
        cv2.putText(img, str(self.seq), (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        jpeg = cv2.imencode(".jpg", img)[1].tobytes()
        meta = FrameMeta(device=self.device, seq=self.seq, ts=datetime.now(UTC), width=320,
                         height=240)
        return protocol.encode_frame(meta, jpeg)

    def send(self) -> None:
        self.c.publish(protocol.topic(self.site, self.device, Kind.FRAME), self.frame(), qos=0)

    def run(self, fps: float) -> Camera:
        def loop() -> None:
            while not self.stop.wait(1 / fps):
                self.send()
        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        if self.thread:
            self.thread.join(2)
        self.c.disconnect()
        self.c.loop_stop()


@dataclass
class Reader:
    """An MJPEG reader in a thread: the parts it got, with their headers."""

    client: httpx.Client
    url: str
    status: int | None = None
    parts: list[tuple[dict[str, str], bytes, float]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Reader:
        threading.Thread(target=self._run, daemon=True).start()
        assert self.ready.wait(10)
        return self

    def _run(self) -> None:
        with self.client.stream("GET", self.url, timeout=None) as r:
            self.status = r.status_code
            self.content_type = r.headers.get("content-type", "")
            self.ready.set()
            if r.status_code != 200:
                r.read()
                return
            buf = b""
            for chunk in r.iter_raw():
                buf += chunk
                while True:
                    head_end = buf.find(b"\r\n\r\n")
                    if head_end < 0:
                        break
                    lines = buf[:head_end].decode().split("\r\n")
                    headers = dict(x.split(": ", 1) for x in lines[1:])
                    n = int(headers["Content-Length"])
                    if len(buf) < head_end + 4 + n + 2:
                        break
                    body = buf[head_end + 4:head_end + 4 + n]
                    buf = buf[head_end + 4 + n + 2:]
                    self.parts.append((headers, body, time.monotonic()))
                if self.stop.is_set():
                    return


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_live_view_streams_the_brokers_frames_capped_and_boosts_the_camera_while_watched(
        hub: LiveHub, broker: Broker) -> None:
    site = hub.site.site.id
    cam = Camera(broker, site, CAM)
    try:
        # At start the hub pushes every camera's base config (the site file's rate).
        assert wait_for(lambda: cam.configs and "live" not in cam.configs[-1], 10)
        assert cam.configs[-1]["fps"] == 2.0 and cam.configs[-1]["gate"] is True
        cam.run(fps=12)
        op = hub.session("operator")
        reader = Reader(op, f"/api/live/{CAM}/mjpeg").start()
        assert reader.status == 200
        assert reader.content_type.startswith("multipart/x-mixed-replace")
        assert wait_for(lambda: len(reader.parts) >= 2, 5)
        t0, n0 = time.monotonic(), len(reader.parts)
        time.sleep(3)
        rate = (len(reader.parts) - n0) / (time.monotonic() - t0)
        assert 3.0 <= rate <= 5.5, rate  # 12 published, at most 5 a second shown
        seqs = [int(h["X-Frame-Seq"]) for h, _, _ in reader.parts]
        assert len(set(seqs)) == len(seqs) and seqs == sorted(seqs)
        bodies = {b for _, b, _ in reader.parts}
        assert len(bodies) == len(reader.parts)
        assert all(b.startswith(b"\xff\xd8") for b in bodies)
        # Watched: the retained config carries a boost (rate up, gate off) for a lease.
        boost = cam.configs[-1]["live"]
        assert boost["fps"] == 5.0 and boost["gate"] is False
        until = datetime.fromisoformat(boost["until"])
        assert 20 <= (until - datetime.now(UTC)).total_seconds() <= 31
        consumers = hub.node.mqtt.stats()["consumers"]
        assert f"live-{CAM}" in consumers
        # A frame that breaks the contract is counted and the stream goes on.
        bad0 = sample("hub_live_frames_rejected_total", reason="bad_frame")
        n1 = len(reader.parts)
        cam.c.publish(protocol.topic(site, CAM, Kind.FRAME), b"SCF1garbage", qos=0)
        assert wait_for(lambda: sample("hub_live_frames_rejected_total",
                                       reason="bad_frame") == bad0 + 1, 5)
        assert wait_for(lambda: len(reader.parts) > n1 + 2, 5)
        reader.stop.set()
        op.close()
        # Nobody watches: the subscription goes and the base config comes back.
        assert wait_for(lambda: "live" not in cam.configs[-1], 10), cam.configs[-1]
        assert wait_for(lambda: f"live-{CAM}" not in hub.node.mqtt.stats()["consumers"], 5)
        # ... and the broker sends the process no more of the camera's frames.
        time.sleep(0.5)
        before = (sample("hub_live_frames_in_total", camera=CAM),
                  sample("hub_mqtt_messages_unrouted_total"))
        time.sleep(1.5)
        assert (sample("hub_live_frames_in_total", camera=CAM),
                sample("hub_mqtt_messages_unrouted_total")) == before
    finally:
        cam.close()


def test_viewers_are_bounded_per_user_and_per_camera(hub: LiveHub) -> None:
    live = hub.node.api_server.config.app.state.ctx.extra["live"]
    live.limits = LiveLimits(per_user=1, per_camera=2)
    a, b, c = hub.session("operator"), hub.session("operator"), hub.session("admin")
    first = Reader(a, f"/api/live/{CAM}/mjpeg").start()
    assert first.status == 200
    second = Reader(b, f"/api/live/{CAM}/mjpeg").start()
    assert second.status == 429
    third = Reader(c, f"/api/live/{CAM}/mjpeg").start()
    assert third.status == 200
    v = hub.session("viewer")
    assert Reader(v, f"/api/live/{CAM}/mjpeg").start().status == 429  # camera_full
    r = v.get(f"/api/live/{CAM}/mjpeg")
    assert r.status_code == 429 and r.json()["code"] == "camera_full"
    assert v.get("/api/live/nope/mjpeg").json()["code"] == "unknown_camera"


class _NoPose:
    def detect(self, frame: np.ndarray, lying_pass: bool = False) -> list[Any]:
        return []


def test_an_operator_renews_the_empty_lane_through_the_vision_worker_and_it_is_audited(
        hub: LiveHub, broker: Broker) -> None:
    site = hub.site.site.id
    worker = VisionWorker(hub.site, broker, hub.data_dir, lambda a: None,
                          pose_factory=_NoPose, analysis_threads=1)
    worker.start()
    cam = Camera(broker, site, CAM)
    try:
        op = hub.session("operator")
        assert op.get(f"/api/live/{CAM}/references/lane.png").json()["code"] == "no_reference"
        cam.run(fps=4)
        # The worker takes the first reference from the camera's first frame.
        assert wait_for(lambda: op.get(f"/api/live/{CAM}/references").json()[0]["captured_at"],
                        15)
        before = op.get(f"/api/live/{CAM}/references").json()
        png = op.get(before[0]["url"])
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert cv2.imdecode(np.frombuffer(png.content, np.uint8), cv2.IMREAD_UNCHANGED) is not None
        time.sleep(0.6)  # later frames: the renewed reference gets a later time
        # Only operators and admins renew.
        for who in ("viewer", "wang-wei"):
            s = hub.session(who)
            assert s.post(f"/api/live/{CAM}/rebaseline").status_code == 403
        r = op.post(f"/api/live/{CAM}/rebaseline")
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["confirmed"] is True
        after = out["references"][0]
        assert after["zone"] == "lane" and after["captured_at"] > before[0]["captured_at"]
        audit = op.get(f"/api/live/{CAM}/audit").json()
        assert [(a["actor"], a["action"], a["data"]["confirmed"]) for a in audit] == [
            ("operator", "rebaseline", True)]
        assert audit[0]["data"]["request_id"] == out["request_id"]
        with hub.pool.connection() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM device_audit")
        # A request that breaks the contract reaches the worker: counted, nothing renewed.
        bad0 = sample("hub_vision_commands_total", command="rebaseline", outcome="invalid")
        cam.c.publish(protocol.control_topic(site, CAM, "rebaseline"), b'{"device": 1}', qos=1)
        assert wait_for(lambda: sample("hub_vision_commands_total", command="rebaseline",
                                       outcome="invalid") == bad0 + 1, 5)
        # A camera without a fire lane has nothing to renew.
        assert op.post("/api/live/cam-b3-stair2/rebaseline").json()["code"] == "no_fire_lane"
    finally:
        cam.close()
        worker.stop()
