"""The motion gate lets through changed frames and keyframes, and skips still ones."""

from __future__ import annotations

import numpy as np

from hub.motion import MotionGate


def scene(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((240, 320, 3), 90, np.uint8)
    img[100:200, 20:300] = 140  # a lane
    img += rng.integers(0, 4, img.shape, dtype=np.uint8)  # sensor noise
    return img


def with_person(x: int) -> np.ndarray:
    img = scene(2)
    img[60:200, x:x + 40] = (20, 30, 200)
    return img


def test_first_frame_runs_still_frames_are_skipped_until_a_keyframe() -> None:
    gate = MotionGate(threshold=0.003, keyframe_s=2.0)
    assert gate.check(0.0, scene(1)).reason == "first"
    d = gate.check(0.5, scene(3))  # only noise changed
    assert not d.run and d.reason == "still" and d.motion < 0.003
    assert not gate.check(1.9, scene(4)).run
    d = gate.check(2.0, scene(5))
    assert d.run and d.reason == "keyframe"
    assert not gate.check(2.5, scene(6)).run  # the keyframe restarted the count


def test_a_moving_person_passes_the_gate() -> None:
    gate = MotionGate(threshold=0.003, keyframe_s=60)
    gate.check(0.0, scene(1))
    d = gate.check(0.25, with_person(100))
    assert d.run and d.reason == "motion" and d.motion > 0.05
    assert gate.check(0.5, with_person(130)).run
    assert not gate.check(0.75, with_person(130)).run  # stopped moving


def test_slow_change_accumulates_against_the_last_frame_let_through() -> None:
    gate = MotionGate(threshold=0.01, keyframe_s=60)
    base = scene(1)
    gate.check(0.0, base)
    runs = []
    for i in range(1, 30):
        img = base.copy()
        img[100:200, 20:20 + 2 * i] = 250  # a bright area grows by 2 px per frame
        runs.append(gate.check(i * 0.25, img).run)
    assert any(runs), "a slow change must cross the threshold eventually"
    assert not all(runs)


def test_time_going_backwards_forces_a_keyframe() -> None:
    gate = MotionGate(threshold=0.5, keyframe_s=60)
    gate.check(100.0, scene(1))
    assert gate.check(10.0, scene(1)).reason == "keyframe"
