"""Crowding through the real broker: frames of a real picture with four people (the
ultralytics wheel's bus.jpg) -> MQTT -> vision worker with the real pose model -> the
camera's crowding rule from the site file -> a firing alarm with evidence, then a
cleared one with the same dedup key when the people are gone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub import protocol
from hub.domain import Alarm, AlarmState
from hub.protocol import Kind
from hub.services import Broker
from hub.vision.worker import VisionWorker
from tests.integration.test_frames_worker import frame_payload, make_site, wait_for

FEET = [(0.0, 0.6), (1.0, 0.6), (1.0, 1.0), (0.0, 1.0)]  # where the four stand


@pytest.fixture
def publisher(broker: Broker) -> Iterator[mqtt.Client]:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    yield c
    c.disconnect()
    c.loop_stop()


@pytest.fixture(scope="module")
def pose() -> Any:
    from hub.vision.pose import PoseEstimator

    return PoseEstimator(backend="torch", threads=2)


def test_a_crowd_in_the_zone_raises_and_clears_the_crowding_alarm(
    broker: Broker, site_id: str, tmp_path: Path, pose: Any, publisher: mqtt.Client
) -> None:
    bus = cv2.imread(str(resources.files("ultralytics") / "assets" / "bus.jpg"))
    crowd = cv2.resize(bus, (bus.shape[1] // 2, bus.shape[0] // 2))  # 405x540
    empty = np.full_like(crowd, 110)
    site = make_site(site_id, {"cam-square": {
        "source": "unused", "fps": 5, "max_width": 640,
        "zones": [{"name": "square", "kind": "watch", "polygon": FEET}],
        "rules": {"crowding": {"zones": [
            {"zone": "square", "max_people": 2, "dwell_s": 2, "clear_s": 1}]}},
    }})
    alarms: list[Alarm] = []
    worker = VisionWorker(site, broker, tmp_path / "data", alarms.append,
                          pose_factory=lambda: pose, analysis_threads=1)
    worker.start()
    topic = protocol.topic(site_id, "cam-square", Kind.FRAME)
    t0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    try:
        assert worker.connected
        # 4 s of data time with the crowd, then 3 s without; frames 0.5 s apart.
        for k, img in enumerate([crowd] * 9 + [empty] * 7):
            publisher.publish(topic, frame_payload("cam-square", k, t0 + timedelta(seconds=k / 2),
                                                   img))
            time.sleep(0.3)
            if k == 8:
                assert wait_for(lambda: any(a.firing for a in alarms), 20), worker.health()
        assert wait_for(lambda: any(not a.firing for a in alarms), 20), worker.health()
    finally:
        worker.stop()
    fire, clear = alarms
    assert fire.rule == "crowding" and fire.category == "crowding" and fire.zone == "square"
    assert fire.state is AlarmState.FIRING and clear.state is AlarmState.CLEARED
    assert fire.evidence["count"] > 2 and fire.evidence["threshold"] == 2
    assert fire.evidence["dwell_s"] >= 2
    assert fire.dedup_key == clear.dedup_key == "crowding:cam-square:square:20260101T080000"
    assert fire.evidence_image and (tmp_path / "data" / fire.evidence_image).is_file()
    assert worker.health()["cam-square"]["rejected"] == {}
