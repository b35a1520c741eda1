"""The camera's local vertical, learnt from people seen by a simulated pinhole camera."""

from __future__ import annotations

import math

import numpy as np

from hub.vision.people import Person
from hub.vision.posture import Posture, classify
from hub.vision.view import CameraView

W, H = 1000, 750
F = 500.0


def project(p: tuple[float, float, float], tilt_deg: float, height: float) -> tuple[float, float]:
    """Pinhole camera at (0, 0, height) looking along +y, tilted down by ``tilt_deg``."""
    t = math.radians(tilt_deg)
    fwd = np.array([0.0, math.cos(t), -math.sin(t)])
    down = np.array([0.0, -math.sin(t), -math.cos(t)])
    rel = np.array([p[0], p[1], p[2] - height])
    z = rel @ fwd
    return F * rel[0] / z + W / 2, F * (rel @ down) / z + H / 2


def standing(x: float, y: float, tilt: float, height: float = 3.0) -> Person:
    """A 1.7 m person standing at ground point (x, y), as the camera sees them."""
    k = np.zeros((17, 3), np.float32)
    parts = {0: (0, 1.6), 5: (-0.2, 1.45), 6: (0.2, 1.45), 11: (-0.12, 0.9), 12: (0.12, 0.9),
             13: (-0.12, 0.5), 14: (0.12, 0.5), 15: (-0.12, 0.05), 16: (0.12, 0.05)}
    for i, (dx, z) in parts.items():
        u, v = project((x + dx, y, z), tilt, height)
        k[i] = (u, v, 0.9)
    pts = k[list(parts), :2]
    (x1, y1), (x2, y2) = pts.min(axis=0), pts.max(axis=0)
    pad = 0.1 * (y2 - y1)
    return Person((float(x1 - pad), float(y1 - pad), float(x2 + pad), float(y2 + pad)), 0.9, k)


def crowd(tilt: float) -> list[list[Person]]:
    rng = np.random.default_rng(3)
    return [[standing(float(rng.uniform(-4, 4)), float(rng.uniform(3, 9)), tilt)
             for _ in range(4)] for _ in range(12)]


def test_a_camera_looking_down_learns_that_walkers_at_the_side_are_upright() -> None:
    view = CameraView()
    for people in crowd(tilt=50):
        view.observe(people, (W, H))
    assert view.learnt
    side = standing(-4.0, 3.5, tilt=50)  # near the left edge: leans in the picture
    cx, cy = (side.box[0] + side.box[2]) / 2, (side.box[1] + side.box[3]) / 2
    lean = classify(side).torso_deg
    assert lean is not None and lean > 20  # against the image vertical: far from upright
    local = classify(side, view.up_at(cx, cy))
    assert local.torso_deg is not None and local.torso_deg < 5
    assert local.posture is Posture.UPRIGHT


def test_a_level_camera_learns_the_image_vertical() -> None:
    view = CameraView()
    for people in crowd(tilt=0):
        view.observe(people, (W, H))
    assert view.learnt
    ux, uy = view.up_at(100, 600)
    assert abs(ux) < 0.05 and uy < -0.99


def test_too_few_people_or_places_keep_the_image_vertical() -> None:
    view = CameraView()
    one = standing(-3.0, 4.0, tilt=50)
    for _ in range(100):  # one person standing still: one place, no evidence of a geometry
        view.observe([one], (W, H))
    assert not view.learnt
    assert view.up_at(100, 100) == (0.0, -1.0)


def test_people_lying_among_walkers_do_not_move_the_learnt_vertical() -> None:
    view = CameraView()
    for i, people in enumerate(crowd(tilt=50)):
        if i % 3 == 0:  # a third of the frames also show someone lying across the view
            k = np.zeros((17, 3), np.float32)
            flat = {5: (300, 500), 6: (300, 520), 11: (420, 505), 12: (420, 525),
                    15: (560, 510), 16: (560, 530), 13: (490, 510), 14: (490, 528)}
            for j, (u, v) in flat.items():
                k[j] = (u, v, 0.9)
            people = people + [Person((280, 480, 580, 545), 0.9, k)]
        view.observe(people, (W, H))
    side = standing(4.0, 3.5, tilt=50)
    ux, uy = view.up_at((side.box[0] + side.box[2]) / 2, (side.box[1] + side.box[3]) / 2)
    assert classify(side, (ux, uy)).posture is Posture.UPRIGHT


def test_level_mode_never_learns() -> None:
    view = CameraView("level")
    for people in crowd(tilt=50):
        view.observe(people, (W, H))
    assert not view.learnt and view.up_at(10, 10) == (0.0, -1.0)
