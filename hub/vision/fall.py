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
from datetime import datetime, timedelta

from hub.config import FallRule
from hub.domain import AlarmState, Severity
from hub.vision.people import Person
from hub.vision.posture import KP_CONF, Posture, PostureReading, classify
from hub.vision.tracker import Track, iou
from hub.vision.view import CameraView
from hub.vision.zones import Zone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FallDecision:
    key: str  # the fall episode: track id and when the person went down
    state: AlarmState
    severity: Severity
    ts: datetime
    box: tuple[float, float, float, float]
    reading: PostureReading | None
    time_down_s: float
    reason: str


@dataclass
class _Person:
    ref: tuple[datetime, float, float] | None = None  # last upright: ts, top y, box height
    uprights: list[tuple[datetime, float, float]] = field(default_factory=list)  # recent ones
    episode_ref: tuple[datetime, float, float] | None = None  # upright look before going down
    upright_since: datetime | None = None
    lying_since: datetime | None = None
    lying_frames: int = 0
    cue: str = ""  # "posture" (torso/box say lying) or "drop" (head came down fast)
    fast: bool = False  # this episode began right after being upright
    excluded: bool = False  # this episode is in a no_fall zone
    firing: bool = False
    severity: Severity = Severity.MAJOR
    key: str = ""  # the firing episode's id (see _episode_key)
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    last_seen: datetime | None = None
    sightings: int = 0
    missed: int = 0  # frames in a row without a sighting
    at_edge: bool = False  # last seen leaving the picture sideways or at the top
    unseen_s: float = 0.0  # time out of sight (occluded) since the last upright sighting
    down_last: bool = False  # the last sighting was itself down (lying or the full drop)
    not_down: int = 0  # sightings in this episode that were not themselves down
    came_down: bool = False  # a down sighting of this episode was lower or shorter
    # recent sightings: ts, top y, whether the person was out of sight just before it
    trail: list[tuple[datetime, float, bool]] = field(default_factory=list)


def top_y(p: Person) -> float:
    """Image y of the top of the body: highest confident head/shoulder point, else box top."""
    k = p.keypoints[:7]
    ys = k[k[:, 2] >= KP_CONF, 1]
    return float(ys.min()) if len(ys) else float(p.box[1])


def _episode_key(track_id: int, st: _Person) -> str:
    """A fall episode's id: the track and when the person went down. Track ids start
    again at 1 after a restart or a change of frame size; with the time in the key a
    new fall never merges into an older fall's open incident."""
    assert st.lying_since is not None
    return f"{track_id}-{st.lying_since:%Y%m%dT%H%M%S}"


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
        drop_share: float = 0.45,
        stay_share: float = 0.3,
        low_height: float = 0.75,
        drop_extra_s: float = 1.0,
        watch_s: float = 4.0,
        sure_score: float = 0.5,
        lost_s: float = 5.0,
        unseen_confirm_frames: int = 3,
        view: str = "auto",
        descent_s: float = 1.5,
        near_share: float = 0.15,
        fall_speed: float = 0.8,
        topple_s: float = 1.0,
        timing_step_s: float = 0.5,
    ) -> None:
        self.rule = rule
        self.no_fall = list(no_fall_zones or [])
        self.transition_s = transition_s
        self.clear_s = clear_s
        self.orphan_s = orphan_s
        self.drop_share = drop_share  # top of body this far down (share of height) = down
        self.stay_share = stay_share  # and once down, still down while at least this low
        self.low_height = low_height  # and the box at most this share of its upright height
        self.drop_extra_s = drop_extra_s
        self.watch_s = watch_s
        self.sure_score = sure_score
        # Time out of sight (hidden behind something, not leaving at a side) between the
        # last upright sighting and the first one down does not count against
        # transition_s, up to this much: a fall behind a bush is still a fast change.
        self.lost_s = lost_s
        # A fast change to lying seen on this many frames, then lost from view before
        # confirm_s is up (the model often loses people on the floor), is confirmed
        # when confirm_s is up unless the person is seen otherwise by then.
        self.unseen_confirm_frames = unseen_confirm_frames
        # A fall takes the body from (about) its full height to the floor in a second or
        # so; lowering oneself - kneeling, sitting and then lying down, getting onto the
        # floor - takes longer. The time from the last sighting with the top of the body
        # within ``near_share`` of its height when upright to the first one down must
        # be at most ``descent_s`` (time hidden from view is credited as for
        # ``transition_s``).
        self.descent_s = descent_s
        self.near_share = near_share
        # A fall is fast in one of two ways, seen: the top of the body comes down at
        # ``fall_speed`` standing heights a second or more between two sightings, or
        # the body topples - the first lying sighting comes at most ``topple_s`` after
        # the last one near full height. Kneeling, crouching or sitting down and then
        # lying down is neither: the head comes down slower, and the body spends a
        # while low but not lying first. A descent partly out of sight, or seen on
        # sightings more than ``timing_step_s`` apart, is given the benefit of the
        # doubt (its speed is unknown).
        self.fall_speed = fall_speed
        self.topple_s = topple_s
        self.timing_step_s = timing_step_s
        # Posture is measured against the camera's local vertical, learnt from the
        # people it sees ("auto") or the image's vertical ("level").
        self.view = CameraView(view)
        self._watch_until: datetime | None = None
        self._people: dict[int, _Person] = {}
        self._orphans: list[_Orphan] = []

    def update(self, ts: datetime, seen: list[Track], dropped: list[Track],
               frame_size: tuple[int, int]) -> list[FallDecision]:
        """``frame_size`` is (width, height) of the frame the boxes are in."""
        out: list[FallDecision] = []
        self.view.observe([t.person for t in seen], frame_size)
        for t in dropped:
            st = self._people.pop(t.track_id, None)
            if st is not None and st.firing:
                # Not seen for a while but was down: keep the episode for a re-appearance.
                self._orphans.append(_Orphan(st, ts))
        for t in seen:
            st = self._people.get(t.track_id)
            if st is None:
                st = self._adopt(t) or _Person()
                self._people[t.track_id] = st
            out.extend(self._step(ts, t, st, frame_size))
        seen_ids = {t.track_id for t in seen}
        for tid, st in self._people.items():
            if tid not in seen_ids and self._confirmed_unseen(ts, st):
                st.firing = True
                st.key = _episode_key(tid, st)
                st.severity = Severity.MAJOR
                out.append(self._decision(ts, st, AlarmState.FIRING, None,
                                          "fast change to lying, lost from view while down"))
        self._update_watch(ts, seen_ids)
        for o in list(self._orphans):
            if (ts - o.lost_at).total_seconds() > self.orphan_s:
                self._orphans.remove(o)
                out.append(self._decision(ts, o.state, AlarmState.CLEARED, None,
                                          "person no longer seen"))
        return out

    def _confirmed_unseen(self, ts: datetime, st: _Person) -> bool:
        """A fast change to lying (flat torso or wide box, not the drop-only cue) seen
        on ``unseen_confirm_frames`` frames, every sighting since down, and the person
        not seen at all since the last one: once ``confirm_s`` is up they are taken as
        still down. The tracker keeps the track only a few seconds, so this is about a
        person the model loses on the floor, not one who walked off."""
        return (st.lying_since is not None and not st.firing and st.fast and not st.excluded
                and st.cue == "posture" and st.down_last and st.not_down == 0
                and st.came_down and st.lying_frames >= self.unseen_confirm_frames
                and (ts - st.lying_since).total_seconds() >= self.rule.confirm_s)

    def _adopt(self, t: Track) -> _Person | None:
        for o in self._orphans:
            b = o.state.box
            size = max(b[2] - b[0], b[3] - b[1], 1.0)
            cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            tb = t.person.box
            tx, ty = (tb[0] + tb[2]) / 2, (tb[1] + tb[3]) / 2
            if iou(b, t.person.box) > 0.1 or ((cx - tx) ** 2 + (cy - ty) ** 2) ** 0.5 < size:
                self._orphans.remove(o)
                return o.state
        return None

    def _in_no_fall(self, r: PostureReading, box: tuple[float, float, float, float],
                    size: tuple[int, int]) -> bool:
        cx = (box[0] + box[2]) / 2
        cy = r.hip_y if r.hip_y is not None else (box[1] + box[3]) / 2
        return any(z.contains_px(cx, cy, size[0], size[1]) for z in self.no_fall)

    def _low(self, st: _Person, p: Person) -> tuple[float, bool]:
        """How far the top of the body is below where it was when upright, as a share
        of the upright height (0 when unknown), and whether the person is still about
        as tall as then (walking towards the camera brings the head down too)."""
        ref = st.episode_ref or self._upright_ref(st)
        if ref is None:
            return 0.0, True
        _, ref_top, ref_h = ref
        return (top_y(p) - ref_top) / max(ref_h, 1.0), p.height > self.low_height * ref_h

    def _fast(self, ts: datetime, st: _Person, lying: bool) -> bool:
        """Whether going down at ``ts`` is a fall's fast change: upright shortly
        before, from near full height quickly, and seen coming down as a fall does."""
        if st.ref is None or st.episode_ref is None:
            return False
        hidden = min(st.unseen_s, self.lost_s)
        return ((ts - st.ref[0]).total_seconds() - hidden <= self.transition_s
                and self._descent_s(ts, st) - hidden <= self.descent_s
                and self._quick(ts, st, lying, hidden))

    def _descent_s(self, ts: datetime, st: _Person) -> float:
        """Seconds from the last sighting near full height (the top of the body less
        than ``near_share`` of the upright height below the episode's reference) to
        ``ts``; the reference sighting itself is near full height."""
        if st.episode_ref is None:
            return float("inf")
        return (ts - self._last_near(ts, st)).total_seconds()

    def _last_near(self, ts: datetime, st: _Person) -> datetime:
        """The last sighting before ``ts`` with the top of the body near full height
        (the episode's reference sighting at the latest)."""
        assert st.episode_ref is not None
        ref_ts, ref_top, ref_h = st.episode_ref
        near = [t for t, top, _ in st.trail
                if t < ts and (top - ref_top) / max(ref_h, 1.0) <= self.near_share]
        return max([ref_ts, *near])

    def _quick(self, ts: datetime, st: _Person, lying: bool, hidden: float) -> bool:
        """Whether the descent up to ``ts`` was a fall's: fast enough where it was seen
        (``fall_speed``), or a topple to lying (``topple_s``), or partly unseen."""
        if self.fall_speed <= 0:
            return True
        start = self._last_near(ts, st)
        if lying and (ts - start).total_seconds() - hidden <= self.topple_s:
            return True
        assert st.episode_ref is not None
        ref_h = max(st.episode_ref[2], 1.0)
        seen = [x for x in st.trail if start <= x[0] <= ts]
        pairs = list(zip(seen, seen[1:], strict=False))
        # Sightings far apart (missed frames, a slow camera) cannot time a fall that
        # takes well under a second: its speed is unknown, as when hidden.
        if any(b[2] or (b[0] - a[0]).total_seconds() > self.timing_step_s for a, b in pairs):
            return True
        return any((b[1] - a[1]) / ref_h >= self.fall_speed * (b[0] - a[0]).total_seconds()
                   for a, b in pairs)

    def _upright_ref(self, st: _Person) -> tuple[datetime, float, float] | None:
        """The highest the head was while upright lately (the start of a descent), else
        the last upright sighting."""
        if st.uprights:
            return min(st.uprights, key=lambda u: u[1])
        return st.ref

    def _step(self, ts: datetime, t: Track, st: _Person,
              size: tuple[int, int]) -> list[FallDecision]:
        p = t.person
        r = classify(p, self.view.up_at((p.box[0] + p.box[2]) / 2, (p.box[1] + p.box[3]) / 2))
        if st.missed > 0 and st.last_seen is not None and not st.at_edge:
            # Back after ``missed`` frames out of sight: all of the gap but one frame's
            # worth was spent unseen (hidden, since the person did not leave at a side).
            gap = (ts - st.last_seen).total_seconds()
            st.unseen_s += gap * st.missed / (st.missed + 1)
        st.box = p.box
        st.last_seen = ts
        st.sightings += 1
        horizon = self.transition_s + self.lost_s
        st.trail = [x for x in st.trail if (ts - x[0]).total_seconds() <= horizon]
        st.trail.append((ts, top_y(p), st.missed > 0 and not st.at_edge))
        # Leaving the picture sideways or through the top (a far door, walking away):
        # the box is against that edge and mostly past it. Not the bottom: someone
        # close to the camera who falls comes down towards it.
        cx = (p.box[0] + p.box[2]) / 2
        cy = (p.box[1] + p.box[3]) / 2
        st.at_edge = ((p.box[0] <= 0.02 * size[0] and cx <= 0.1 * size[0]) or
                      (p.box[2] >= 0.98 * size[0] and cx >= 0.9 * size[0]) or
                      (p.box[1] <= 0.02 * size[1] and cy <= 0.15 * size[1]))
        out: list[FallDecision] = []
        low, tall = self._low(st, p)
        lying = r.posture is Posture.LYING
        # A tall, narrow box with a vertical torso is someone standing, whatever the box
        # history says (two people merged into one box, then parting, looks like a drop).
        standing = r.aspect < 0.55 and r.torso_deg is not None and r.torso_deg < 20
        dropped = low >= self.drop_share and not tall and not standing
        in_episode = st.lying_since is not None
        # Once down, still down while the top of the body stays low, or somewhat low
        # with the body much shorter than standing (sitting on the ground after the
        # fall: torso upright, head a little lower, legs out in front).
        still_down = low >= self.stay_share or (low >= self.stay_share / 2 and not tall)
        if in_episode:
            up_again = not still_down or (standing and tall)
        else:
            # Standing (tall narrow box, vertical torso) is upright whatever the head
            # height says: someone walking down steps or away from the camera gets
            # lower and smaller in the picture without going down.
            up_again = low < self.drop_share / 2 or tall or standing
        if r.posture is Posture.UPRIGHT and up_again:
            if p.score >= self.sure_score:
                # Only a sure sighting says "was upright": a fall needs a real before.
                st.ref = (ts, top_y(p), p.height)
                st.unseen_s = 0.0
                st.uprights = [u for u in st.uprights
                               if (ts - u[0]).total_seconds() <= self.transition_s] + [st.ref]
            st.upright_since = st.upright_since or ts
            if st.lying_since is not None and not st.firing:
                st.lying_since = None  # a moment of "down" that did not last
                st.episode_ref = None
            if st.firing and (ts - st.upright_since).total_seconds() >= self.clear_s:
                st.firing = False
                st.lying_since = None
                st.episode_ref = None
                out.append(self._decision(ts, st, AlarmState.CLEARED, r, "got up"))
            return out
        # Still well below standing height keeps an episode going and confirms it, but
        # only frames that are themselves down (lying, or the full drop) are counted.
        down_now = lying or dropped
        st.down_last = down_now
        if in_episode and still_down and not (standing and tall):
            dropped = True
        if lying or dropped:
            st.upright_since = None
            if st.lying_since is None:
                st.lying_since = ts
                st.lying_frames = 0
                st.not_down = 0
                st.came_down = False
                st.episode_ref = self._upright_ref(st)
                st.fast = self._fast(ts, st, lying)
                st.excluded = False
                st.cue = "posture" if lying else "drop"
            elif lying and st.cue != "posture" and not st.fast:
                # Down by a drop too slow for a fall, then lying: a topple after all
                # if the lying came soon enough after leaving full height.
                st.fast = self._fast(ts, st, lying)
            if lying:
                st.cue = "posture"
            st.lying_frames += 1 if down_now else 0
            # A fall brings the body down: a lying reading with the head still at
            # standing height and the box as tall as standing is how an upright walker
            # can look from above (a torso foreshortened across the picture).
            st.came_down = st.came_down or (down_now and (low >= self.near_share or not tall))
            if self._in_no_fall(r, p.box, size):
                st.excluded = True
        if st.lying_since is not None and not down_now:
            st.not_down += 1
        # Otherwise the posture is unknown: it neither starts nor ends an episode, pose
        # flickers while people move.
        if st.lying_since is None:
            return out
        down = (ts - st.lying_since).total_seconds()
        # Coming down fast without a flat torso is also how crouching starts: wait longer.
        need = self.rule.confirm_s + (0.0 if st.cue == "posture" else self.drop_extra_s)
        if (not st.firing and st.fast and not st.excluded and (lying or dropped)
                and st.lying_frames >= 2 and st.came_down and down >= need):
            st.firing = True
            st.severity = Severity.MAJOR
            st.key = _episode_key(t.track_id, st)
            out.append(self._decision(ts, st, AlarmState.FIRING, r,
                                      "fast change to lying" if st.cue == "posture"
                                      else "fast drop to the floor"))
        elif st.firing and st.severity < Severity.CRITICAL and down >= self.rule.severity_raise_s:
            st.severity = Severity.CRITICAL
            out.append(self._decision(ts, st, AlarmState.FIRING, r, "still down"))
        return out

    def _concern(self, ts: datetime, st: _Person) -> bool:
        """Someone who was upright a moment ago and now is missing or not upright (an
        established track, not one that just walked out of the picture), or someone
        in a down episode that has not fired yet."""
        if st.lying_since is not None and not st.firing:
            return st.fast and not st.excluded  # lying since it was first seen: not a fall
        if self._lost(st):
            return True
        if st.ref is None or (ts - st.ref[0]).total_seconds() > self.watch_s:
            return False
        if st.missed > 0:
            return st.sightings >= 3 and not st.at_edge
        return st.last_seen != st.ref[0]

    def _lost(self, st: _Person) -> bool:
        """Out of sight (not at a side) soon after a sure upright sighting: looked for
        as long as the tracker keeps the track, however long ago the upright look was."""
        return (st.missed > 0 and st.sightings >= 3 and not st.at_edge
                and st.ref is not None and st.last_seen is not None
                and (st.last_seen - st.ref[0]).total_seconds() - min(st.unseen_s, self.lost_s)
                <= self.transition_s)

    def regions(self, ts: datetime) -> list[tuple[float, float, float, float]]:
        """Where to look closer for someone down: the last box of each person of concern,
        those already down first, then the most recently upright (the likeliest to be
        going down now; the pose stage looks at the first few only)."""
        concern = [st for st in self._people.values() if self._concern(ts, st)]
        concern.sort(key=lambda st: (st.lying_since is not None,
                                     st.ref[0] if st.ref is not None else st.last_seen or ts),
                     reverse=True)
        return [st.box for st in concern]

    def confirming(self) -> bool:
        """Whether someone's fast change to down is waiting for its confirmation (the
        alarm fires after two down sightings and ``confirm_s``)."""
        return any(st.lying_since is not None and st.fast and not st.excluded
                   and not st.firing for st in self._people.values())

    def watching(self, ts: datetime) -> bool:
        """Whether someone may be going down or is down, so the pose stage should also
        look for people lying (a rotated pass)."""
        return self._watch_until is not None and ts <= self._watch_until

    def _update_watch(self, ts: datetime, seen_ids: set[int]) -> None:
        for tid, st in self._people.items():
            st.missed = 0 if tid in seen_ids else st.missed + 1
            if self._concern(ts, st):
                self._extend_watch(ts + timedelta(seconds=self.watch_s))
        if self._orphans:
            self._extend_watch(ts + timedelta(seconds=1))

    def _extend_watch(self, until: datetime) -> None:
        if self._watch_until is None or until > self._watch_until:
            self._watch_until = until

    @property
    def firing(self) -> bool:
        return any(st.firing for st in self._people.values()) or bool(self._orphans)

    def _decision(self, ts: datetime, st: _Person, state: AlarmState,
                  r: PostureReading | None, reason: str) -> FallDecision:
        down = (ts - st.lying_since).total_seconds() if st.lying_since else 0.0
        return FallDecision(st.key, state, st.severity, ts, st.box, r, down, reason)
