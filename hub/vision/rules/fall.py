"""The fall rule on a camera: :class:`~hub.vision.fall.FallDetector` per tracked person,
its decisions turned into alarms with evidence, and the rotated "lying" look it asks
of the pose stage while someone may be going down or is down.

On every camera (the site file's ``rules.fall`` sets its timing for all of them); a
``no_fall`` zone (a bed, a bench) is where lying never raises it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

from hub.config import FallRule
from hub.domain import Alarm, AlarmState, Category
from hub.vision import evidence
from hub.vision.fall import FallDecision, FallDetector
from hub.vision.people import Person
from hub.vision.rules.base import BaseRule, Box, Camera, Frame, Needs, PoseDemand, RulePlugin
from hub.vision.tracker import Tracker, iou

log = logging.getLogger(__name__)


class FallVisionRule(BaseRule):
    name = "fall"
    needs = Needs(tracks=True, lying_pass=True)

    def __init__(self, camera: Camera, rule: FallRule | None = None,
                 lying_every_s: float = 2.0, lying_watch_every_s: float = 0.5,
                 **detector: Any) -> None:
        """``lying_watch_every_s``: a rotated look at most this often (frame time) while
        watching a possible fall (the tracker keeps a person for seconds, so a look
        every half second is as good as every frame), ``lying_every_s`` while a fall
        alarm is firing, and on every frame while a fall waits for its confirmation.
        ``detector``: keyword arguments for :class:`FallDetector` (the evaluation's
        variants, the camera's ``view``)."""
        self.camera = camera
        self.rule = rule or FallRule()
        self.lying_every_s = lying_every_s
        self.lying_watch_every_s = lying_watch_every_s
        self._params = detector
        self._size: tuple[int, int] | None = None
        self.detector = self._new_detector()

    def _new_detector(self) -> FallDetector:
        return FallDetector(self.rule, self.camera.zones_of("no_fall"), **self._params)

    def start(self, size: tuple[int, int], work_size: tuple[int, int]) -> None:
        if self._size is not None and size != self._size:
            self.detector = self._new_detector()
        self._size = size

    def pose_demand(self, ts: datetime) -> PoseDemand:
        fall = self.detector
        if fall.confirming():
            return PoseDemand(every_frame=True, lying_every_s=0.0)
        if fall.watching(ts):
            return PoseDemand(lying_every_s=self.lying_watch_every_s)
        if fall.firing:
            return PoseDemand(lying_every_s=self.lying_every_s)
        return PoseDemand()

    def lying_regions(self, ts: datetime, people: list[Person],
                      tracker: Tracker) -> list[Box] | None:
        """Where a look can find someone who matters: a person of concern (their
        regions), anyone while a fall alarm is firing (the whole frame keeps the person
        down in view), or someone the tracker saw on its last update who matches none
        of this frame's people (the fall rule learns of that only after this frame;
        the whole frame is turned). The watch lasts seconds after the last concern;
        with everyone still in view and no alarm, a look would turn the whole frame
        to find nobody who could raise one."""
        regions = self.detector.regions(ts)
        if regions or self.detector.firing or vanished(tracker, people):
            return regions
        return None

    def process(self, frame: Frame) -> list[Alarm]:
        return [self._alarm(frame, fd)
                for fd in self.detector.update(frame.ts, frame.tracks, frame.dropped, frame.size)]

    def _alarm(self, frame: Frame, fd: FallDecision) -> Alarm:
        cam = self.camera
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
                frame.image, cam.zone_drawing(), frame.people, highlight=fd.box,
                lines=[f"FALL: person down {fd.time_down_s:.0f}s ({fd.severity.name})",
                       f"torso {ev.get('torso_angle_deg')} deg, aspect {ev.get('box_aspect')}  "
                       f"{fd.ts:%Y-%m-%d %H:%M:%S}"],
            )
            image = cam.evidence.save(fd.ts, f"fall-{fd.key}", img)
        log.info("fall alarm", extra={"device": cam.camera_id, "track": fd.key,
                                      "state": fd.state.value, "severity": fd.severity.name})
        return Alarm(
            rule="fall", category=Category.FALL, severity=fd.severity, state=fd.state,
            dedup_key=f"fall:{cam.camera_id}:{fd.key}", ts=fd.ts,
            title=f"{cam.label} 有人跌倒" if fd.state is AlarmState.FIRING
            else f"{cam.label} 跌倒者已起身（需回访）",
            grid_code=cam.grid_code, device_id=cam.camera_id,
            confidence=round(float(fd.reading.kp_conf), 2) if fd.reading else 1.0,
            evidence=ev, evidence_image=image,
        )


def vanished(tracker: Tracker, people: list[Person]) -> bool:
    """Whether a track matched on the tracker's last update matches none of these
    people by the tracker's own tests (IoU, then centre distance)."""
    last = max((t.last_seen for t in tracker.tracks), default=None)
    for t in tracker.tracks:
        if t.last_seen != last:
            continue
        b = t.person.box
        size = max(b[2] - b[0], b[3] - b[1], 1.0)
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        if not any(iou(b, p.box) >= tracker.iou_min
                   or np.hypot(cx - (p.box[0] + p.box[2]) / 2,
                               cy - (p.box[1] + p.box[3]) / 2) / size <= tracker.dist_max
                   for p in people):
            return True
    return False


def _build(camera: Camera, settings: object, tuning: Mapping[str, Any]) -> FallVisionRule:
    return FallVisionRule(camera, **tuning)


PLUGIN = RulePlugin(name="fall", build=_build, order=20)
