"""When the analyzer spends a rotated "lying" look (several inferences) on a frame."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from hub.config import FallRule
from hub.vision.analyzer import CameraAnalyzer
from hub.vision.fall import FallDetector
from hub.vision.people import Person
from hub.vision.pose import MAX_ROIS

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
FRAME = np.zeros((480, 640, 3), np.uint8)


def standing(cx: float = 320) -> Person:
    k = np.zeros((17, 3), np.float32)
    return Person((cx - 45, 100, cx + 45, 400), 0.9, k)


class Pose:
    iou = 0.7

    def __init__(self) -> None:
        self.looks: list[tuple[float, list]] = []
        self.t = 0.0

    def detect_rotated(self, frame: np.ndarray, rois: object = ()) -> list[Person]:
        self.looks.append((round(self.t, 1), list(rois)))  # type: ignore[call-overload]
        return []


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pose = Pose()
    an = CameraAnalyzer("cam-1", "1101050010020101", [], FallRule(), tmp_path / "ev",
                        pose=pose)  # type: ignore[arg-type]
    mode: dict[str, object] = {"watch": True, "firing": False, "regions": []}
    fall = an.rule("fall").detector  # type: ignore[attr-defined]
    fall.watching = lambda ts: bool(mode["watch"])  # type: ignore[method-assign]
    fall.regions = lambda ts: list(mode["regions"])  # type: ignore[method-assign,call-overload]
    monkeypatch.setattr(FallDetector, "firing", property(lambda self: bool(mode["firing"])))

    def play(start: float, seconds: float, people: list[Person]) -> None:
        for i in range(int(seconds * 5)):
            pose.t = start + i / 5
            an.process(T0 + timedelta(seconds=pose.t), FRAME, list(people))

    return pose, mode, play


def test_no_look_while_watching_with_everyone_in_view(scene) -> None:
    """The watch outlasts the concern by seconds; with nobody of concern, no alarm and
    everyone the tracker knows still in view, a look would find nobody who matters."""
    pose, mode, play = scene
    play(0, 2, [standing()])
    assert pose.looks == []


def test_a_look_when_someone_vanishes_on_this_frame(scene) -> None:
    """The fall rule learns that a tracked person is gone only after the frame: a due
    look turns the whole frame when someone vanishes on it (looks stay paced: due at
    0.0, 0.6, 1.2, ... s, each one skipped while everyone is in view)."""
    pose, mode, play = scene
    play(0, 1.2, [standing(200), standing(500)])
    play(1.2, 0.2, [standing(200)])  # the one on the right is not found
    assert pose.looks == [(1.2, [])]
    play(1.4, 1, [standing(200), standing(500)])  # found again: no more looks
    assert pose.looks == [(1.2, [])]


def test_a_look_at_the_people_of_concern_and_while_firing(scene) -> None:
    pose, mode, play = scene
    boxes = [(100.0, 100.0, 150.0, 250.0), (400.0, 100.0, 450.0, 250.0)]
    mode["regions"] = boxes
    play(0, 1, [])
    assert [t for t, _ in pose.looks] == [0.0, 0.6]  # every lying_watch_every_s
    assert all(r == boxes[:MAX_ROIS] for _, r in pose.looks)
    pose.looks.clear()
    mode.update(watch=False, regions=[], firing=True)
    play(1, 4, [standing()])
    assert pose.looks == [(2.6, []), (4.6, [])]  # every lying_every_s, whole frame
