"""A fall on camera, through the real broker, gets its event clip.

The footage is test_frames_worker's fall (a real person's picture, bus.jpg from the
ultralytics wheel, tipping over onto a floor), played in real time by the camera
agent; the worker's fall alarm names a clip in its evidence, and the clip appears as
an H.264 MP4 holding the seconds around the alarm.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.camera import CameraAgent
from hub.config import ClipsConfig
from hub.domain import Alarm, Category
from hub.services import Broker
from hub.vision.worker import VisionWorker
from tests.integration.test_frames_worker import make_site, pose, wait_for

__all__ = ["pose"]  # the fixture, imported for its use here


def fall_footage(tmp_path: Path) -> Path:
    from hubtools.demo_media import _write, fall_frames

    rng = np.random.default_rng(5)
    floor = cv2.GaussianBlur(rng.integers(70, 150, (576, 768, 3), dtype=np.uint8), (15, 15), 0)
    bg = tmp_path / "floor.avi"
    out = cv2.VideoWriter(str(bg), cv2.VideoWriter_fourcc(*"MJPG"), 10, (768, 576))
    for _ in range(100):
        out.write(floor)
    out.release()
    return _write(tmp_path / "fall.mp4", 10.0, fall_frames(bg, seconds=9.0, start_s=0.0))


def test_a_fall_from_footage_on_the_broker_gets_a_clip_around_the_alarm(
    broker: Broker, site_id: str, tmp_path: Path, pose: Any
) -> None:
    av = pytest.importorskip("av")
    footage = fall_footage(tmp_path)
    site = make_site(site_id, {"cam-stair": {"source": str(footage), "fps": 4}})
    site = site.model_copy(update={"clips": ClipsConfig(pre_s=3, post_s=2)})
    alarms: list[Alarm] = []
    data = tmp_path / "data"
    worker = VisionWorker(site, broker, data, alarms.append, pose_factory=lambda: pose,
                          analysis_threads=1)
    worker.start()
    cam = site.device("cam-stair")
    assert cam is not None and cam.camera is not None
    start_ts = float(int(time.time()))
    agent = CameraAgent("cam-stair", site_id, cam.camera, broker, heartbeat_s=None,
                        start_ts=start_ts)
    agent.start()
    try:
        assert wait_for(lambda: any(a.category == Category.FALL and a.firing for a in alarms),
                        30), worker.health()
        fall = next(a for a in alarms if a.category == Category.FALL and a.firing)
        clip = fall.evidence["clip"]
        assert clip["path"].startswith("clips/fall/cam-stair/") and clip["path"].endswith(".mp4")
        # The window's end (2 s after the alarm's frame) arrives in real time, then
        # the encoder writes it.
        assert wait_for(lambda: (data / clip["path"]).is_file(), 20), worker.clips.written
    finally:
        agent.stop()
        worker.stop()
    with av.open(str(data / clip["path"])) as c:
        v = c.streams.video[0]
        assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
        times = [float(f.pts * f.time_base) for f in c.decode(v)]
    # 3 s before to 2 s after. The agent's motion gate sends up to 4 frames a second
    # while the body moves and a keyframe a second while the scene is still; the clip
    # keeps those times, so a still stretch plays as a held picture, in real time.
    assert 4.0 <= times[-1] - times[0] <= 5.0, times
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(times) >= 5 and max(gaps) <= 1.3, times
    ring = worker.clips.recorder.ring_stats()["cam-stair"]
    assert 0 < ring["span_s"] <= 3 + 5 and ring["bytes"] <= 16 * 1024 * 1024
