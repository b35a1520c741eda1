"""Fall rule: a fast change from upright to lying, confirmed, per tracked person.

Pure: it takes tracked people with their timestamps and returns decisions; no clock,
no I/O. A lying posture alone is not a fall (someone resting in bed lies still for
hours): the track must have been seen upright shortly before it was first seen
lying (``transition_s``), and the lying must last ``confirm_s``. The alarm fires at
confirmation; severity rises once the person has been down ``severity_raise_s``;
standing up again (upright for ``clear_s``) clears it. Lying inside a ``no_fall`` zone
(bed, bench) never fires.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from hub.config import FallRule
from hub.domain import AlarmState, Severity
from hub.vision.posture import Posture, PostureReading, classify
from hub.vision.tracker import Track, iou
from hub.vision.zones import Zone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FallDecision:
    key: str  # stable id of the fall episode (track id at the time it fired)
    state: AlarmState
    severity: Severity
    ts: datetime
    box: tuple[float, float, float, float]
    reading: PostureReading | None
    time_down_s: float
    reason: str


@dataclass
class _Person:
    last_upright: datetime | None = None
    upright_since: datetime | None = None
    lying_since: datetime | None = None
    lying_frames: int = 0
    fast: bool = False  # this lying episode began right after being upright
    excluded: bool = False  # this lying episode is in a no_fall zone
    firing: bool = False
    severity: Severity = Severity.MAJOR
    key: str = ""
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    history: list[tuple[datetime, PostureReading]] = field(default_factory=list)


@dataclass
class _Orphan:
    state: _Person
    lost_at: datetime


class FallDetector:
    def __init__(
        self,
        rule: FallRule,
        no_fall_zones: list[Zone] | None = None,
        transition_s: float = 2.5,
        clear_s: float = 1.5,
        orphan_s: float = 30.0,
    ) -> None:
        self.rule = rule
        self.no_fall = list(no_fall_zones or [])
        self.transition_s = transition_s
        self.clear_s = clear_s
        self.orphan_s = orphan_s
        self._people: dict[int, _Person] = {}
        self._orphans: list[_Orphan] = []

    def update(self, ts: datetime, seen: list[Track], dropped: list[Track],
               frame_size: tuple[int, int]) -> list[FallDecision]:
        """``frame_size`` is (width, height) of the frame the boxes are in."""
        out: list[FallDecision] = []
        for t in dropped:
            st = self._people.pop(t.track_id, None)
            if st is not None and st.firing:
                # Not seen for a while but was down: keep the episode for a re-appearance.
                self._orphans.append(_Orphan(st, ts))
        for t in seen:
            st = self._people.get(t.track_id)
            if st is None:
                st = self._adopt(t) or _Person(key=str(t.track_id))
                self._people[t.track_id] = st
            out.extend(self._step(ts, t, st, frame_size))
        for o in list(self._orphans):
            if (ts - o.lost_at).total_seconds() > self.orphan_s:
                self._orphans.remove(o)
                out.append(self._decision(ts, o.state, AlarmState.CLEARED, None,
                                          "person no longer seen"))
        return out

    def _adopt(self, t: Track) -> _Person | None:
        for o in self._orphans:
            b = o.state.box
            size = max(b[2] - b[0], b[3] - b[1], 1.0)
            cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            tx, ty = (t.person.box[0] + t.person.box[2]) / 2, (t.person.box[1] + t.person.box[3]) / 2
            if iou(b, t.person.box) > 0.1 or ((cx - tx) ** 2 + (cy - ty) ** 2) ** 0.5 < size:
                self._orphans.remove(o)
                return o.state
        return None

    def _in_no_fall(self, r: PostureReading, box: tuple[float, float, float, float],
                    size: tuple[int, int]) -> bool:
        cx = (box[0] + box[2]) / 2
        cy = r.hip_y if r.hip_y is not None else (box[1] + box[3]) / 2
        return any(z.contains_px(cx, cy, size[0], size[1]) for z in self.no_fall)

    def _step(self, ts: datetime, t: Track, st: _Person,
              size: tuple[int, int]) -> list[FallDecision]:
        r = classify(t.person)
        st.box = t.person.box
        st.history.append((ts, r))
        st.history = [(h_ts, h) for h_ts, h in st.history
                      if (ts - h_ts).total_seconds() <= self.transition_s + self.rule.confirm_s + 5]
        out: list[FallDecision] = []
        if r.posture is Posture.UPRIGHT:
            st.last_upright = ts
            st.upright_since = st.upright_since or ts
            if st.lying_since is not None and not st.firing:
                st.lying_since = None  # a moment of "lying" that did not last
            if st.firing and (ts - st.upright_since).total_seconds() >= self.clear_s:
                st.firing = False
                st.lying_since = None
                out.append(self._decision(ts, st, AlarmState.CLEARED, r, "got up"))
            return out
        if r.posture is Posture.LYING:
            st.upright_since = None
            if st.lying_since is None:
                st.lying_since = ts
                st.lying_frames = 0
                st.fast = (st.last_upright is not None and
                           (ts - st.last_upright).total_seconds() <= self.transition_s)
                st.excluded = False
            st.lying_frames += 1
            if self._in_no_fall(r, t.person.box, size):
                st.excluded = True
        # UNKNOWN neither starts nor ends an episode: pose flickers while people move.
        if st.lying_since is None:
            return out
        down = (ts - st.lying_since).total_seconds()
        if (not st.firing and st.fast and not st.excluded and r.posture is Posture.LYING
                and st.lying_frames >= 2 and down >= self.rule.confirm_s):
            st.firing = True
            st.severity = Severity.MAJOR
            st.key = str(t.track_id)
            out.append(self._decision(ts, st, AlarmState.FIRING, r, "fast change to lying"))
        elif st.firing and st.severity < Severity.CRITICAL and down >= self.rule.severity_raise_s:
            st.severity = Severity.CRITICAL
            out.append(self._decision(ts, st, AlarmState.FIRING, r, "still down"))
        return out

    def _decision(self, ts: datetime, st: _Person, state: AlarmState,
                  r: PostureReading | None, reason: str) -> FallDecision:
        down = (ts - st.lying_since).total_seconds() if st.lying_since else 0.0
        return FallDecision(st.key, state, st.severity, ts, st.box, r, down, reason)
