"""Which way is "up" at each point of a camera's picture.

A camera level with the people it watches sees their bodies along the image's
vertical. A camera looking down (on a wall high up, in a stairwell, over a street)
does not: vertical lines of the world meet at a vanishing point below the picture, so
an upright walker near the side of the frame leans towards that point, and a rule that
measures the torso against the image's vertical takes them for lying. Posture is
therefore measured against the *local* up, the direction from that vanishing point
through the person.

The vanishing point is learnt from the people the camera sees (most people in view
are standing or walking): each confident, straight, whole-body sighting gives the line
of its body axis; the point that best meets those lines (least squares in homogeneous
coordinates, which also covers a point at infinity, the level camera) is re-fitted as
sightings come in, with the worst-fitting lines (people lying, bending) trimmed. Until
enough people from enough places have been seen, up is the image's vertical, which is
what a level camera has; a site can also say ``view: level`` for a camera it knows to
be level. Pure: sightings in, directions out.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from hub.vision.people import (
    L_ANKLE,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    R_ANKLE,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
    Person,
)

SURE = 0.5  # keypoint confidence and detection score a line needs
MAX_LEAN_DEG = 50.0  # body axes leaning more than this from the image vertical are no evidence
STRAIGHT_DEG = 20.0  # torso and legs this close to one line: standing, not sitting or bent
TRIM_DEG = 12.0  # after a first fit, lines further than this from the point are dropped
MIN_LINES = 40
MIN_PLACES = 8  # distinct places (cells of an 8x8 grid) the lines come from
MAX_FIT_DEG = 8.0  # the fit is used only if the kept lines meet it this well (median)
REFIT_EVERY = 8
KEEP = 400


@dataclass(frozen=True)
class _Line:
    bottom: tuple[float, float]  # normalised coordinates (origin at the frame centre)
    top: tuple[float, float]
    cell: int


def _mid(k: np.ndarray, a: int, b: int) -> tuple[float, float] | None:
    if k[a, 2] < SURE or k[b, 2] < SURE:
        return None
    return float((k[a, 0] + k[b, 0]) / 2), float((k[a, 1] + k[b, 1]) / 2)


def _deg(ax: float, ay: float, bx: float, by: float) -> float:
    """Unsigned angle between two directions, degrees."""
    na, nb = math.hypot(ax, ay), math.hypot(bx, by)
    if na == 0 or nb == 0:
        return 180.0
    c = max(-1.0, min(1.0, (ax * bx + ay * by) / (na * nb)))
    return math.degrees(math.acos(c))


class CameraView:
    def __init__(self, mode: str = "auto") -> None:
        if mode not in ("auto", "level"):
            raise ValueError(f"camera view must be 'auto' or 'level', not {mode!r}")
        self.mode = mode
        self._lines: deque[_Line] = deque(maxlen=KEEP)
        self._since_fit = 0
        self._size: tuple[int, int] | None = None
        self.vp: np.ndarray | None = None  # homogeneous, normalised coordinates
        self._sign = 1.0  # +1: up points away from the vanishing point

    # -- learning -----------------------------------------------------------------

    def observe(self, people: list[Person], frame_size: tuple[int, int]) -> None:
        if self.mode == "level":
            return
        if self._size != frame_size:
            self._lines.clear()
            self.vp = None
            self._size = frame_size
        for p in people:
            line = self._line(p, frame_size)
            if line is not None:
                self._lines.append(line)
                self._since_fit += 1
        if self._since_fit >= REFIT_EVERY:
            self._since_fit = 0
            self._fit()

    def _line(self, p: Person, size: tuple[int, int]) -> _Line | None:
        if p.score < SURE:
            return None
        k = p.keypoints
        sh, hip = _mid(k, L_SHOULDER, R_SHOULDER), _mid(k, L_HIP, R_HIP)
        foot = _mid(k, L_ANKLE, R_ANKLE) or _mid(k, L_KNEE, R_KNEE)
        if sh is None or hip is None or foot is None:
            return None
        torso = (sh[0] - hip[0], sh[1] - hip[1])
        legs = (hip[0] - foot[0], hip[1] - foot[1])
        if _deg(*torso, *legs) > STRAIGHT_DEG:
            return None  # sitting, bending, mid-stride with a knee up: not a clean axis
        axis = (sh[0] - foot[0], sh[1] - foot[1])
        shoulder_w = math.hypot(k[L_SHOULDER, 0] - k[R_SHOULDER, 0],
                                k[L_SHOULDER, 1] - k[R_SHOULDER, 1])
        if math.hypot(*axis) < 1.5 * shoulder_w or _deg(*axis, 0.0, -1.0) > MAX_LEAN_DEG:
            return None
        w, h = size
        s = float(max(w, h))

        def norm(pt: tuple[float, float]) -> tuple[float, float]:
            return (pt[0] - w / 2) / s, (pt[1] - h / 2) / s

        cx = min(7, max(0, int(8 * (hip[0] / max(w, 1)))))
        cy = min(7, max(0, int(8 * (hip[1] / max(h, 1)))))
        return _Line(norm(foot), norm(sh), cy * 8 + cx)

    def _fit(self) -> None:
        lines = list(self._lines)
        if len(lines) < MIN_LINES or len({ln.cell for ln in lines}) < MIN_PLACES:
            self.vp = None
            return
        vp = _meet(lines)
        kept = [ln for ln in lines if _residual(ln, vp) <= TRIM_DEG]
        if len(kept) < MIN_LINES or len({ln.cell for ln in kept}) < MIN_PLACES:
            self.vp = None
            return
        vp = _meet(kept)
        res = sorted(_residual(ln, vp) for ln in kept)
        if res[len(res) // 2] > MAX_FIT_DEG:
            self.vp = None
            return
        self.vp = vp
        # Up points from the feet to the head: which way that is relative to the point.
        votes = 0.0
        for ln in kept:
            d = (ln.top[0] - ln.bottom[0], ln.top[1] - ln.bottom[1])
            u = self._away(ln.bottom)
            votes += d[0] * u[0] + d[1] * u[1]
        self._sign = 1.0 if votes >= 0 else -1.0

    def _away(self, pt: tuple[float, float]) -> tuple[float, float]:
        """Unit direction from the vanishing point through ``pt`` (normalised coords)."""
        assert self.vp is not None
        x, y, w = (float(v) for v in self.vp)
        if abs(w) < 1e-9:
            dx, dy = -x, -y  # a point at infinity in direction (x, y): up is opposite
        else:
            dx, dy = pt[0] - x / w, pt[1] - y / w
        n = math.hypot(dx, dy) or 1.0
        return dx / n, dy / n

    # -- use ----------------------------------------------------------------------

    @property
    def learnt(self) -> bool:
        return self.vp is not None

    def up_at(self, x: float, y: float) -> tuple[float, float]:
        """Unit vector, image coordinates (y down), pointing up for a person at (x, y)."""
        if self.vp is None or self._size is None:
            return 0.0, -1.0
        w, h = self._size
        s = float(max(w, h))
        ux, uy = self._away(((x - w / 2) / s, (y - h / 2) / s))
        return self._sign * ux, self._sign * uy


def _equations(lines: list[_Line]) -> np.ndarray:
    """Each line's homogeneous equation, scaled so that it gives distances."""
    b = np.array([[ln.bottom[0], ln.bottom[1], 1.0] for ln in lines])
    t = np.array([[ln.top[0], ln.top[1], 1.0] for ln in lines])
    eq = np.cross(b, t)
    n = np.hypot(eq[:, 0], eq[:, 1])
    return eq[n > 0] / n[n > 0, None]


def _meet(lines: list[_Line]) -> np.ndarray:
    """The point nearest to all lines: the eigenvector of the smallest eigenvalue of
    the lines' scatter matrix (least squares with the point at unit length)."""
    eq = _equations(lines)
    _, vecs = np.linalg.eigh(eq.T @ eq)
    return vecs[:, 0]


def _residual(ln: _Line, vp: np.ndarray) -> float:
    """Angle between a line and the direction from its middle to the point, degrees."""
    mx, my = (ln.bottom[0] + ln.top[0]) / 2, (ln.bottom[1] + ln.top[1]) / 2
    x, y, w = (float(v) for v in vp)
    tx, ty = (x, y) if abs(w) < 1e-9 else (x / w - mx, y / w - my)
    d = (ln.top[0] - ln.bottom[0], ln.top[1] - ln.bottom[1])
    a = _deg(d[0], d[1], tx, ty)
    return min(a, 180.0 - a)
