"""Camera agent pieces that need no broker: JPEG limits, backoff, file stamping."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.camera import (
    Backoff,
    CameraAgent,
    CameraError,
    FrameSource,
    encode_jpeg,
    parse_source_overrides,
    resolve_source,
    start_site_cameras,
)
from hub.config import CameraConfig
from hub.services import Broker

DEMO_SITE = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml"
NOWHERE = Broker(host="127.0.0.1", port=9)  # never dialled: these agents are not started


def write_clip(path: Path, frames: int, fps: float = 10.0,
               size: tuple[int, int] = (320, 240)) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert w.isOpened()
    for i in range(frames):
        img = np.full((size[1], size[0], 3), 60, np.uint8)
        cv2.putText(img, str(i), (20, 120), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        w.write(img)
    w.release()
    return path


def test_jpeg_is_scaled_to_max_width_and_kept_under_the_byte_limit() -> None:
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8)  # compresses badly
    jpeg, w, h = encode_jpeg(noisy, quality=95, max_width=960)
    assert (w, h) == (960, 540)
    dec = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert dec.shape == (540, 960, 3)
    small, w2, h2 = encode_jpeg(noisy, quality=95, max_width=960, max_bytes=60_000)
    assert len(small) <= 60_000 and w2 < 960 and abs(w2 / h2 - 16 / 9) < 0.05


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    b = Backoff(initial=0.5, maximum=4.0, jitter=0.0, rng=random.Random(1))
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next() == 0.5
    j = Backoff(initial=1.0, maximum=8.0, jitter=0.2, rng=random.Random(1))
    assert all(0.8 <= d <= 1.2 for d in [j.next()]) and 1.6 <= j.next() <= 2.4


def test_file_frames_are_stamped_in_data_time_and_rate_limited(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.avi", 30, fps=10)
    src = FrameSource(str(clip), fps=2.0, realtime=False, start_ts=1000.0)
    got = [c.ts for c in src.frames()]
    # 3 s of video at 2 frames/s: frames 0, 5, 10, ... stamped start + i/10.
    assert got == pytest.approx([1000.0, 1000.5, 1001.0, 1001.5, 1002.0, 1002.5])


def test_a_looping_file_keeps_counting_data_time(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.avi", 10, fps=10)
    src = FrameSource(str(clip), fps=5.0, loop=True, realtime=False, start_ts=0.0)
    ts = []
    for c in src.frames():
        ts.append(c.ts)
        if len(ts) == 12:
            src.stop.set()
    assert ts == pytest.approx([i * 0.2 for i in range(12)])  # 2.4 s: past two loops


def test_missing_sources_raise_camera_error(tmp_path: Path) -> None:
    with pytest.raises(CameraError):
        list(FrameSource(str(tmp_path / "nope.mp4"), fps=1, realtime=False).frames())
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(CameraError):
        list(FrameSource(str(tmp_path / "junk.mp4"), fps=1, realtime=False).frames())
    assert resolve_source("rtsp://cam/stream") == ("rtsp://cam/stream", False)
    assert resolve_source("0") == (0, False)
    assert resolve_source("/dev/video2") == ("/dev/video2", False)


def test_demo_footage_is_not_a_camera_source() -> None:
    """The demo site's ``demo:NAME`` sources are the demo's to resolve: the agent refuses
    them at construction, naming the camera, and never runs the demo tooling."""
    with pytest.raises(ValueError, match=r"camera cam-9: 'demo:fall' is demo footage"):
        CameraAgent("cam-9", "s", CameraConfig(source="demo:fall"), NOWHERE)
    with pytest.raises(ValueError, match="camera cam-9 has no source"):
        CameraAgent("cam-9", "s", CameraConfig(), NOWHERE)


def test_site_cameras_are_all_checked_before_any_starts(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.avi", 5)
    # cam-b3-lane gets a file, the other two keep demo: sources: nothing may start.
    with pytest.raises(ValueError, match="cam-b3-stair2: 'demo:fall' is demo footage"):
        start_site_cameras(DEMO_SITE, NOWHERE, sources={"cam-b3-lane": str(clip)})
    with pytest.raises(ValueError, match=r"names no camera of .*\['cam-nope'\]"):
        start_site_cameras(DEMO_SITE, NOWHERE, sources={"cam-nope": str(clip)})
    with pytest.raises(ValueError, match=r"no camera with a source named \['cam-nope'\]"):
        start_site_cameras(DEMO_SITE, NOWHERE, ["cam-nope"])


def test_source_overrides_are_device_equals_source() -> None:
    assert parse_source_overrides(None) == {}
    assert parse_source_overrides(["cam-1=/v/a.mp4", "cam-2=rtsp://h/s?a=b"]) == {
        "cam-1": "/v/a.mp4", "cam-2": "rtsp://h/s?a=b"}
    for bad in ("cam-1", "=/v/a.mp4", "cam-1="):
        with pytest.raises(ValueError, match="expected DEVICE=SOURCE"):
            parse_source_overrides([bad])
