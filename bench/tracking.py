"""The hub's IoU tracker against library trackers, judged by the fall rule.

    python bench/tracking.py [--json] [--only NAME ...] [--footage MANIFEST]

Replays the recorded poses of the 70 development clips (``tests/data/dev_poses.npz``,
what ``tests/unit/test_fall_regression.py`` replays) through the analyzer ``hub eval``
runs, once per tracker, and scores the fall alarms against the clips' ground truth:
falls found, false alarms, median landing -> alarm. Also per tracker: how many tracks
the fall rule was handed, how many of them started during a fall (between its onset and
a second after the landing: mostly the faller, lost and found again without the upright
history the rule needs), how many sightings of people it handed on in no track (the
library trackers hold back a new or unsure detection until it is confirmed; the fall rule
never sees it), the median milliseconds of one ``update``, and how many rotated "lying"
looks the replay could not answer (the recording holds the looks the shipped tracker's
analyzer asked for; a tracker that makes the analyzer ask elsewhere gets nobody there,
so a non-zero count means its figures are a replay's, not footage's: run it again with
``--footage ../shared/media/manifest.json`` and the pose model makes those looks on the
clips' real frames, as it would live).

The candidates sit behind the interface the analyzer and the fall rule use
(``update(ts, people) -> (seen, dropped)``, ``tracks``, ``iou_min``, ``dist_max``):

- ``iou``: ``hub.vision.tracker.Tracker``, the hand-written one the hub ships;
- ``trackers-bytetrack``: Roboflow's ``trackers`` package (Apache-2.0), ByteTrack, fed
  the frames' own timestamps (the hub's frames come at irregular times);
- ``ultralytics-bytetrack``: the ByteTrack ultralytics ships (already a dependency of
  the hub's pose backends), which counts frames, not seconds.

A library that is not installed is reported as missing, not scored. ``trackers`` is not
a dependency of the hub; ``pip install trackers`` (it pulls ``supervision``) to measure it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import report  # noqa: E402
from hub.vision.tracker import Track, Tracker  # noqa: E402
from hubtools import eval as ev  # noqa: E402
from hubtools import poserec  # noqa: E402

RECORDING = ROOT / "tests" / "data" / "dev_poses.npz"
MAX_AGE_S = 3.0  # the hub's tracker keeps a lost track this long; every candidate does


class _Timed:
    """Counts the tracks a tracker hands out and times its updates."""

    update_ms: list[float] = []
    first_seen: dict[tuple[int, int], float] = {}  # (tracker, track id) -> clip seconds
    people = handed = 0  # people given to the tracker, and people it handed on in a track
    made = 0

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        _Timed.made += 1
        self.serial = _Timed.made

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def update(self, ts: datetime, people: list[Any]) -> tuple[list[Track], list[Track]]:
        t0 = time.perf_counter()
        seen, dropped = self.inner.update(ts, people)
        _Timed.update_ms.append((time.perf_counter() - t0) * 1000)
        _Timed.people += len(people)
        _Timed.handed += len(seen)
        for t in seen:
            _Timed.first_seen.setdefault((self.serial, t.track_id),
                                         (ts - ev.EPOCH).total_seconds())
        return seen, dropped


class _LibraryTracks:
    """The hub's ``Track`` objects (whose ``state`` the fall rule owns) kept by the ids a
    library tracker assigns; a track not updated for ``MAX_AGE_S`` is dropped, as the
    hub's tracker does."""

    def __init__(self) -> None:
        iou_tracker = Tracker()
        self.iou_min = iou_tracker.iou_min  # the analyzer's vanished-person test reads these
        self.dist_max = iou_tracker.dist_max
        self.max_age_s = MAX_AGE_S
        self._by_id: dict[int, Track] = {}

    @property
    def tracks(self) -> list[Track]:
        return list(self._by_id.values())

    def _assign(self, ts: datetime, people: list[Any],
                pairs: list[tuple[int, int]]) -> tuple[list[Track], list[Track]]:
        seen: list[Track] = []
        for idx, tid in pairs:
            t = self._by_id.get(tid)
            if t is None:
                t = self._by_id[tid] = Track(tid, people[idx], ts, ts)
            else:
                t.person, t.last_seen, t.hits = people[idx], ts, t.hits + 1
            seen.append(t)
        dropped = [t for t in self._by_id.values()
                   if (ts - t.last_seen).total_seconds() > self.max_age_s]
        for t in dropped:
            del self._by_id[t.track_id]
        return seen, dropped


class TrackersLibrary(_LibraryTracks):
    """A tracker of Roboflow's ``trackers``: ``kind`` is ``bytetrack`` or ``ocsort``;
    ``matched`` sets its confidence thresholds to the pose model's own (0.25: every
    person the hub sees is a sure detection) instead of the library's defaults (0.6,
    tuned for detectors that report many weak boxes); ``giou`` matches by generalised
    IoU, which still scores boxes that no longer overlap (the library's answer to the
    centre-distance pass of the hub's tracker)."""

    def __init__(self, kind: str = "bytetrack", matched: bool = False,
                 giou: bool = False) -> None:
        super().__init__()
        import trackers

        # lost_track_buffer counts 30-fps frames; timestamps make it seconds. Every
        # track is handed out from its first sighting, as the hub's tracker does.
        kw: dict[str, Any] = {"lost_track_buffer": int(MAX_AGE_S * 30),
                              "minimum_consecutive_frames": 1}
        if matched:
            kw["high_conf_det_threshold"] = 0.25
        if giou:
            kw["iou"], kw["minimum_iou_threshold"] = trackers.GIoU(), -0.5
        if kind == "bytetrack":
            if matched:
                kw["track_activation_threshold"] = 0.25
            self.lib = trackers.ByteTrackTracker(**kw)
        else:
            self.lib = trackers.OCSORTTracker(**kw)

    def update(self, ts: datetime, people: list[Any]) -> tuple[list[Track], list[Track]]:
        import supervision as sv

        det = sv.Detections(
            xyxy=np.array([p.box for p in people], np.float32).reshape(-1, 4),
            confidence=np.array([p.score for p in people], np.float32),
            data={"index": np.arange(len(people))})
        out = self.lib.update(det, timestamp=ts.timestamp())
        idx = out.data.get("index", np.array([], int)) if len(out) else np.array([], int)
        pairs = [(int(i), int(t)) for i, t in zip(idx, out.tracker_id, strict=True) if t >= 0]
        return self._assign(ts, people, pairs)


class _UltralyticsBoxes:
    """What ultralytics' tracker reads of a detector's results: conf, cls, xywh, indexing."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray) -> None:
        self.xyxy, self.conf = xyxy, conf
        self.cls = np.zeros(len(conf), np.float32)

    @property
    def xywh(self) -> np.ndarray:
        b = self.xyxy
        return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
                         b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, mask: np.ndarray) -> _UltralyticsBoxes:
        return _UltralyticsBoxes(self.xyxy[mask], self.conf[mask])


class UltralyticsByteTrack(_LibraryTracks):
    FPS = 5.0  # hub eval replays at 5 fps; ultralytics counts frames

    def __init__(self) -> None:
        super().__init__()
        import yaml
        from ultralytics.trackers.byte_tracker import BYTETracker
        from ultralytics.utils import ROOT as UROOT

        cfg = yaml.safe_load((UROOT / "cfg" / "trackers" / "bytetrack.yaml").read_text())
        cfg["track_buffer"] = int(MAX_AGE_S * self.FPS)
        self.lib = BYTETracker(SimpleNamespace(**cfg))

    def update(self, ts: datetime, people: list[Any]) -> tuple[list[Track], list[Track]]:
        boxes = _UltralyticsBoxes(np.array([p.box for p in people], np.float32).reshape(-1, 4),
                                  np.array([p.score for p in people], np.float32))
        out = self.lib.update(boxes)
        pairs = [(int(r[7]), int(r[4])) for r in out] if len(out) else []
        return self._assign(ts, people, pairs)


CANDIDATES: dict[str, Callable[[], Any]] = {
    "iou": Tracker,
    "trackers-bytetrack": TrackersLibrary,
    "trackers-bytetrack-matched": lambda: TrackersLibrary(matched=True),
    "trackers-bytetrack-matched-giou": lambda: TrackersLibrary(matched=True, giou=True),
    "trackers-ocsort-matched": lambda: TrackersLibrary("ocsort", matched=True),
    "ultralytics-bytetrack": UltralyticsByteTrack,
}


def score(make: Callable[[], Any], footage: Path | None = None,
          estimator: Any = None) -> dict[str, Any]:
    recorded, truth = poserec.load(RECORDING)
    clips = [ev.clip_from_record(r, RECORDING.parent, ev.DEFAULT_THRESHOLD) for r in truth]
    if footage is not None:
        # The same clips on their real frames: what the recording lacks (a rotated look
        # at regions the shipped tracker never made the analyzer ask for) the pose
        # model finds there, as live.
        real = {c.name: c for c in ev.load_manifest(footage)}
        missing = [c.name for c in clips if c.name not in real]
        if missing:
            raise SystemExit(f"{footage} lacks clips of the recording: {missing[:5]}")
        clips = [real[c.name] for c in clips]
    _Timed.update_ms, _Timed.people, _Timed.handed = [], 0, 0
    tracks = started_in_falls = 0
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch("hub.vision.analyzer.Tracker", lambda: _Timed(make())):
        runner = ev.OursRunner(estimator, Path(tmp), None, recorded)
        rows = []
        for c in clips:
            _Timed.first_seen = {}
            events, duration, _ = runner.run(c, 5.0, 30.0, ev.VARIANTS[0])
            rows.append((c, ev.score_falls(c, events, duration)))
            tracks += len(_Timed.first_seen)
            # A track that starts between the onset of a fall and a second after the
            # landing is, mostly, the faller lost by the tracker and found again
            # without the upright history the fall rule needs.
            started_in_falls += sum(
                1 for t in _Timed.first_seen.values() for f in c.falls
                if f.t_on_floor is not None and f.t_onset < t <= f.t_on_floor + 1.0)
        misses = runner.rotated_misses
    s = ev.summarise_falls(rows)
    return {"falls": s["falls"], "found": s["found"], "false_alarms": s["false_alarms"],
            "median_time_to_alarm_s": s["median_time_to_alarm_s"],
            "max_time_to_alarm_s": s["max_time_to_alarm_s"],
            "sightings": _Timed.people, "sightings_in_no_track": _Timed.people - _Timed.handed,
            "tracks": tracks, "tracks_started_during_falls": started_in_falls,
            "update_ms_median": round(statistics.median(_Timed.update_ms), 4),
            "rotated_looks_not_recorded": misses}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", nargs="*", choices=sorted(CANDIDATES), help="candidates to run")
    ap.add_argument("--footage", type=Path, default=None,
                    help="manifest.json of the development clips: the pose model answers, "
                         "on the real frames, the rotated looks the recording lacks")
    ap.add_argument("--backend", default="openvino", help="pose backend with --footage "
                    "(the recording was made with openvino at 640)")
    a = ap.parse_args(argv)
    estimator = None
    if a.footage is not None:
        from hub.vision.pose import PoseEstimator

        estimator = PoseEstimator(backend=a.backend, imgsz=640, threads=os.cpu_count() or 1)
    out: dict[str, Any] = {}
    for name in a.only or CANDIDATES:
        try:
            out[name] = score(CANDIDATES[name], a.footage, estimator)
        except ImportError as e:
            out[name] = {"missing": str(e)}
    report(out, a.json)


if __name__ == "__main__":
    main()
