"""Posture of one person from keypoints and box: upright, lying or unknown.

General rules, not fitted to any clip: the torso (mid-shoulders -> mid-hips) is near
vertical for someone standing or sitting and near horizontal for someone lying; when
the torso cannot be seen or is foreshortened (a camera looking straight down), the
box aspect and the legs decide, and if they disagree the posture is unknown.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from hub.vision.people import (
    L_ANKLE,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    NOSE,
    R_ANKLE,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
    Person,
)

KP_CONF = 0.35  # keypoints below this confidence are treated as unseen
LYING_TORSO_DEG = 60.0  # torso at least this far from vertical: lying
UPRIGHT_TORSO_DEG = 35.0
LYING_ASPECT = 1.3  # box width / height
UPRIGHT_ASPECT = 0.85
BOX_ONLY_SCORE = 0.4  # detections less sure than this say nothing without a torso


class Posture(enum.StrEnum):
    UPRIGHT = "upright"  # standing, walking or sitting
    LYING = "lying"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class PostureReading:
    posture: Posture
    torso_deg: float | None  # angle of the torso from vertical, 0 = upright
    aspect: float  # box width / height
    hip_y: float | None  # image y of mid-hips (pixels), None if unseen
    body_h: float  # box height in pixels
    kp_conf: float  # mean confidence of the torso keypoints
    legs_deg: float | None

    def as_evidence(self) -> dict[str, object]:
        return {
            "posture": self.posture.value,
            "torso_angle_deg": None if self.torso_deg is None else round(self.torso_deg, 1),
            "box_aspect": round(self.aspect, 2),
            "keypoint_conf": round(self.kp_conf, 2),
        }


def _mid(k: np.ndarray, a: int, b: int) -> tuple[float, float] | None:
    pts = [k[i, :2] for i in (a, b) if k[i, 2] >= KP_CONF]
    if not pts:
        return None
    m = np.mean(pts, axis=0)
    return float(m[0]), float(m[1])


Up = tuple[float, float]
IMAGE_UP: Up = (0.0, -1.0)


def _angle_from_vertical(top: tuple[float, float], bottom: tuple[float, float],
                         up: Up = IMAGE_UP) -> float:
    """Angle of the line bottom -> top from the local vertical ``up``, 0-90 degrees."""
    dx, dy = top[0] - bottom[0], top[1] - bottom[1]
    along = dx * up[0] + dy * up[1]
    across = dx * up[1] - dy * up[0]
    return math.degrees(math.atan2(abs(across), abs(along)))


def classify(p: Person, up: Up = IMAGE_UP) -> PostureReading:
    """``up``: the unit direction (image coordinates, y down) that is vertical in the
    world where the person is; the image's vertical for a level camera (see
    :mod:`hub.vision.view` for cameras looking down)."""
    k = p.keypoints
    w, h = max(p.width, 1.0), max(p.height, 1.0)
    aspect = w / h
    sh = _mid(k, L_SHOULDER, R_SHOULDER)
    hip = _mid(k, L_HIP, R_HIP)
    torso_conf = float(np.mean(k[[L_SHOULDER, R_SHOULDER, L_HIP, R_HIP], 2]))
    torso_deg: float | None = None
    if sh is not None and hip is not None:
        torso_len = math.hypot(sh[0] - hip[0], sh[1] - hip[1])
        shoulder_w = 0.0
        if k[L_SHOULDER, 2] >= KP_CONF and k[R_SHOULDER, 2] >= KP_CONF:
            shoulder_w = float(np.hypot(*(k[L_SHOULDER, :2] - k[R_SHOULDER, :2])))
        # A torso shorter than the shoulders are wide is seen end-on (camera above or
        # person lying along the line of sight): its angle means nothing.
        if torso_len >= max(0.5 * shoulder_w, 0.08 * max(w, h)):
            torso_deg = _angle_from_vertical(sh, hip, up)
    knee = _mid(k, L_KNEE, R_KNEE)
    ankle = _mid(k, L_ANKLE, R_ANKLE)
    legs_deg = None
    if hip is not None and (ankle or knee) is not None:
        foot = ankle or knee
        assert foot is not None
        if math.hypot(foot[0] - hip[0], foot[1] - hip[1]) >= 0.15 * max(w, h):
            legs_deg = _angle_from_vertical(hip, foot, up)
    head_low = False
    if k[NOSE, 2] >= KP_CONF and hip is not None:
        # Head no higher than the hips, measured along the local vertical.
        rise = (k[NOSE, 0] - hip[0]) * up[0] + (k[NOSE, 1] - hip[1]) * up[1]
        head_low = rise <= 0.1 * h

    posture = Posture.UNKNOWN
    if torso_deg is not None:
        if torso_deg >= LYING_TORSO_DEG or (torso_deg >= LYING_TORSO_DEG - 10
                                            and aspect >= LYING_ASPECT - 0.1):
            # The body must agree: someone bent over (or doubled up on a chair) has a
            # flat torso but a tall box and legs straight down; someone lying does not.
            legs_down = legs_deg is not None and legs_deg < 45
            posture = Posture.LYING if (aspect >= 0.9 or (head_low and not legs_down)) \
                else Posture.UNKNOWN
        elif torso_deg <= UPRIGHT_TORSO_DEG and not head_low:
            posture = Posture.UPRIGHT if aspect < 1.6 else Posture.UNKNOWN
    elif p.score >= BOX_ONLY_SCORE:
        # No torso to go by: only a confident detection's box and legs can tell.
        if aspect >= LYING_ASPECT and (legs_deg is None or legs_deg >= LYING_TORSO_DEG):
            posture = Posture.LYING
        elif aspect <= UPRIGHT_ASPECT and (legs_deg is None or legs_deg <= UPRIGHT_TORSO_DEG):
            posture = Posture.UPRIGHT
    return PostureReading(posture, torso_deg, aspect, None if hip is None else hip[1], h,
                          torso_conf, legs_deg)
