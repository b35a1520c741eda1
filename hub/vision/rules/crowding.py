"""Crowding in a zone (人员聚集): more than ``max_people`` people inside a zone's polygon
for ``dwell_s``; it clears once the zone has held ``max_people`` or fewer for
``clear_s``.

People are the pose model's; a person is in the zone when their feet are (the middle
of the ankles the model is sure of, else the bottom of their box): the ground they
stand on, not the air their head is in front of. A dip of at most ``grace_s`` (people
hidden behind each other for a moment) does not restart the dwell. Everything runs on
the frames' own timestamps.

Site file, per camera (the zone is one of the camera's ``zones``, usually of kind
``watch``)::

    rules:
      crowding:
        zones:
        - {zone: plaza, max_people: 5, dwell_s: 60, clear_s: 10}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.categories import CategoryInfo, Labels
from hub.domain import Alarm, AlarmState, Severity
from hub.vision import evidence
from hub.vision.people import KEYPOINTS, L_ANKLE, R_ANKLE, Person
from hub.vision.rules.base import BaseRule, Camera, Frame, RulePlugin
from hub.vision.zones import Zone

if TYPE_CHECKING:
    from hub.config import ZoneConfig

log = logging.getLogger(__name__)

CATEGORY = "crowding"
CATEGORIES = (
    CategoryInfo(
        code=CATEGORY, case_code="0302", name_zh="人员聚集", name_en="Crowding",
        severity=Severity.MAJOR, accept_s=600, handle_s=3600, icon="👥", colour="#7c3aed",
        evidence_labels={
            "count": Labels(zh="区域内人数", en="People in the zone"),
            "threshold": Labels(zh="人数上限", en="Most people allowed"),
            "peak_count": Labels(zh="最多人数", en="Most people seen"),
            "dwell_s": Labels(zh="聚集时长(秒)", en="Crowded for (s)"),
            "dwell_required_s": Labels(zh="报警时长(秒)", en="Alarm after (s)"),
            "clear_s": Labels(zh="解除时长(秒)", en="Clears after (s)"),
            "since": Labels(zh="聚集开始", en="Crowded since"),
        }),
)
ANKLE_CONF = 0.3  # ankles less sure than this are not where the feet are


class CrowdingZone(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    zone: str  # one of the camera's zones
    max_people: int = Field(ge=1, le=1000)  # N: more than this many is a crowd
    dwell_s: float = Field(default=60, ge=1, le=3600)
    clear_s: float = Field(default=10, ge=0, le=3600)
    grace_s: float = Field(default=2, ge=0, le=60)
    min_score: float = Field(default=0.4, ge=0, le=1)  # less sure detections are not counted


class CrowdingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    zones: list[CrowdingZone] = Field(min_length=1, max_length=32)

    @field_validator("zones")
    @classmethod
    def _once_each(cls, v: list[CrowdingZone]) -> list[CrowdingZone]:
        names = [z.zone for z in v]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"zone {dup!r} is watched twice")
        return v


def _check(settings: CrowdingSettings, zones: Sequence[ZoneConfig]) -> None:
    known = [z.name for z in zones]
    for i, cz in enumerate(settings.zones):
        if cz.zone not in known:
            raise ValueError(f"zones.{i}.zone: no zone {cz.zone!r} on this camera "
                             f"(its zones: {', '.join(known) or 'none'})")


# -- the pure core ---------------------------------------------------------------


@dataclass(frozen=True)
class CrowdingDecision:
    state: AlarmState
    ts: datetime
    since: datetime  # when the zone first held more than max_people (the episode)
    count: int  # people in the zone on this frame
    peak: int  # the most people in the zone in this episode
    dwell_s: float  # time since ``since``


class CrowdingCounter:
    """Hysteresis on one zone's head count: fires after ``dwell_s`` above
    ``max_people`` (dips of at most ``grace_s`` do not restart the dwell), clears
    after ``clear_s`` at or below it. Pure: counts and timestamps in, decisions out."""

    def __init__(self, max_people: int, dwell_s: float, clear_s: float, grace_s: float) -> None:
        self.max_people = max_people
        self.dwell_s = dwell_s
        self.clear_s = clear_s
        self.grace_s = grace_s
        self.firing = False
        self._since: datetime | None = None  # the episode's start
        self._last_over: datetime | None = None
        self._clear_since: datetime | None = None
        self._peak = 0

    def update(self, ts: datetime, count: int) -> CrowdingDecision | None:
        over = count > self.max_people
        if over:
            if self._since is None:
                self._since, self._peak = ts, 0
            self._last_over = ts
            self._clear_since = None
            self._peak = max(self._peak, count)
        if not self.firing:
            if self._since is None:
                return None
            if not over:
                assert self._last_over is not None
                if (ts - self._last_over).total_seconds() > self.grace_s:
                    self._since = None  # the crowd went: the next one times afresh
                return None
            if (ts - self._since).total_seconds() >= self.dwell_s:
                self.firing = True
                return self._decision(AlarmState.FIRING, ts, count)
            return None
        if over:
            return None
        self._clear_since = self._clear_since or ts
        if (ts - self._clear_since).total_seconds() >= self.clear_s:
            d = self._decision(AlarmState.CLEARED, ts, count)
            self.firing = False
            self._since = self._last_over = self._clear_since = None
            return d
        return None

    def _decision(self, state: AlarmState, ts: datetime, count: int) -> CrowdingDecision:
        assert self._since is not None
        return CrowdingDecision(state, ts, self._since, count, self._peak,
                                (ts - self._since).total_seconds())


def feet(p: Person) -> tuple[float, float]:
    """Where the person stands (pixels): the middle of the ankles the pose model is
    sure of, else the middle of the box's bottom edge."""
    k = np.asarray(p.keypoints)
    if k.shape == (KEYPOINTS, 3):
        ankles = k[[L_ANKLE, R_ANKLE]]
        ankles = ankles[ankles[:, 2] >= ANKLE_CONF]
        if len(ankles):
            return float(ankles[:, 0].mean()), float(ankles[:, 1].mean())
    x1, _, x2, y2 = p.box
    return (x1 + x2) / 2, float(y2)


def in_zone(people: Sequence[Person], zone: Zone, size: tuple[int, int],
            min_score: float) -> list[Person]:
    """The people whose feet are inside the zone (on its edge counts)."""
    w, h = size
    return [p for p in people if p.score >= min_score and zone.contains_px(*feet(p), w, h)]


# -- the rule --------------------------------------------------------------------


class CrowdingRule(BaseRule):
    name = "crowding"

    def __init__(self, camera: Camera, settings: CrowdingSettings) -> None:
        self.camera = camera
        self.watched: list[tuple[CrowdingZone, Zone, CrowdingCounter]] = []
        for cz in settings.zones:
            zone = camera.zone(cz.zone)
            if zone is None:  # parse_settings checked it against the site file's zones
                raise ValueError(f"camera {camera.camera_id} has no zone {cz.zone!r}")
            self.watched.append((cz, zone, CrowdingCounter(cz.max_people, cz.dwell_s,
                                                           cz.clear_s, cz.grace_s)))

    def process(self, frame: Frame) -> list[Alarm]:
        alarms: list[Alarm] = []
        for cz, zone, counter in self.watched:
            inside = in_zone(frame.people, zone, frame.size, cz.min_score)
            d = counter.update(frame.ts, len(inside))
            if d is not None:
                alarms.append(self._alarm(frame, cz, inside, d))
        return alarms

    def _alarm(self, frame: Frame, cz: CrowdingZone, inside: list[Person],
               d: CrowdingDecision) -> Alarm:
        cam = self.camera
        ev: dict[str, object] = {
            "count": d.count,
            "threshold": cz.max_people,
            "peak_count": d.peak,
            "dwell_s": round(d.dwell_s, 1),
            "dwell_required_s": cz.dwell_s,
            "clear_s": cz.clear_s,
            "since": d.since.isoformat(),
        }
        firing = d.state is AlarmState.FIRING
        image = None
        if firing:
            image = cam.evidence.save(d.ts, f"crowding-{cz.zone}", self._draw(frame, cz, inside, d))
        log.info("crowding alarm", extra={"device": cam.camera_id, "zone": cz.zone,
                                          "state": d.state.value, "count": d.count,
                                          "threshold": cz.max_people})
        return Alarm(
            rule="crowding", category=CATEGORY, severity=CATEGORIES[0].severity, state=d.state,
            dedup_key=f"crowding:{cam.camera_id}:{cz.zone}:{d.since:%Y%m%dT%H%M%S}", ts=d.ts,
            title=(f"{cam.label} 人员聚集（{d.count}人）" if firing
                   else f"{cam.label} 人员聚集已散去"),
            grid_code=cam.grid_code, device_id=cam.camera_id, zone=cz.zone,
            confidence=round(float(np.mean([p.score for p in inside])), 2)
            if firing and inside else 1.0,
            evidence=ev, evidence_image=image,
        )

    def _draw(self, frame: Frame, cz: CrowdingZone, inside: list[Person],
              d: CrowdingDecision) -> np.ndarray:
        boxes = np.array([p.box for p in inside]) if inside else None
        crowd = None if boxes is None else (float(boxes[:, 0].min()), float(boxes[:, 1].min()),
                                            float(boxes[:, 2].max()), float(boxes[:, 3].max()))
        img = evidence.draw(
            frame.image, self.camera.zone_drawing(), frame.people, highlight=crowd,
            lines=[f"CROWDING {cz.zone}: {d.count} people > {cz.max_people}",
                   f"for {d.dwell_s:.0f}s >= {cz.dwell_s:.0f}s  {d.ts:%Y-%m-%d %H:%M:%S}"],
        )
        for p in inside:  # where each counted person stands
            x, y = feet(p)
            cv2.circle(img, (int(x), int(y)), 5, (0, 0, 255), -1, cv2.LINE_AA)
        return img


def _build(camera: Camera, settings: CrowdingSettings | None,
           tuning: Mapping[str, Any]) -> CrowdingRule | None:
    return CrowdingRule(camera, settings) if settings is not None else None


PLUGIN = RulePlugin(name="crowding", build=_build, settings=CrowdingSettings, check=_check,
                    order=30)
