"""The fire-lane rule on a camera: one :class:`~hub.vision.firelane.ObstructionDetector`
per ``fire_lane`` zone, its empty-lane references loaded from and saved to the camera's
reference store, its decisions turned into alarms with evidence.

On every camera with a ``fire_lane`` zone; the zone's ``dwell_s``, ``clear_s`` and
``threshold`` set it (docs/configuration.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

from hub.domain import Alarm, AlarmState, Category, Severity
from hub.vision import evidence
from hub.vision.firelane import ObstructionDecision, ObstructionDetector, Reference
from hub.vision.rules.base import BaseRule, Camera, Frame, Needs, RulePlugin

log = logging.getLogger(__name__)


class FireLaneRule(BaseRule):
    name = "firelane"
    needs = Needs(people_mask=True)  # people are never an obstruction

    def __init__(self, camera: Camera) -> None:
        self.camera = camera
        self.lanes: dict[str, ObstructionDetector] = {}
        self._work_size: tuple[int, int] | None = None
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # grey, people mask

    def start(self, size: tuple[int, int], work_size: tuple[int, int]) -> None:
        cam = self.camera
        self._work_size = work_size
        self._last = None
        self.lanes = {}
        for z in cam.zones_of("fire_lane"):
            det = ObstructionDetector(z.config, work_size)
            store = cam.references
            ref = store.load(cam.camera_id, z.name, work_size) if store else None
            if ref is not None and ref.image.shape == det.mask.shape:
                det.set_reference(ref)
                log.info("empty-lane reference loaded", extra={"device": cam.camera_id,
                                                               "zone": z.name})
            elif ref is not None:
                # The zone's polygon changed, or a reference from before the detector
                # watched a band around the zone: the first frame is taken instead.
                log.warning("stored reference does not fit the zone; recapturing",
                            extra={"device": cam.camera_id, "zone": z.name})
            self.lanes[z.name] = det

    def process(self, frame: Frame) -> list[Alarm]:
        assert frame.people_mask is not None
        self._last = (frame.gray, frame.people_mask)
        alarms: list[Alarm] = []
        for name, det in self.lanes.items():
            if not det.has_reference:
                ref = det.capture_reference(frame.gray, frame.people_mask)
                self._save(name, ref, frame.ts)
                continue
            d = det.update(frame.ts, frame.gray, frame.people_mask)
            if d is not None:
                alarms.append(self._alarm(frame, det, d))
        return alarms

    def rebaseline(self, ts: datetime) -> None:
        """The operator's word: the current view is the new empty lane for every zone."""
        if self._last is None:
            return
        gray, mask = self._last
        for name, det in self.lanes.items():
            self._save(name, det.capture_reference(gray, mask), ts)
        log.info("fire-lane reference renewed by operator",
                 extra={"device": self.camera.camera_id})

    def _save(self, zone: str, ref: Reference, ts: datetime) -> None:
        store = self.camera.references
        if store is not None and self._work_size is not None:
            try:
                store.save(self.camera.camera_id, zone, ref, ts, self._work_size)
            except OSError as e:
                log.error("reference not saved", extra={"device": self.camera.camera_id,
                                                        "zone": zone, "error": str(e)})

    def _alarm(self, frame: Frame, det: ObstructionDetector, d: ObstructionDecision) -> Alarm:
        cam, z, ts = self.camera, det.zone, frame.ts
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
            img = evidence.draw(
                frame.image, cam.zone_drawing(), frame.people,
                [(det.rect, det.static_map, frame.work_size)],
                lines=[f"FIRE LANE {z.name}: {d.share:.0%} of zone blocked",
                       f"dwell {d.dwell_s:.0f}s >= {z.dwell_s:.0f}s  {ts:%Y-%m-%d %H:%M:%S}"],
            )
            image = cam.evidence.save(ts, f"firelane-{z.name}", img)
        log.info("fire-lane alarm", extra={"device": cam.camera_id, "zone": z.name,
                                           "state": d.state.value, "share": round(d.share, 3)})
        return Alarm(
            rule="firelane", category=Category.FIRE_LANE, severity=Severity.MAJOR, state=d.state,
            dedup_key=f"firelane:{cam.camera_id}:{z.name}", ts=ts,
            title=f"{cam.label} 消防通道占用" if d.state is AlarmState.FIRING
            else f"{cam.label} 消防通道已恢复畅通",
            grid_code=cam.grid_code, device_id=cam.camera_id, zone=z.name,
            confidence=float(min(1.0, d.share / z.threshold))
            if d.state is AlarmState.FIRING else 1.0,
            evidence=ev, evidence_image=image,
        )


def _build(camera: Camera, settings: object, tuning: Mapping[str, Any]) -> FireLaneRule | None:
    return FireLaneRule(camera) if camera.zones_of("fire_lane") else None


PLUGIN = RulePlugin(name="firelane", build=_build, order=10)
