"""The camera agent takes the hub's retained config from the real broker: the frame
rate and motion gate pushed for the site file's camera, a live-view boost that holds
until its ``until`` and then ends by itself, and a config that breaks the contract
counted and ignored."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.camera import CameraAgent
from hub import protocol
from hub.config import CameraConfig
from hub.protocol import Kind
from hub.services import Broker
from hub.stream_settings import base_config, boosted_config
from tests.integration.alerting import wait_for


def still_clip(path: Path, seconds: int = 30, fps: int = 10) -> Path:
    """A still scene: the motion gate lets only its keyframes through."""
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 120))
    img = np.full((120, 160, 3), 90, np.uint8)
    for _ in range(seconds * fps):
        out.write(img)
    out.release()
    return path


class FrameCounter:
    def __init__(self, broker: Broker, site: str, device: str) -> None:
        self.times: list[float] = []
        self.lock = threading.Lock()
        self.topic = protocol.topic(site, device, Kind.FRAME)
        self.config_topic = protocol.topic(site, device, Kind.CONFIG)
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = self._on
        self.c.connect(broker.host, broker.port)
        self.c.subscribe(self.topic)
        self.c.loop_start()
        time.sleep(0.2)

    def _on(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.times.append(time.monotonic())

    def rate(self, seconds: float) -> float:
        """Frames per second received over the next ``seconds``."""
        with self.lock:
            n0 = len(self.times)
        time.sleep(seconds)
        with self.lock:
            return (len(self.times) - n0) / seconds

    def push(self, payload: bytes) -> None:
        self.c.publish(self.config_topic, payload, qos=1, retain=True).wait_for_publish(5)

    def close(self) -> None:
        self.push(b"")  # clear the retained config
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def counter(broker: Broker, site_id: str) -> Iterator[FrameCounter]:
    c = FrameCounter(broker, site_id, "cam-1")
    yield c
    c.close()


def test_agent_applies_the_retained_config_and_a_live_boost_that_ends_by_itself(
        broker: Broker, site_id: str, tmp_path: Path, counter: FrameCounter) -> None:
    cam = CameraConfig(source=str(still_clip(tmp_path / "still.avi")), loop=True, fps=2)
    # Retained before the agent starts: it must be read at connect.
    counter.push(protocol.encode(base_config(cam.model_copy(update={"fps": 4.0}))))
    agent = CameraAgent("cam-1", site_id, cam, broker, keyframe_s=1.0, heartbeat_s=None)
    agent.start()
    try:
        assert wait_for(lambda: agent.stats.config_applied == 1, 5)
        assert agent.settings().fps == 4.0 and agent.settings().gate
        # A still scene behind the gate: one keyframe a second whatever the rate.
        time.sleep(1.5)
        assert counter.rate(3.0) <= 1.7
        until = datetime.now(UTC) + timedelta(seconds=4)
        counter.push(protocol.encode(boosted_config(cam, until, fps=8.0)))
        assert wait_for(lambda: agent.settings().boosted_until is not None, 5)
        s = agent.settings()
        assert (s.fps, s.gate) == (8.0, False)
        time.sleep(0.5)
        boosted = counter.rate(2.0)
        assert boosted >= 6.0, boosted
        # Nobody renews it: after until the agent is back on the gate by itself.
        assert wait_for(lambda: agent.settings().boosted_until is None, 5)
        time.sleep(1.0)
        after = counter.rate(3.0)
        assert after <= 1.7, after
        assert agent.settings().fps == 2.0  # the boost's base config names the site's 2
    finally:
        agent.stop()


def test_a_config_that_breaks_the_contract_is_counted_and_ignored(
        broker: Broker, site_id: str, tmp_path: Path, counter: FrameCounter) -> None:
    cam = CameraConfig(source=str(still_clip(tmp_path / "still.avi", seconds=5)), loop=True,
                       fps=3)
    agent = CameraAgent("cam-1", site_id, cam, broker, heartbeat_s=None)
    agent.start()
    try:
        assert agent.wait_connected(5)
        time.sleep(0.3)
        counter.push(b'{"fps": "30"}')
        counter.push(b'{"fps": 999}')
        counter.push(b'{"live": {"fps": 5, "until": 1e12}}')
        assert wait_for(lambda: agent.stats.config_rejected == 3, 5), agent.stats
        assert agent.settings().fps == 3 and agent.settings().gate
        assert agent.running
        counter.push(protocol.encode(base_config(cam.model_copy(update={"fps": 1.0}))))
        assert wait_for(lambda: agent.settings().fps == 1.0, 5)
    finally:
        agent.stop()
