"""Per-camera analysis: a frame and its people -> fire-lane and fall alarms with evidence.

One :class:`CameraAnalyzer` per camera, fed in frame order by the worker that owns the
camera. Everything runs on the frame's own timestamp; the only I/O is writing
evidence JPEGs and reading/writing the empty-lane references through the store.
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
from hub.domain import Alarm, AlarmState, Category, Severity
from hub.vision import evidence
from hub.vision.fall import FallDecision, FallDetector
from hub.vision.firelane import (
    WORK_WIDTH,
    ObstructionDecision,
    ObstructionDetector,
    ReferenceStore,
    work_gray,
)
from hub.vision.people import Person
from hub.vision.pose import MAX_ROIS, PoseEstimator, add_unseen
from hub.vision.tracker import Tracker, iou
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
    ) -> None:
        """``reference_store``: where empty-lane references live (a store or a folder);
        None keeps them in memory only (tests, evaluation).

        ``pose``: the estimator that produced ``people``; given it, the analyzer runs the
        extra rotated "lying" pass itself while someone may be falling or is down
        (people the model misses when they lie on the floor): on every frame while a
        fall waits for its confirmation, at most every
        ``lying_watch_every_s`` of frame time while watching (the tracker keeps a
        person for seconds, so a look every half second is as good as every frame),
        and every ``lying_every_s`` while a fall alarm is already firing.

        ``fall_params``: keyword arguments for :class:`FallDetector` (evaluation of rule
        variants; the hub runs the defaults)."""
        self.camera_id = camera_id
        # Where the camera is, as people say it ("3号楼东侧消防通道"): alarm titles.
        self.label = label or camera_id
        self.grid_code = grid_code
        self.zones = [Zone(z) for z in zones]
        self.fall_rule = fall_rule
        self.evidence_dir = Path(evidence_dir)
        if isinstance(reference_store, Path):
            reference_store = ReferenceStore(reference_store)
        self.store = reference_store
        self.pose = pose
        self.lying_every_s = lying_every_s
        self.lying_watch_every_s = lying_watch_every_s
        self._last_lying_pass: datetime | None = None
        self._lying_found: list[Person] = []  # what the last lying pass found
        self.fall_params = dict(fall_params or {})
        self.tracker = Tracker()
        self.fall = self._new_fall()
        self.lanes: dict[str, ObstructionDetector] = {}
        self._frame_size: tuple[int, int] | None = None
        self._work_size: tuple[int, int] | None = None
        self._last_people: list[Person] = []
        self._last_gray: np.ndarray | None = None
        self._last_mask: np.ndarray | None = None
        self._last_ts: datetime | None = None

    # -- set-up -------------------------------------------------------------------

    def _new_fall(self) -> FallDetector:
        return FallDetector(self.fall_rule, [z for z in self.zones if z.kind == "no_fall"],
                            **self.fall_params)

    def _start(self, frame_size: tuple[int, int], gray: np.ndarray) -> None:
        self._frame_size = frame_size
        self._work_size = (gray.shape[1], gray.shape[0])
        self.lanes = {}
        for z in self.zones:
            if z.kind != "fire_lane":
                continue
            det = ObstructionDetector(z.config, self._work_size)
            ref = self.store.load(self.camera_id, z.name, self._work_size) if self.store else None
            if ref is not None and ref.image.shape == det.mask.shape:
                det.set_reference(ref)
                log.info("empty-lane reference loaded", extra={"device": self.camera_id,
                                                               "zone": z.name})
            elif ref is not None:
                # The zone's polygon changed, or a reference from before the detector
                # watched a band around the zone: the first frame is taken instead.
                log.warning("stored reference does not fit the zone; recapturing",
                            extra={"device": self.camera_id, "zone": z.name})
            self.lanes[z.name] = det

    def rebaseline(self, ts: datetime) -> None:
        """Operator action: the current view is the new empty lane for every zone."""
        if self._last_gray is None or self._last_mask is None:
            return
        for name, det in self.lanes.items():
            ref = det.capture_reference(self._last_gray, self._last_mask)
            self._save(name, ref, ts)
        log.info("fire-lane reference renewed by operator", extra={"device": self.camera_id})

    def _save(self, zone: str, ref: object, ts: datetime) -> None:
        if self.store is not None and self._work_size is not None:
            try:
                self.store.save(self.camera_id, zone, ref, ts, self._work_size)  # type: ignore[arg-type]
            except OSError as e:
                log.error("reference not saved", extra={"device": self.camera_id, "zone": zone,
                                                        "error": str(e)})

    # -- per frame ----------------------------------------------------------------

    def confirming(self) -> bool:
        """Whether a fall waits for its confirmation: the pose stage should look at
        every frame now, the alarm fires on fresh sightings."""
        return self.fall.confirming()

    def wants_lying_pass(self, ts: datetime) -> bool:
        """Whether the pose stage should also look for people lying on this frame."""
        if self.confirming():
            return True  # every frame until the alarm fires: no delay to confirm
        if self.fall.watching(ts):
            every = self.lying_watch_every_s
        elif self.fall.firing:
            every = self.lying_every_s
        else:
            return False
        last = self._last_lying_pass
        # 10 ms of slack: frame timestamps jitter around the nominal rate.
        return last is None or (ts - last).total_seconds() >= every - 0.01

    def _look_regions(self, ts: datetime,
                      people: list[Person]) -> list[tuple[float, float, float, float]] | None:
        """The regions for a due rotated look, or None when it can find nobody who
        matters.

        It can when there is a person of concern (the first ``MAX_ROIS`` of their
        regions), a fall alarm is firing (the whole frame keeps the person down in
        view), or someone the tracker saw on its last update matches none of this
        frame's people (the fall rule learns of that only after this frame; the whole
        frame is turned). The watch lasts seconds after the last concern; with everyone
        still in view and no alarm, a look would turn the whole frame to find nobody
        who could raise one."""
        regions = self.fall.regions(ts)
        if regions or self.fall.firing or self._vanished(people):
            return regions[:MAX_ROIS]
        return None

    def _vanished(self, people: list[Person]) -> bool:
        """Whether a track matched on the tracker's last update matches none of these
        people by the tracker's own tests (IoU, then centre distance)."""
        tr = self.tracker
        last = max((t.last_seen for t in tr.tracks), default=None)
        for t in tr.tracks:
            if t.last_seen != last:
                continue
            b = t.person.box
            size = max(b[2] - b[0], b[3] - b[1], 1.0)
            cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            if not any(iou(b, p.box) >= tr.iou_min
                       or np.hypot(cx - (p.box[0] + p.box[2]) / 2,
                                   cy - (p.box[1] + p.box[3]) / 2) / size <= tr.dist_max
                       for p in people):
                return True
        return False

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
        if self._frame_size != (w, h):
            if self._frame_size is not None:
                log.warning("camera changed frame size; restarting its models",
                            extra={"device": self.camera_id, "size": f"{w}x{h}"})
                self.tracker = Tracker()
                self.fall = self._new_fall()
            self._start((w, h), gray)
        seen = people  # what the tracker and the fall rule get
        if people is None:
            seen = people = self._last_people
        elif self.pose is not None:
            if self.wants_lying_pass(ts):
                # A look is due; without anyone it could find who matters it costs
                # nothing and finds nobody.
                regions = self._look_regions(ts, people)
                self._lying_found = ([] if regions is None
                                     else self.pose.detect_rotated(frame_bgr, regions))
                self._last_lying_pass = ts
                seen = people = add_unseen(people, self._lying_found, self.pose.iou)
            elif self._lying_found and (self.fall.watching(ts) or self.fall.firing):
                # Between looks, someone found lying by the last one is still masked
                # out of the fire lane (a person on the floor is never an obstruction);
                # the fall rule only counts fresh sightings.
                people = add_unseen(people, self._lying_found, self.pose.iou)
            else:
                self._lying_found = []
        self._last_people = people
        assert self._work_size is not None
        pmask = people_mask(people, (w, h), self._work_size)
        self._last_gray, self._last_mask = gray, pmask

        alarms: list[Alarm] = []
        for name, det in self.lanes.items():
            if not det.has_reference:
                ref = det.capture_reference(gray, pmask)
                self._save(name, ref, ts)
                continue
            d = det.update(ts, gray, pmask)
            if d is not None:
                alarms.append(self._lane_alarm(ts, frame_bgr, people, det, d))

        tracks, dropped = self.tracker.update(ts, seen)
        for fd in self.fall.update(ts, tracks, dropped, (w, h)):
            alarms.append(self._fall_alarm(frame_bgr, people, fd))
        return alarms

    # -- alarms -------------------------------------------------------------------

    def _zone_draw(self) -> list[tuple[str, str, list[tuple[float, float]]]]:
        return [(z.name, z.kind, list(z.config.polygon)) for z in self.zones]

    def _lane_alarm(self, ts: datetime, frame: np.ndarray, people: list[Person],
                    det: ObstructionDetector, d: ObstructionDecision) -> Alarm:
        z = det.zone
        ev: dict[str, object] = {
            "share_of_zone": round(d.share, 3),
            "threshold": z.threshold,
            "dwell_s": round(d.dwell_s, 1),
            "dwell_required_s": z.dwell_s,
            "light_gain": round(det.gain, 2),
            "reason": d.reason,
        }
        image = None
        if d.state is AlarmState.FIRING:
            assert self._work_size is not None
            img = evidence.draw(
                frame, self._zone_draw(), people,
                [(det.rect, det.static_map, self._work_size)],
                lines=[f"FIRE LANE {z.name}: {d.share:.0%} of zone blocked",
                       f"dwell {d.dwell_s:.0f}s >= {z.dwell_s:.0f}s  {ts:%Y-%m-%d %H:%M:%S}"],
            )
            image = evidence.write(self.evidence_dir, self.camera_id, ts, f"firelane-{z.name}", img)
        log.info("fire-lane alarm", extra={"device": self.camera_id, "zone": z.name,
                                           "state": d.state.value, "share": round(d.share, 3)})
        return Alarm(
            rule="firelane", category=Category.FIRE_LANE, severity=Severity.MAJOR, state=d.state,
            dedup_key=f"firelane:{self.camera_id}:{z.name}", ts=ts,
            title=f"{self.label} 消防通道占用" if d.state is AlarmState.FIRING
            else f"{self.label} 消防通道已恢复畅通",
            grid_code=self.grid_code, device_id=self.camera_id, zone=z.name,
            confidence=float(min(1.0, d.share / z.threshold))
            if d.state is AlarmState.FIRING else 1.0,
            evidence=ev, evidence_image=image,
        )

    def _fall_alarm(self, frame: np.ndarray, people: list[Person], fd: FallDecision) -> Alarm:
        ev: dict[str, object] = {
            "time_down_s": round(fd.time_down_s, 1),
            "reason": fd.reason,
            "box": [round(v, 1) for v in fd.box],
        }
        if fd.reading is not None:
            ev.update(fd.reading.as_evidence())
        image = None
        if fd.state is AlarmState.FIRING:
            img = evidence.draw(
                frame, self._zone_draw(), people, highlight=fd.box,
                lines=[f"FALL: person down {fd.time_down_s:.0f}s ({fd.severity.name})",
                       f"torso {ev.get('torso_angle_deg')} deg, aspect {ev.get('box_aspect')}  "
                       f"{fd.ts:%Y-%m-%d %H:%M:%S}"],
            )
            image = evidence.write(self.evidence_dir, self.camera_id, fd.ts, f"fall-{fd.key}", img)
        log.info("fall alarm", extra={"device": self.camera_id, "track": fd.key,
                                      "state": fd.state.value, "severity": fd.severity.name})
        return Alarm(
            rule="fall", category=Category.FALL, severity=fd.severity, state=fd.state,
            dedup_key=f"fall:{self.camera_id}:{fd.key}", ts=fd.ts,
            title=f"{self.label} 有人跌倒" if fd.state is AlarmState.FIRING
            else f"{self.label} 跌倒者已起身（需回访）",
            grid_code=self.grid_code, device_id=self.camera_id,
            confidence=round(float(fd.reading.kp_conf), 2) if fd.reading else 1.0,
            evidence=ev, evidence_image=image,
        )
