"""What one pose inference costs at each input size, the way the hub calls the model.

For each video (a frame from its middle): the whole frame at the configured input
(640) and at its own size when smaller (``PoseEstimator(fit_frame=True)``), and a
lying-pass crop (the region the hub would take around a person of a quarter of the
frame's shorter side, turned 90 degrees) at 640, 416 and 320. One model (the dynamic
export the hub uses), cases interleaved round by round so they share the machine's
load; medians in milliseconds.

    python bench/pose_sizes.py --json [--video PATH ...] [--repeat 9] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_VIDEOS = ("/work/shared/media/urfd_fall01.mp4", "/work/shared/media/vtest.avi")


def middle_frame(path: str) -> np.ndarray:
    cap = cv2.VideoCapture(path)
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.set(cv2.CAP_PROP_POS_FRAMES, max(0, n // 2))
    ok, frame = cap.read()
    cap.release()
    if not ok or frame is None:
        raise SystemExit(f"cannot read a frame of {path}")
    return frame


def cases(frame: np.ndarray, imgsz: int) -> dict[str, tuple[np.ndarray, int]]:
    from hub.vision.pose import _roi

    h, w = frame.shape[:2]
    side = min(w, h) / 4
    cx, cy = w / 2, h / 2
    x1, y1, x2, y2 = _roi((cx - side / 4, cy - side / 2, cx + side / 4, cy + side / 2), w, h)
    crop = cv2.rotate(frame[y1:y2, x1:x2], cv2.ROTATE_90_CLOCKWISE)
    out = {f"frame {w}x{h} at {imgsz}": (frame, imgsz)}
    if max(w, h) < imgsz:
        out[f"frame {w}x{h} at its own size"] = (frame, max(w, h))
    for s in (640, 416, 320):
        out[f"turned crop {crop.shape[1]}x{crop.shape[0]} at {s}"] = (crop, s)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", action="append", help="video file (repeatable)")
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    from hub.vision.pose import PoseEstimator

    est = PoseEstimator(backend=a.backend, threads=a.threads)
    impl = est._impl
    todo: dict[str, tuple[np.ndarray, int]] = {}
    for v in a.video or DEFAULT_VIDEOS:
        for name, c in cases(middle_frame(v), est.imgsz).items():
            todo[f"{Path(v).name}: {name}"] = c
    for img, size in todo.values():  # first call per shape: not timed
        impl.detect(img, est.conf, est.iou, size=size)
    times: dict[str, list[float]] = {k: [] for k in todo}
    for _ in range(a.repeat):
        for k, (img, size) in todo.items():
            t = time.perf_counter()
            impl.detect(img, est.conf, est.iou, size=size)
            times[k].append(1000 * (time.perf_counter() - t))
    out = {"backend": est.backend_name, "threads": a.threads, "repeat": a.repeat,
           "load_avg": [round(x, 2) for x in os.getloadavg()],
           "median_ms": {k: round(statistics.median(v), 1) for k, v in times.items()}}
    print(json.dumps(out, indent=None if a.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
