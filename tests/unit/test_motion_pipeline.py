"""The hub-side gate in the pipeline: when the pose model runs and when it is skipped."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import cv2
import numpy as np
import pytest

from hub.motion import MotionGate
from hub.protocol import FrameMeta
from hub.vision.pipeline import CameraPipeline, FrameRejected

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


class Analyzer:
    def __init__(self) -> None:
        self.calls: list[tuple[datetime, Any]] = []
        self.watch_until: datetime | None = None
        self.confirm_from: datetime | None = None
        self.confirm_until: datetime | None = None
        self.last_ts: datetime | None = None

    def process(self, ts: datetime, frame: np.ndarray, people: Any) -> list:
        self.calls.append((ts, people))
        self.last_ts = ts
        return []

    def needs_every_frame(self, ts: datetime) -> bool:
        return (self.confirm_from is not None and self.confirm_until is not None
                and self.last_ts is not None
                and self.confirm_from <= self.last_ts < self.confirm_until)

    def rebaseline(self, ts: datetime) -> None: ...

    def needs_still_frames(self, ts: datetime) -> bool:
        return self.watch_until is not None and ts <= self.watch_until


def scene(x: int | None = None) -> np.ndarray:
    img = np.full((240, 320, 3), 100, np.uint8)
    if x is not None:
        img[60:200, x:x + 40] = 10
    return img


def jpeg(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", img)[1].tobytes()


def pipe(**kw: Any) -> tuple[CameraPipeline, Analyzer, list[int]]:
    an = Analyzer()
    runs: list[int] = []
    p = CameraPipeline("cam", lambda: an, lambda f: runs.append(1) or ["person"],
                       MotionGate(threshold=0.003, keyframe_s=4.0), **kw)
    return p, an, runs


def feed(p: CameraPipeline, frames: list[tuple[float, np.ndarray]]) -> None:
    for i, (t, img) in enumerate(frames):
        meta = FrameMeta(device="cam", seq=i, ts=T0 + timedelta(seconds=t), width=320, height=240)
        p.process(meta, jpeg(img))


def test_still_frames_skip_the_model_but_reach_the_rules() -> None:
    p, an, runs = pipe()
    feed(p, [(i * 0.2, scene()) for i in range(21)])  # 4 s of a still scene at 5 fps
    assert len(an.calls) == 21  # every frame reaches the rules (timers tick)
    assert [people for _, people in an.calls].count(None) == 19
    assert p.stats.gate_reasons == {"first": 1, "still": 19, "keyframe": 1}
    assert len(runs) == 2


def test_the_model_runs_at_most_every_min_interval_while_things_move() -> None:
    p, an, runs = pipe(pose_min_interval_s=0.4)
    feed(p, [(i * 0.2, scene(20 + 12 * i)) for i in range(20)])  # a person walks, 5 fps
    assert len(runs) == 10  # every other frame: 2.5 Hz
    assert p.stats.gate_reasons["rate"] == 10
    p2, _, runs2 = pipe(pose_min_interval_s=0.0)
    feed(p2, [(i * 0.2, scene(20 + 12 * i)) for i in range(20)])
    assert len(runs2) == 20


def test_motion_skipped_by_the_rate_cap_is_still_seen_on_the_next_frame() -> None:
    # The frame skipped for the rate does not become the gate's reference, so a
    # movement that then stops is still measured against the last analysed frame.
    p, _, runs = pipe(pose_min_interval_s=0.4)
    feed(p, [(0.0, scene(20)), (0.2, scene(80)), (0.4, scene(80))])
    assert len(runs) == 2 and p.stats.gate_reasons == {"first": 1, "rate": 1, "motion": 1}


def test_while_the_rules_watch_a_possible_fall_still_frames_get_the_model() -> None:
    p, an, runs = pipe(pose_min_interval_s=0.4)
    an.watch_until = T0 + timedelta(seconds=2)
    feed(p, [(i * 0.2, scene()) for i in range(20)])
    # Watching for the first 2 s: the model at the capped rate; then only keyframes.
    assert p.stats.gate_reasons["watching"] == 5  # at 0.4, 0.8, 1.2, 1.6, 2.0 s
    assert len(runs) == 1 + 5


def test_while_a_fall_waits_for_confirmation_every_frame_gets_the_model() -> None:
    p, an, runs = pipe(pose_min_interval_s=0.4)
    an.watch_until = T0 + timedelta(seconds=4)
    # Someone is first seen down on the frame at 1.2 s; the alarm fires on the one at 2.0 s.
    an.confirm_from = T0 + timedelta(seconds=1.2)
    an.confirm_until = T0 + timedelta(seconds=2)
    feed(p, [(i * 0.2, scene(20 + 12 * i)) for i in range(16)])  # 3 s at 5 fps
    ran = [round((ts - T0).total_seconds(), 1) for ts, people in an.calls if people]
    # Every other frame (the rate cap), every frame while confirming, then the cap again.
    assert ran == [0.0, 0.4, 0.8, 1.2, 1.4, 1.6, 1.8, 2.0, 2.4, 2.8]
    assert p.stats.gate_reasons["confirming"] == 4


def test_bad_frames_are_rejected_without_touching_the_camera_state() -> None:
    p, an, _ = pipe()
    feed(p, [(0.0, scene())])
    good = jpeg(scene())
    meta = FrameMeta(device="cam", seq=9, ts=T0 + timedelta(seconds=1), width=320, height=240)
    with pytest.raises(FrameRejected) as e:
        p.process(meta, good[: len(good) // 2])
    assert e.value.reason == "decode_error"
    with pytest.raises(FrameRejected) as e:
        p.process(meta.model_copy(update={"width": 640}), good)
    assert e.value.reason == "size_mismatch"
    small = jpeg(cv2.resize(scene(), (160, 120)))
    with pytest.raises(FrameRejected) as e:
        p.process(meta.model_copy(update={"width": 160, "height": 120}), small)
    assert e.value.reason == "size_changed"
    with pytest.raises(FrameRejected) as e:
        p.process(meta.model_copy(update={"ts": T0 - timedelta(seconds=1)}), good)
    assert e.value.reason == "out_of_order"
    assert len(an.calls) == 1
    p.process(meta, good)  # the camera carries on
    assert len(an.calls) == 2


def test_a_camera_that_really_changed_resolution_is_believed_after_a_few_frames() -> None:
    made = []

    def factory() -> Analyzer:
        made.append(Analyzer())
        return made[-1]

    p = CameraPipeline("cam", factory, lambda f: [], MotionGate())
    feed(p, [(0.0, scene())])
    small = jpeg(cv2.resize(scene(), (160, 120)))
    rejected = 0
    for i in range(12):
        meta = FrameMeta(device="cam", seq=i, ts=T0 + timedelta(seconds=1 + i), width=160,
                         height=120)
        try:
            p.process(meta, small)
        except FrameRejected:
            rejected += 1
    assert rejected == 9 and p.size == (160, 120) and len(made) == 2
    assert len(made[1].calls) == 3  # a fresh analyzer for the new size


def test_stats_say_where_the_time_went() -> None:
    """decode_s, gate_s and pose_s are parts of total_s (bench/vision.py's breakdown);
    a frame the gate skips adds no pose time."""
    def slow_detect(frame: np.ndarray) -> list:
        t = time.perf_counter()
        while time.perf_counter() - t < 0.02:  # a model call that takes 20 ms
            pass
        return []

    an = Analyzer()
    p = CameraPipeline("cam", lambda: an, slow_detect, MotionGate(threshold=0.003,
                                                                  keyframe_s=4.0))
    p.process(FrameMeta(device="cam", seq=0, ts=T0, width=320, height=240), jpeg(scene(40)))
    st = p.stats
    assert st.pose_runs == 1 and 0.02 <= st.pose_s < st.total_s
    assert st.decode_s > 0 and st.gate_s > 0
    assert st.decode_s + st.gate_s + st.pose_s <= st.total_s
    pose_s = st.pose_s
    p.process(FrameMeta(device="cam", seq=1, ts=T0 + timedelta(seconds=1), width=320,
                        height=240), jpeg(scene(40)))
    assert st.gate_reasons.get("still") == 1 and st.pose_s == pose_s
    assert st.decode_s + st.gate_s + st.pose_s <= st.total_s
