"""Per-camera analysis: a frame and its people -> the camera's rules -> alarms.

One :class:`CameraAnalyzer` per camera, fed in frame order by the worker that owns the
camera. It does once, for all the camera's rules (:mod:`hub.vision.rules`), what they
share: the rotated "lying" look of the pose stage when a rule asks for it, the
tracker, the mask of where people are; then each rule gets the :class:`Frame` and
returns its alarms. Everything runs on the frame's own timestamp; the only I/O is the
rules' evidence JPEGs and empty-lane references, through the camera's stores.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hub.config import FallRule, ZoneConfig
from hub.domain import Alarm
from hub.vision.firelane import WORK_WIDTH, ReferenceStore, work_gray
from hub.vision.people import Person
from hub.vision.pose import MAX_ROIS, PoseEstimator, add_unseen
from hub.vision.rules import build_rules
from hub.vision.rules.base import Camera, Evidence, Frame, VisionRule
from hub.vision.tracker import Tracker
from hub.vision.zones import Zone

log = logging.getLogger(__name__)

PERSON_MARGIN = 0.15  # people's boxes grow by this share of their size before masking
# Below the hips a standing person is masked only around the legs: the keypoints are
# joint centres, and hips, trousers and shoes reach about 5 % of the height either
# side of them; LEG_MARGIN adds room for a coat, box jitter and the work image's blur.
# FOOT_MARGIN is the little the mask reaches below the box: the box ends at the soles,
# the most precisely placed edge of a standing person's box.
LEG_MARGIN = 0.1
FOOT_MARGIN = 0.04
KP_CONF = 0.3  # keypoints less sure than this are not used for the mask


def people_mask(people: list[Person], frame_size: tuple[int, int],
                work_size: tuple[int, int]) -> np.ndarray:
    """Bool mask (work size) covering every person (see :func:`person_outline`)."""
    fw, fh = frame_size
    ww, wh = work_size
    scale = np.array([ww / fw, wh / fh])
    m = np.zeros((wh, ww), np.uint8)
    for p in people:
        for poly in person_outline(p):
            pts = np.round(np.asarray(poly) * scale).astype(np.int32)
            cv2.fillConvexPoly(m, pts, 1)
    return m.astype(bool)


def person_outline(p: Person) -> list[np.ndarray]:
    """Convex polygons (frame pixels, float (N, 2)) that together cover the person.

    The box grown by PERSON_MARGIN on every side, except for a standing person whose
    hips and legs the pose model placed: below the hips only the legs are covered
    (the hull of the hip, knee and ankle points, and of hands hanging below the hips,
    each grown by LEG_MARGIN of the height), down to FOOT_MARGIN below the soles.
    Someone who sets a bag down at their feet and stays beside it covers their own
    legs, not the ground around them, nor the ground under an arm stretched out to
    the side: the bag is seen (and timed) while they stand there. A person lying,
    bent over or with legs unseen keeps the whole grown box."""
    x1, y1, x2, y2 = p.box
    w, h = x2 - x1, y2 - y1
    mx, my = PERSON_MARGIN * w, PERSON_MARGIN * h
    box = np.array([(x1 - mx, y1 - my), (x2 + mx, y1 - my), (x2 + mx, y2 + my),
                    (x1 - mx, y2 + my)], np.float32)
    k = np.asarray(p.keypoints, np.float32)
    if k.shape != (17, 3) or h <= w:
        return [box]
    hips, low = k[[11, 12]], k[[13, 14, 15, 16]]
    low = low[low[:, 2] >= KP_CONF]
    if (hips[:, 2] < KP_CONF).any() or len(low) < 2:
        return [box]
    hip_y = float(hips[:, 1].mean())
    # Upright: the legs hang from the hips to near the box's bottom.
    if float(low[:, 1].max()) - hip_y < 0.3 * h or hip_y > y2 - 0.25 * h:
        return [box]
    arms = k[[7, 8, 9, 10]]  # elbows and wrists
    arms = arms[(arms[:, 2] >= KP_CONF) & (arms[:, 1] > hip_y)]
    pts = np.concatenate([hips[:, :2], low[:, :2], arms[:, :2]])
    r = LEG_MARGIN * h
    grown = np.concatenate([pts + (dx, dy) for dx in (-r, r) for dy in (-r, r)])
    bottom = y2 + FOOT_MARGIN * h
    grown[:, 1] = np.clip(grown[:, 1], hip_y, bottom)
    feet = low[np.argsort(low[:, 1])[-2:], 0]  # the two lowest leg points
    grown = np.concatenate([grown, [(float(feet.min()) - r, bottom),
                                    (float(feet.max()) + r, bottom)]])
    grown[:, 0] = np.clip(grown[:, 0], x1 - mx, x2 + mx)
    upper = np.array([(x1 - mx, y1 - my), (x2 + mx, y1 - my), (x2 + mx, hip_y),
                      (x1 - mx, hip_y)], np.float32)
    return [upper, cv2.convexHull(grown.astype(np.float32)).reshape(-1, 2)]


class CameraAnalyzer:
    def __init__(
        self,
        camera_id: str,
        grid_code: str,
        zones: list[ZoneConfig],
        fall_rule: FallRule,
        evidence_dir: Path,
        reference_store: ReferenceStore | Path | None = None,
        pose: PoseEstimator | None = None,
        label: str = "",
        lying_every_s: float = 2.0,
        lying_watch_every_s: float = 0.5,
        fall_params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        tuning: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """The camera's rules are every rule of :mod:`hub.vision.rules` that finds
        something to watch on it; ``settings`` are the camera's ``rules:`` entries of
        the site file, validated (``CameraConfig.rules``).

        ``reference_store``: where empty-lane references live (a store or a folder);
        None keeps them in memory only (tests, evaluation).

        ``pose``: the estimator that produced ``people``; given it, the analyzer runs the
        extra rotated "lying" look itself when a rule asks for one (people the model
        misses when they lie on the floor).

        The built-in fall rule's parameters: ``fall_rule`` (the site file's
        ``rules.fall``), the pace of its lying looks (``lying_every_s``,
        ``lying_watch_every_s``: see :class:`~hub.vision.rules.fall.FallVisionRule`)
        and ``fall_params``, keyword arguments for
        :class:`~hub.vision.fall.FallDetector` (the camera's ``view``, the evaluation's
        variants). ``tuning``: keyword arguments for any rule, by name."""
        if isinstance(reference_store, Path):
            reference_store = ReferenceStore(reference_store)
        # Where the camera is, as people say it ("3号楼东侧消防通道"): alarm titles.
        self.camera = Camera(camera_id, label or camera_id, grid_code,
                             tuple(Zone(z) for z in zones),
                             Evidence(Path(evidence_dir), camera_id), reference_store)
        per_rule = {k: dict(v) for k, v in (tuning or {}).items()}
        per_rule["fall"] = {"rule": fall_rule, "lying_every_s": lying_every_s,
                            "lying_watch_every_s": lying_watch_every_s,
                            **dict(fall_params or {}), **per_rule.get("fall", {})}
        self.rules: list[VisionRule] = build_rules(self.camera, settings or {}, per_rule)
        self._tracks = any(r.needs.tracks for r in self.rules)
        self._mask = any(r.needs.people_mask for r in self.rules)
        self._lying = [r for r in self.rules if r.needs.lying_pass]
        self.pose = pose
        self._last_lying_pass: datetime | None = None
        self._lying_found: list[Person] = []  # what the last lying look found
        self.tracker = Tracker()
        self._frame_size: tuple[int, int] | None = None
        self._last_people: list[Person] = []
        self._last_ts: datetime | None = None

    @property
    def camera_id(self) -> str:
        return self.camera.camera_id

    def rule(self, name: str) -> VisionRule:
        """The camera's rule called ``name`` (KeyError when it has none)."""
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(f"camera {self.camera_id} has no rule {name!r}")

    def rebaseline(self, ts: datetime) -> None:
        """Operator action: the current view is the new normal (the empty fire lane)."""
        for r in self.rules:
            r.rebaseline(ts)

    # -- what the pose stage should do --------------------------------------------

    def needs_every_frame(self, ts: datetime) -> bool:
        """Whether a rule's decision waits on fresh sightings (a fall being confirmed):
        the pose stage should look at every frame now."""
        return any(r.pose_demand(ts).every_frame for r in self.rules)

    def wants_lying_pass(self, ts: datetime) -> bool:
        """Whether the pose stage should also look for people lying on this frame (and
        so run on it even when nothing moved)."""
        every = [d.lying_every_s for r in self._lying
                 if (d := r.pose_demand(ts)).lying_every_s is not None]
        if not every:
            return False
        pace = min(every)
        if pace <= 0:
            return True  # every frame while a decision waits: no delay to confirm
        last = self._last_lying_pass
        # 10 ms of slack: frame timestamps jitter around the nominal rate.
        return last is None or (ts - last).total_seconds() >= pace - 0.01

    def needs_still_frames(self, ts: datetime) -> bool:
        """Whether the pose model should run on this frame even if nothing moved: a
        lying look is due (someone may be going down or is down)."""
        return self.wants_lying_pass(ts)

    def _look_regions(self, ts: datetime,
                      people: list[Person]) -> list[tuple[float, float, float, float]] | None:
        """The regions for a due lying look (the first ``MAX_ROIS`` of what the rules
        ask for), or None when no rule expects it to find anybody who matters."""
        asked = [x for r in self._lying if (x := r.lying_regions(ts, people, self.tracker))
                 is not None]
        if not asked:
            return None
        return [b for regions in asked for b in regions][:MAX_ROIS]

    def _lying_wanted(self, ts: datetime) -> bool:
        return any(r.pose_demand(ts).lying_every_s is not None for r in self._lying)

    # -- per frame ----------------------------------------------------------------

    def process(self, ts: datetime, frame_bgr: np.ndarray,
                people: list[Person] | None) -> list[Alarm]:
        if frame_bgr is None or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 \
                or frame_bgr.size == 0:
            raise ValueError("frame must be an HxWx3 BGR image")
        if self._last_ts is not None and ts < self._last_ts:
            log.warning("frame older than the last one dropped", extra={"device": self.camera_id})
            return []
        self._last_ts = ts
        h, w = frame_bgr.shape[:2]
        gray = work_gray(frame_bgr, WORK_WIDTH)
        work_size = (gray.shape[1], gray.shape[0])
        if self._frame_size != (w, h):
            if self._frame_size is not None:
                log.warning("camera changed frame size; restarting its models",
                            extra={"device": self.camera_id, "size": f"{w}x{h}"})
                self.tracker = Tracker()
            self._frame_size = (w, h)
            for r in self.rules:
                r.start((w, h), work_size)
        posed = people is not None
        seen = people  # what the tracker gets: fresh sightings
        if people is None:
            seen = people = self._last_people
        elif self.pose is not None and self._lying:
            if self.wants_lying_pass(ts):
                # A look is due; without anyone it could find who matters it costs
                # nothing and finds nobody.
                regions = self._look_regions(ts, people)
                self._lying_found = ([] if regions is None
                                     else self.pose.detect_rotated(frame_bgr, regions))
                self._last_lying_pass = ts
                seen = people = add_unseen(people, self._lying_found, self.pose.iou)
            elif self._lying_found and self._lying_wanted(ts):
                # Between looks, someone found lying by the last one is still masked
                # out of the fire lane (a person on the floor is never an obstruction);
                # the fall rule only counts fresh sightings.
                people = add_unseen(people, self._lying_found, self.pose.iou)
            else:
                self._lying_found = []
        self._last_people = people
        tracks, dropped = self.tracker.update(ts, seen) if self._tracks else ([], [])
        pmask = people_mask(people, (w, h), work_size) if self._mask else None
        frame = Frame(ts, frame_bgr, (w, h), gray, work_size, people, posed,
                      tracks, dropped, pmask)
        alarms: list[Alarm] = []
        for r in self.rules:
            alarms.extend(r.process(frame))
        return alarms
