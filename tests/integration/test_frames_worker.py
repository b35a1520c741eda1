"""Frames through the real broker: camera agent -> MQTT -> vision worker -> alarms.

The footage is made here (no shared media): a lane scene into which a box is put
and left standing, written as a video file and played by the real camera agent in
real time. Bad input goes to a second camera of the same worker and must not touch
the first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import REGISTRY

from edge.camera import CameraAgent
from hub import protocol
from hub.config import Site
from hub.domain import Alarm, AlarmState, Category
from hub.protocol import FrameMeta, Kind
from hub.services import Broker
from hub.vision.worker import VisionWorker
from tests.integration.alerting import wait_for
from tests.integration.vision_support import NoPose, NullAnalyzer

REPO = Path(__file__).resolve().parents[2]
LANE = [(0.1, 0.5), (0.9, 0.5), (0.9, 0.95), (0.1, 0.95)]


def lane_clip(path: Path, seconds: float = 9.0, fps: float = 10.0, placed_at: float = 2.0) -> Path:
    """A textured floor with a lane; at ``placed_at`` a box is put in the lane and stays."""
    rng = np.random.default_rng(7)
    w, h = 320, 240
    base = np.full((h, w, 3), 110, np.uint8)
    base[120:230, 30:290] = (150, 150, 145)  # the lane's paving
    for _ in range(120):  # paving joints and stains, so the scene has texture
        x, y = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 4))
        base[y:y + 3, x:x + 10] = rng.integers(60, 200, 3)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for i in range(int(seconds * fps)):
        img = base.copy()
        if i / fps >= placed_at:
            cv2.rectangle(img, (110, 140), (210, 215), (40, 70, 120), -1)  # cardboard box
            cv2.rectangle(img, (110, 140), (210, 215), (20, 40, 70), 3)
        noise = rng.integers(0, 3, img.shape, dtype=np.uint8)
        out.write(cv2.add(img, noise))
    out.release()
    return path


def make_site(site_id: str, cameras: dict[str, dict[str, Any]]) -> Site:
    raw = yaml.safe_load((REPO / "deploy/sites/demo.yaml").read_text(encoding="utf-8"))
    raw["site"]["id"] = site_id
    grid = next(d["grid"] for d in raw["devices"] if d["kind"] == "camera")
    raw["devices"] = [d for d in raw["devices"] if d["kind"] != "camera"] + [
        {"id": cid, "kind": "camera", "grid": grid, "location": {"x": 0.5, "y": 0.5},
         "camera": cam} for cid, cam in cameras.items()
    ]
    return Site.model_validate(raw)


@pytest.fixture(scope="module")
def pose() -> Any:
    from hub.vision.pose import PoseEstimator

    est = PoseEstimator(backend="torch", threads=2)
    est.detect(np.zeros((240, 320, 3), np.uint8))  # the first inference is slow; not timed
    return est


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def publisher(broker: Broker) -> Iterator[mqtt.Client]:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    yield c
    c.disconnect()
    c.loop_stop()


def frame_payload(device: str, seq: int, ts: datetime, img: np.ndarray,
                  width: int | None = None) -> bytes:
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    h, w = img.shape[:2]
    meta = FrameMeta(device=device, seq=seq, ts=ts, width=width or w, height=h)
    return protocol.encode_frame(meta, buf.tobytes())


def test_footage_through_the_broker_raises_the_fire_lane_alarm_and_bad_frames_are_contained(
    broker: Broker, site_id: str, tmp_path: Path, pose: Any, publisher: mqtt.Client
) -> None:
    clip = lane_clip(tmp_path / "lane.avi")
    zone = {"name": "lane", "kind": "fire_lane", "polygon": LANE, "dwell_s": 2, "clear_s": 1,
            "threshold": 0.1}
    site = make_site(site_id, {
        "cam-lane": {"source": str(clip), "fps": 5, "zones": [zone]},
        "cam-bad": {"source": "unused", "fps": 2, "zones": [zone]},
    })
    alarms: list[Alarm] = []
    worker = VisionWorker(site, broker, tmp_path / "data", alarms.append,
                          pose_factory=lambda: pose, analysis_threads=1)
    worker.start()
    assert worker.connected
    rejected0 = {r: sample("hub_vision_frames_rejected_total", reason=r)
                 for r in ("decode_error", "size_mismatch", "bad_frame", "unknown_camera")}
    lane_cam = site.device("cam-lane")
    assert lane_cam is not None and lane_cam.camera is not None
    agent = CameraAgent("cam-lane", site_id, lane_cam.camera, broker, heartbeat_s=None)
    agent.start()
    try:
        # Bad input on another camera while the good one streams.
        topic_bad = protocol.topic(site_id, "cam-bad", Kind.FRAME)
        t0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
        img = np.full((240, 320, 3), 90, np.uint8)
        good = frame_payload("cam-bad", 1, t0, img)
        ok, jpg = cv2.imencode(".jpg", img)
        corrupt_meta = FrameMeta(device="cam-bad", seq=2, ts=t0 + timedelta(seconds=1),
                                 width=320, height=240)
        bad = [
            # corrupt JPEG: right markers, garbage inside
            protocol.encode_frame(corrupt_meta, b"\xff\xd8" + bytes(range(256)) * 8 + b"\xff\xd9"),
            # truncated JPEG: the first half of a real one
            protocol.encode_frame(corrupt_meta, jpg.tobytes()[: len(jpg) // 2]),
            # header says 640 wide, the JPEG is 320
            frame_payload("cam-bad", 3, t0 + timedelta(seconds=2), img, width=640),
            # not a frame at all
            b"hello, hub",
        ]
        time.sleep(0.3)
        publisher.publish(topic_bad, good, qos=0)
        for i, p in enumerate(bad):
            time.sleep(0.3)  # one at a time, so the latest-frame slot keeps each of them
            publisher.publish(topic_bad, p, qos=0)
            assert wait_for(lambda i=i: sum(worker.cameras["cam-bad"].rejected.values()) >= i + 1,
                            5), (i, worker.cameras["cam-bad"].rejected)
        # A camera the site does not know.
        publisher.publish(protocol.topic(site_id, "cam-ghost", Kind.FRAME), good, qos=0)
        # A flood: 300 frames at once from one camera.
        for k in range(300):
            publisher.publish(topic_bad, frame_payload("cam-bad", 100 + k,
                                                       t0 + timedelta(seconds=10 + k), img))

        assert wait_for(lambda: any(a.category is Category.FIRE_LANE and a.firing
                                    for a in alarms), 25), worker.health()
    finally:
        agent.stop()
        worker.stop()

    fire = next(a for a in alarms if a.category is Category.FIRE_LANE)
    assert fire.device_id == "cam-lane" and fire.zone == "lane" and fire.state is AlarmState.FIRING
    assert fire.evidence["share_of_zone"] >= 0.1
    assert fire.evidence_image and (tmp_path / "data" / "evidence").exists()

    h = worker.health()
    assert h["cam-lane"]["healthy"], h["cam-lane"]
    assert h["cam-lane"]["rejected"] == {} and h["cam-lane"]["rate_limited"] == 0
    bad_h = h["cam-bad"]
    assert not bad_h["healthy"] and bad_h["reason"]
    assert bad_h["rejected"].get("decode_error") == 2
    assert bad_h["rejected"].get("size_mismatch") == 1
    assert bad_h["rejected"].get("bad_frame") == 1
    assert bad_h["rate_limited"] > 200
    assert worker.rejected.get("unknown_camera") == 1
    for reason, n in (("decode_error", 2), ("size_mismatch", 1), ("bad_frame", 1),
                      ("unknown_camera", 1)):
        assert sample("hub_vision_frames_rejected_total", reason=reason) - rejected0[reason] == n
    assert sample("hub_vision_frames_dropped_total", camera="cam-bad", reason="rate_limited") > 200


def test_a_worker_subscribes_only_to_its_own_cameras(
    broker: Broker, site_id: str, tmp_path: Path, publisher: mqtt.Client
) -> None:
    cams = {f"cam-{i}": {"source": "x", "fps": 2} for i in range(6)}
    site = make_site(site_id, cams)
    seen: dict[int, list[str]] = {0: [], 1: []}
    workers = []
    for idx in (0, 1):
        w = VisionWorker(site, broker, tmp_path, lambda a: None, worker_index=idx,
                         worker_count=2, pose_factory=lambda: NoPose(),
                         analyzer_factory=lambda d: NullAnalyzer())
        orig = w._analyse

        def spy(cid: str, item: Any, detect: Any, idx: int = idx, orig: Any = orig) -> None:
            seen[idx].append(cid)
            orig(cid, item, detect)

        w._analyse = spy  # type: ignore[method-assign]
        w.start()
        workers.append(w)
    try:
        owned = [set(w.owned_cameras) for w in workers]
        assert owned[0] | owned[1] == set(cams) and not owned[0] & owned[1]
        assert all(workers[i].frame_topics() == [protocol.topic(site_id, c, Kind.FRAME)
                                                 for c in sorted(owned[i])] for i in (0, 1))
        img = np.full((120, 160, 3), 80, np.uint8)
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        for cid in cams:
            publisher.publish(protocol.topic(site_id, cid, Kind.FRAME),
                              frame_payload(cid, 1, t0, img))
        assert wait_for(lambda: len(seen[0]) + len(seen[1]) == len(cams), 10)
        time.sleep(0.3)
    finally:
        for w in workers:
            w.stop()
    assert set(seen[0]) == owned[0] and set(seen[1]) == owned[1]
    assert len(seen[0]) + len(seen[1]) == len(cams)  # each frame reached one worker only


def test_a_slow_analysis_drops_stale_frames_and_keeps_the_latest(
    broker: Broker, site_id: str, tmp_path: Path, publisher: mqtt.Client
) -> None:
    site = make_site(site_id, {"cam-slow": {"source": "x", "fps": 30}})
    done = threading.Event()
    analysed: list[datetime] = []

    class Slow(NullAnalyzer):
        def process(self, ts: datetime, frame: np.ndarray, people: Any) -> list[Alarm]:
            analysed.append(ts)
            time.sleep(0.2)
            if len(analysed) > 3:
                done.set()
            return []

    w = VisionWorker(site, broker, tmp_path, lambda a: None,
                     pose_factory=lambda: NoPose(), analyzer_factory=lambda d: Slow())
    w.start()
    try:
        img = np.full((120, 160, 3), 80, np.uint8)
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        started = time.monotonic()
        for k in range(40):  # 40 frames in 1.3 s; each analysis takes 0.2 s
            publisher.publish(protocol.topic(site_id, "cam-slow", Kind.FRAME),
                              frame_payload("cam-slow", k, t0 + timedelta(seconds=k), img))
            time.sleep(1 / 30)
        published_s = time.monotonic() - started
        assert wait_for(lambda: w.mailbox.pending() == 0 and len(analysed) >= 3, 10)
        time.sleep(0.5)
    finally:
        w.stop()
    h = w.health()["cam-slow"]
    assert h["frames_received"] == 40
    # Never queued behind the slow analysis: at most one analysis per 0.2 s of
    # publishing (a loaded machine publishes slower), plus the one in hand at the end.
    assert h["frames_processed"] <= published_s / 0.2 + 2
    assert h["dropped_stale"] >= 40 - (published_s / 0.2 + 2)
    assert h["frames_processed"] + h["dropped_stale"] == 40
    assert analysed[-1] == t0 + timedelta(seconds=39)  # the newest frame is always analysed
    assert analysed == sorted(analysed)


def test_a_person_falling_on_camera_raises_a_fall_alarm(
    broker: Broker, site_id: str, tmp_path: Path, pose: Any
) -> None:
    """A real person's picture (bus.jpg, shipped in the ultralytics wheel) stands, falls
    over within 0.6 s and lies still, composed onto a floor scene (demo_media's script),
    played by the camera agent through the broker to the worker."""
    from hubtools.demo_media import _write, fall_frames

    rng = np.random.default_rng(5)
    floor = cv2.GaussianBlur(rng.integers(70, 150, (576, 768, 3), dtype=np.uint8), (15, 15), 0)
    bg = tmp_path / "floor.avi"
    out = cv2.VideoWriter(str(bg), cv2.VideoWriter_fourcc(*"MJPG"), 10, (768, 576))
    for _ in range(100):
        out.write(floor)
    out.release()
    clip = _write(tmp_path / "fall.mp4", 10.0, fall_frames(bg, seconds=9.0, start_s=0.0))
    site = make_site(site_id, {"cam-stair": {"source": str(clip), "fps": 4}})
    alarms: list[Alarm] = []
    worker = VisionWorker(site, broker, tmp_path / "data", alarms.append,
                          pose_factory=lambda: pose, analysis_threads=1)
    worker.start()
    cam = site.device("cam-stair")
    assert cam is not None and cam.camera is not None
    # Stamped from now, as a real camera stamps its frames: the worker refuses frames
    # beyond its clock plus HUB_MAX_CLOCK_SKEW_S (a fixed 1_800_000_000, January 2027,
    # was ahead of the clock, and every frame was rejected as ts_future).
    start_ts = float(int(time.time()))
    agent = CameraAgent("cam-stair", site_id, cam.camera, broker, heartbeat_s=None,
                        start_ts=start_ts)
    agent.start()
    try:
        assert wait_for(lambda: any(a.category is Category.FALL for a in alarms), 30), \
            worker.health()
    finally:
        agent.stop()
        worker.stop()
    fall = next(a for a in alarms if a.category is Category.FALL)
    assert fall.firing and fall.device_id == "cam-stair"
    # The body tips over 4.0-4.6 s into the clip; the alarm comes once lying is confirmed.
    t = fall.ts.timestamp() - start_ts
    assert 4.6 <= t <= 8.0, t
    assert fall.evidence_image and (tmp_path / "data" / fall.evidence_image).is_file()


def test_models_loaded_ahead_are_not_loaded_again_on_start(
    broker: Broker, site_id: str, tmp_path: Path
) -> None:
    """The hub loads the pose model before its timers start (a first export takes a
    while); start() then uses those models and returns subscribed."""
    site = make_site(site_id, {"cam-a": {"source": "x"}})
    made: list[NoPose] = []

    def factory() -> NoPose:
        made.append(NoPose())
        return made[-1]

    w = VisionWorker(site, broker, tmp_path, lambda a: None, pose_factory=factory,
                     analyzer_factory=lambda d: NullAnalyzer(), analysis_threads=2)
    w.load_models()
    assert len(made) == 2
    w.start()
    try:
        assert w.connected
        assert len(made) == 2
    finally:
        w.stop()
