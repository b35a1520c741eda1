"""The INT8 pose model: made offline from the OpenVINO export, it finds the people the
export finds, and it is made once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hub.vision import backends
from hub.vision.tracker import iou


def test_calibration_uses_the_packaged_pictures_upright_and_turned() -> None:
    imgs = backends.calibration_images()
    # bus.jpg and zidane.jpg, whole and their centre, each as is and turned both ways.
    assert len(imgs) == 12
    bus = imgs[0]
    assert bus.shape[:2] == (1080, 810)
    assert imgs[1].shape[:2] == (810, 1080) and imgs[2].shape[:2] == (810, 1080)
    assert np.array_equal(imgs[1][:, ::-1], imgs[2][::-1, :])  # the two turns mirror
    assert imgs[3].shape[:2] == (540, 405)  # the centre half


@pytest.mark.slow
def test_int8_model_finds_the_exports_people_and_is_made_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("nncf")
    pytest.importorskip("openvino")
    monkeypatch.setenv("HUB_MODEL_DIR", str(tmp_path))
    fp = backends.create("openvino", imgsz=640, threads=2)
    q = backends.create("openvino-int8", imgsz=640, threads=2)
    xml = backends._quantized(640)
    assert xml.is_file() and xml.parent.name == "yolo11n-pose_int8_openvino_model"
    assert not list(tmp_path.rglob("*.partial"))
    made = xml.stat().st_mtime_ns
    imgs = backends.calibration_images()
    seen = 0
    for img in (imgs[0], imgs[6]):  # bus.jpg (4 people) and zidane.jpg (2), upright
        ref = fp.detect(img, 0.25, 0.7)
        got = q.detect(img, 0.25, 0.7)
        assert len(ref) >= 2 and len(got) == len(ref)
        for r in ref:
            best = max(got, key=lambda g: iou(r.box, g.box))
            assert iou(r.box, best.box) >= 0.85
            vis = (r.keypoints[:, 2] > 0.5) & (best.keypoints[:, 2] > 0.5)
            if vis.any():  # a person cut by the picture's edge may show no keypoint
                seen += 1
                d = np.linalg.norm(r.keypoints[vis, :2] - best.keypoints[vis, :2], axis=1)
                assert float(np.median(d)) <= 0.08 * r.height  # measured: 0.5-4.5 %
    assert seen >= 4
    backends.create("openvino-int8", imgsz=640, threads=1)
    assert xml.stat().st_mtime_ns == made  # reused, not quantised again
