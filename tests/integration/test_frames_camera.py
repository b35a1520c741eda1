"""The camera agent on the real broker: presence, frames, motion gate, and a camera that
is missing, retried with backoff, reported unhealthy, and picked up when it appears."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge import cli as edge_cli
from edge.camera import CameraAgent
from hub import protocol
from hub.config import CameraConfig
from hub.protocol import Kind
from hub.services import Broker
from tests.integration.alerting import wait_for
from tests.unit.test_camera import write_clip


class Listener:
    def __init__(self, broker: Broker, site: str, device: str) -> None:
        self.events: list[dict] = []
        self.frames: list[protocol.FrameMeta] = []
        self.status: list[dict] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = self._on
        self.c.connect(broker.host, broker.port)
        self.c.subscribe(f"{protocol.ROOT}/{site}/{device}/#")
        self.c.loop_start()
        time.sleep(0.2)

    def _on(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        kind = protocol.parse_topic(msg.topic).kind
        with self.lock:
            if kind is Kind.FRAME:
                self.frames.append(protocol.decode_frame(msg.payload)[0])
            elif kind is Kind.EVENT:
                self.events.append(json.loads(msg.payload))
            elif kind is Kind.STATUS:
                self.status.append(json.loads(msg.payload))

    def health(self) -> list[tuple[bool, str]]:
        with self.lock:
            return [(e["data"]["healthy"], e["data"]["reason"]) for e in self.events
                    if e["type"] == "camera_health"]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def listen(broker: Broker, site_id: str) -> Iterator[Listener]:
    lis = Listener(broker, site_id, "cam-1")
    yield lis
    lis.close()


def test_missing_camera_is_retried_with_backoff_reported_unhealthy_then_recovers(
    broker: Broker, site_id: str, tmp_path: Path, listen: Listener
) -> None:
    clip = tmp_path / "late.avi"
    cam = CameraConfig(source=str(clip), loop=True, fps=5)
    agent = CameraAgent("cam-1", site_id, cam, broker, backoff_initial=0.05, backoff_max=0.4,
                        heartbeat_s=None)
    agent.start()
    try:
        missing = (False, f"video file {clip} does not exist")
        assert wait_for(lambda: listen.health() == [missing], 5)
        assert listen.status and listen.status[-1]["state"] == "online"  # the agent is up
        time.sleep(1.5)
        # 0.05, 0.1, 0.2, 0.4, 0.4 ...: several tries in 1.5 s, but not a busy loop.
        assert 4 <= agent.stats.failures <= 12, agent.stats.failures
        assert agent.running
        assert len(listen.health()) == 1  # one event per change, not per retry
        write_clip(clip, 20, fps=10)
        assert wait_for(lambda: (True, "streaming") in listen.health(), 5), listen.health()
        assert wait_for(lambda: len(listen.frames) >= 2, 5)
    finally:
        agent.stop()
    f = listen.frames
    assert all(m.device == "cam-1" and (m.width, m.height) == (320, 240) for m in f)
    assert [m.seq for m in f] == sorted(m.seq for m in f) and len({m.seq for m in f}) == len(f)
    assert wait_for(lambda: listen.status[-1]["state"] == "offline", 3)


def test_motion_gate_sends_changes_and_keyframes_only(
    broker: Broker, site_id: str, tmp_path: Path, listen: Listener
) -> None:
    import cv2
    import numpy as np

    path = tmp_path / "still.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(60):  # 6 s: still scene, a person-sized block moves during 2-3 s
        img = np.full((240, 320, 3), 100, np.uint8)
        if 20 <= i < 30:
            x = 20 + (i - 20) * 25
            img[60:200, x:x + 40] = (20, 20, 60)
        out.write(img)
    out.release()
    cam = CameraConfig(source=str(path), loop=False, fps=10)
    agent = CameraAgent("cam-1", site_id, cam, broker, realtime=True, start_ts=1_000_000.0,
                        keyframe_s=1.0, heartbeat_s=None)
    agent.start()
    try:
        assert agent.finished.wait(15)
        time.sleep(0.3)
    finally:
        agent.stop()
    ts = [m.ts.timestamp() - 1_000_000.0 for m in listen.frames]
    moving = [t for t in ts if 2.0 <= t < 3.1]
    still = [t for t in ts if t < 2.0 or t >= 3.1]
    assert len(moving) >= 9  # every frame of the movement
    assert 4 <= len(still) <= 8, ts  # about one keyframe a second otherwise
    assert agent.stats.gated == 60 - len(ts)
    assert all(m.motion > 0.01 for m in listen.frames if 2.1 <= m.ts.timestamp() - 1e6 < 3.0)


def test_hub_edge_camera_plays_a_file_given_for_a_demo_camera(
    broker: Broker, site_id: str, tmp_path: Path
) -> None:
    """``hub-edge camera --source DEVICE=FILE``: the demo site's camera, whose own source
    is demo footage, plays a file on an edge box with no demo tooling."""
    demo = (Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml").read_text()
    assert demo.count("\n  id: demo\n") == 1
    site = tmp_path / "site.yaml"  # its own site id: a running demo shares the broker
    site.write_text(demo.replace("\n  id: demo\n", f"\n  id: {site_id}\n"), encoding="utf-8")
    clip = write_clip(tmp_path / "lane.avi", 20, fps=10)
    lis = Listener(broker, site_id, "cam-b3-lane")
    try:
        rc = edge_cli.main([
            "camera", "--site", str(site), "--device", "cam-b3-lane",
            "--source", f"cam-b3-lane={clip}",
            "--broker", f"mqtt://{broker.host}:{broker.port}", "--fast", "--duration", "3"])
        assert rc == 0
        assert wait_for(lambda: len(lis.frames) >= 1, 3)
    finally:
        lis.close()
    assert all(m.device == "cam-b3-lane" and (m.width, m.height) == (320, 240)
               for m in lis.frames)
    assert lis.status[-1]["state"] == "offline"  # a clean stop says so itself
