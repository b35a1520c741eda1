"""Zones: polygons in 0-1 coordinates from the site file, turned into pixel masks.

A mask depends only on the polygon and the frame size, so it is built once per size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from hub.config import ZoneConfig


def polygon_px(polygon: Sequence[tuple[float, float]], width: int, height: int) -> np.ndarray:
    """Polygon in 0-1 coordinates -> int32 pixel points (N, 2)."""
    pts = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    pts = pts * np.array([width - 1, height - 1], dtype=np.float64)
    return np.round(pts).astype(np.int32)


def polygon_mask(polygon: Sequence[tuple[float, float]], width: int, height: int) -> np.ndarray:
    """Boolean (height, width) mask of the polygon."""
    m = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(m, [polygon_px(polygon, width, height)], 1)
    return m.astype(bool)


def contains(polygon: Sequence[tuple[float, float]], x: float, y: float) -> bool:
    """Whether the normalised point (x, y) lies inside (or on) the normalised polygon."""
    pts = np.asarray(polygon, dtype=np.float32).reshape(-1, 1, 2)
    return cv2.pointPolygonTest(pts, (float(x), float(y)), False) >= 0


@dataclass
class Zone:
    """A configured zone with its masks cached per frame size."""

    config: ZoneConfig
    _masks: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def kind(self) -> str:
        return self.config.kind

    def mask(self, width: int, height: int) -> np.ndarray:
        key = (width, height)
        m = self._masks.get(key)
        if m is None:
            m = polygon_mask(self.config.polygon, width, height)
            self._masks[key] = m
        return m

    def contains_px(self, x: float, y: float, width: int, height: int) -> bool:
        return contains(self.config.polygon, x / max(width, 1), y / max(height, 1))
