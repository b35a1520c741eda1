"""People as the vision rules see them: a box, a score and 17 COCO keypoints.

The core types of the visual rules. Nothing here knows which model found the people:
the pose backends (:mod:`hub.vision.pose`, :mod:`hub.vision.backends`) produce
:class:`Person` objects, and the pure rules (posture, tracking, falls, crowding) take
them, so a rule imports no backend and a recording replays without one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# COCO keypoint order used by every YOLO pose model.
NOSE, L_EYE, R_EYE, L_EAR, R_EAR = 0, 1, 2, 3, 4
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 5, 6, 7, 8, 9, 10
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 11, 12, 13, 14, 15, 16
KEYPOINTS = 17

SKELETON: tuple[tuple[int, int], ...] = (
    (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12),
    (11, 13), (13, 15), (12, 14), (14, 16), (0, 1), (0, 2), (1, 3), (2, 4),
)


@dataclass
class Person:
    """One detected person: box in pixels (x1, y1, x2, y2), score, keypoints (17, 3)."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray = field(repr=False)  # (17, 3): x, y (pixels), confidence

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]
