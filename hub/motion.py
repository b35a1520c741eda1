"""A cheap motion gate: share of changed pixels on a small grey frame.

Used on both sides of the wire. The edge gate decides whether a frame is worth
sending; the hub gate decides whether a frame is worth running the pose model on.
Both still let a *keyframe* through every ``keyframe_s`` seconds of data time, so a
static scene is still seen and the fire lane's dwell timer keeps ticking.

The gate compares with the last frame it *let through*, not with the previous frame:
a slow change (a person inching along, light drifting) accumulates until it crosses
the threshold instead of hiding under it frame after frame.

Pure: takes frames and data timestamps (seconds), reads no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SMALL_WIDTH = 160  # wide enough to see a person at the far end of a corridor


def small_grey(frame_bgr: np.ndarray, width: int = SMALL_WIDTH) -> np.ndarray:
    """Downscaled, blurred grey copy; blur so sensor noise and JPEG blocks don't count."""
    h, w = frame_bgr.shape[:2]
    nh = max(1, round(h * width / w))
    grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY) if frame_bgr.ndim == 3 else frame_bgr
    small = cv2.resize(grey, (width, nh), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(small, (5, 5), 0)


def changed_share(a: np.ndarray, b: np.ndarray, pixel_delta: int = 15) -> float:
    """Share (0-1) of pixels whose grey level moved by more than ``pixel_delta``."""
    if a.shape != b.shape:
        return 1.0
    diff = cv2.absdiff(a, b)
    return float(np.count_nonzero(diff > pixel_delta)) / diff.size


@dataclass(frozen=True, slots=True)
class GateDecision:
    run: bool
    motion: float  # share of changed pixels against the last frame let through
    reason: str  # "first" | "motion" | "keyframe" | "still"


class MotionGate:
    """Let a frame through when enough of it changed, or when a keyframe is due."""

    def __init__(
        self,
        threshold: float = 0.003,
        keyframe_s: float = 2.0,
        pixel_delta: int = 15,
        width: int = SMALL_WIDTH,
    ) -> None:
        if not 0 <= threshold <= 1:
            raise ValueError("threshold is a share of pixels, 0-1")
        self.threshold = threshold
        self.keyframe_s = keyframe_s
        self.pixel_delta = pixel_delta
        self.width = width
        self._ref: np.ndarray | None = None
        self._ref_ts: float | None = None

    def reset(self) -> None:
        self._ref = None
        self._ref_ts = None

    def check(self, ts: float, frame_bgr: np.ndarray, commit: bool = True) -> GateDecision:
        small = small_grey(frame_bgr, self.width)
        return self.check_small(ts, small, commit)

    def check_small(self, ts: float, small: np.ndarray, commit: bool = True) -> GateDecision:
        """Decide on one frame. With ``commit=False`` a frame let through does not yet
        become the reference; call :meth:`commit` once it was really used (the hub
        commits only frames the pose model ran on)."""
        if self._ref is None or self._ref_ts is None:
            if commit:
                self.commit(ts, small)
            return GateDecision(True, 1.0, "first")
        motion = changed_share(self._ref, small, self.pixel_delta)
        if motion >= self.threshold:
            reason = "motion"
        elif ts - self._ref_ts >= self.keyframe_s or ts < self._ref_ts:
            # ts going backwards means a looping file or a camera clock reset.
            reason = "keyframe"
        else:
            return GateDecision(False, motion, "still")
        if commit:
            self.commit(ts, small)
        return GateDecision(True, motion, reason)

    def commit(self, ts: float, small: np.ndarray) -> None:
        self._ref = small
        self._ref_ts = ts
