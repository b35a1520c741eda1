"""Evidence snapshots: the frame with zones, people, keypoints and static map drawn in.

Drawn with OpenCV's built-in Hershey fonts, so nothing is fetched from the network.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from hub.storage import BadKey, FileStorage
from hub.vision.people import SKELETON, Person
from hub.vision.zones import polygon_px

log = logging.getLogger(__name__)

ZONE_COLOURS = {"fire_lane": (0, 200, 255), "no_fall": (255, 200, 0), "watch": (200, 200, 200)}
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def draw(
    frame_bgr: np.ndarray,
    zones: Sequence[tuple[str, str, Sequence[tuple[float, float]]]] = (),
    people: Sequence[Person] = (),
    static_maps: Sequence[tuple[tuple[int, int, int, int], np.ndarray, tuple[int, int]]] = (),
    highlight: tuple[float, float, float, float] | None = None,
    lines: Sequence[str] = (),
) -> np.ndarray:
    """Return a copy of the frame with the evidence drawn in.

    ``zones``: (name, kind, polygon 0-1). ``static_maps``: (rect in work pixels, bool
    mask of the rect, work size (w, h)). ``highlight``: the box the alarm is about.
    """
    img = frame_bgr.copy()
    h, w = img.shape[:2]
    for rect, mask, (ww, wh) in static_maps:
        if not mask.any():
            continue
        sx, sy = w / ww, h / wh
        x1, y1, x2, y2 = rect
        X1, Y1, X2, Y2 = round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy)
        m = cv2.resize(mask.astype(np.uint8), (max(X2 - X1, 1), max(Y2 - Y1, 1)),
                       interpolation=cv2.INTER_NEAREST).astype(bool)
        roi = img[Y1:Y2, X1:X2]
        m = m[: roi.shape[0], : roi.shape[1]]
        red = np.zeros_like(roi)
        red[:] = (0, 0, 255)
        roi[m] = cv2.addWeighted(roi, 0.45, red, 0.55, 0)[m]
    for name, kind, poly in zones:
        pts = polygon_px(poly, w, h)
        colour = ZONE_COLOURS.get(kind, (200, 200, 200))
        cv2.polylines(img, [pts], True, colour, 2, cv2.LINE_AA)
        x, y = pts[:, 0].min(), pts[:, 1].min()
        cv2.putText(img, f"{name} ({kind})", (int(x) + 4, int(y) + 16), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, colour, 1, cv2.LINE_AA)
    for p in people:
        colour = (0, 255, 0)
        b = tuple(int(round(v)) for v in p.box)
        cv2.rectangle(img, b[:2], b[2:], colour, 1)
        k = p.keypoints
        for a, c in SKELETON:
            if k[a, 2] >= 0.35 and k[c, 2] >= 0.35:
                cv2.line(img, (int(k[a, 0]), int(k[a, 1])), (int(k[c, 0]), int(k[c, 1])),
                         (255, 128, 0), 2, cv2.LINE_AA)
        for x, y, c in k:
            if c >= 0.35:
                cv2.circle(img, (int(x), int(y)), 3, (0, 0, 255), -1, cv2.LINE_AA)
    if highlight is not None:
        b = tuple(int(round(v)) for v in highlight)
        cv2.rectangle(img, b[:2], b[2:], (0, 0, 255), 3)
    y = 20
    for text in lines:
        # On a dark band so the text reads on any background.
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        cv2.rectangle(img, (4, y - th - 4), (12 + tw, y + base + 2), (0, 0, 0), -1)
        cv2.putText(img, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
        y += th + base + 8
    return img


def write(evidence_dir: Path, camera_id: str, ts: datetime, tag: str, image: np.ndarray,
          quality: int = 85) -> str | None:
    """Write the JPEG; return its path relative to ``evidence_dir``'s parent (the data
    directory), or None when it could not be written (logged; the alarm still goes)."""
    name = f"{ts.strftime('%Y%m%dT%H%M%S%f')}-{_SAFE.sub('_', tag)}.jpg"
    evidence_dir = Path(evidence_dir)
    # The data directory is the deployment's file store (hub.storage), shared by the
    # API replicas that serve the image; the write is atomic there.
    key = f"{_SAFE.sub('_', evidence_dir.name)}/{_SAFE.sub('_', camera_id)}/{name}"
    try:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise OSError("JPEG encoding failed")
        FileStorage(evidence_dir.parent).put(key, buf.tobytes())
    except (OSError, BadKey) as e:
        log.error("evidence image not written", extra={"device": camera_id, "error": str(e)})
        return None
    return key
