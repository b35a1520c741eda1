"""A small per-camera tracker: greedy IoU matching, then centre distance.

Falls change a person's box shape abruptly (tall -> wide), so IoU alone loses the
track exactly when it matters; a second pass matches what is left by centre distance
relative to the track's size. Tracks survive ``max_age_s`` without a detection so a
person missed on a frame or two keeps their history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from hub.vision.people import Person


@dataclass
class Track:
    track_id: int
    person: Person
    first_seen: datetime
    last_seen: datetime
    hits: int = 1
    state: dict[str, object] = field(default_factory=dict)  # owned by the rules (fall.py)


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _centre(b: tuple[float, float, float, float]) -> tuple[float, float]:
    return (b[0] + b[2]) / 2, (b[1] + b[3]) / 2


class Tracker:
    def __init__(self, iou_min: float = 0.2, dist_max: float = 0.9, max_age_s: float = 3.0) -> None:
        self.iou_min = iou_min
        self.dist_max = dist_max  # centre distance / max(track w, h)
        self.max_age_s = max_age_s
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, ts: datetime, people: list[Person]) -> tuple[list[Track], list[Track]]:
        """Match this frame's people to tracks; return (tracks seen now, tracks dropped)."""
        unmatched_t = list(range(len(self.tracks)))
        unmatched_p = list(range(len(people)))
        pairs: list[tuple[int, int]] = []
        if self.tracks and people:
            ious = np.array([[iou(t.person.box, p.box) for p in people] for t in self.tracks])
            while True:
                ti, pi = np.unravel_index(np.argmax(ious), ious.shape)
                if ious[ti, pi] < self.iou_min:
                    break
                pairs.append((int(ti), int(pi)))
                ious[ti, :] = -1
                ious[:, pi] = -1
            unmatched_t = [i for i in unmatched_t if i not in {a for a, _ in pairs}]
            unmatched_p = [i for i in unmatched_p if i not in {b for _, b in pairs}]
            cand = []
            for ti in unmatched_t:
                t = self.tracks[ti]
                tc = _centre(t.person.box)
                size = max(t.person.width, t.person.height, 1.0)
                for pi in unmatched_p:
                    pc = _centre(people[pi].box)
                    d = float(np.hypot(tc[0] - pc[0], tc[1] - pc[1])) / size
                    if d <= self.dist_max:
                        cand.append((d, ti, pi))
            used_t: set[int] = set()
            used_p: set[int] = set()
            for _, ti, pi in sorted(cand):
                if ti in used_t or pi in used_p:
                    continue
                pairs.append((ti, pi))
                used_t.add(ti)
                used_p.add(pi)
            unmatched_p = [i for i in unmatched_p if i not in used_p]
        seen: list[Track] = []
        for ti, pi in pairs:
            t = self.tracks[ti]
            t.person = people[pi]
            t.last_seen = ts
            t.hits += 1
            seen.append(t)
        for pi in unmatched_p:
            t = Track(self._next_id, people[pi], ts, ts)
            self._next_id += 1
            self.tracks.append(t)
            seen.append(t)
        dropped = [t for t in self.tracks if (ts - t.last_seen).total_seconds() > self.max_age_s]
        self.tracks = [t for t in self.tracks if t not in dropped]
        return seen, dropped
