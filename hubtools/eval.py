"""Accuracy evaluation: ``hub eval MANIFEST [--json] [--peers]``.

Runs the fall and fire-lane detectors (the same :class:`CameraAnalyzer` the hub runs)
over labelled clips and scores them as ``docs/vision.md`` describes. Inputs:

* a ``manifest.json`` (list of clip records, the format of the project's media set);
* or a folder in UR Fall Detection style: one sub-folder of frames per clip
  (``fall-01-cam0-rgb/``, ``adl-01-cam0-rgb/``), fall/ADL from the name, with optional
  per-frame labels in a CSV (``urfall-cam0-falls.csv`` style: clip, frame, label with
  -1 = not lying, 0 = falling, 1 = lying).

Frames are decoded at the clip's native rate and analysed at ``--fps`` (default 5, the
pipeline's default), so the numbers reflect what the hub does. A clip that ends with a
person still down holds its last frame for ``--hold`` seconds (they stay down).
"""

from __future__ import annotations

import argparse
import csv
import json as jsonlib
import logging
import re
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hub import imaging
from hub.config import FallRule, ZoneConfig
from hub.domain import AlarmState
from hubtools import poserec
from hubtools.poserec import ClipPoses

log = logging.getLogger(__name__)

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
FALL_GRACE_S = 5.0  # a fall alarm may still fire this long after the person gets up
OBSTRUCTION_GRACE_S = 10.0  # an obstruction must be found within dwell + this
DEFAULT_THRESHOLD = 0.01  # zone share for evaluation when the manifest names none
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp"}
EVAL_MAX_PIXELS = 8192 * 8192  # the frame header's bound (hub.protocol.FrameMeta)


# -- ground truth -------------------------------------------------------------------


@dataclass
class FallTruth:
    t_onset: float
    t_on_floor: float | None
    t_floor_end: float | None  # None: still down when the clip ends


@dataclass
class ObjectTruth:
    t_placed: float
    t_removed: float | None


@dataclass
class Clip:
    name: str
    kind: str  # fall | adl | obstruction
    source: Path  # a video file or a folder of frames
    fps: float
    falls: list[FallTruth] = field(default_factory=list)
    objects: list[ObjectTruth] = field(default_factory=list)
    zones: list[ZoneConfig] = field(default_factory=list)
    still_down_at_end: bool = False
    group: str = ""  # where the footage comes from (manifest source_repo): the fold unit


@dataclass(frozen=True)
class Event:
    t: float
    rule: str  # "fall" | "firelane"
    key: str
    state: AlarmState


def load_manifest(path: Path, threshold: float = DEFAULT_THRESHOLD) -> list[Clip]:
    """Clips from a manifest.json, or from a UR Fall-style folder of frame folders."""
    path = Path(path)
    if path.is_dir():
        return load_frame_folders(path)
    try:
        records = jsonlib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read manifest {path}: {e}") from None
    if isinstance(records, dict):
        records = records.get("clips", [])
    clips = []
    for i, r in enumerate(records):
        try:
            clips.append(clip_from_record(r, path.parent, threshold))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"manifest {path}: clip {i} ({r.get('name', '?')}): {e}") from None
    return clips


def clip_from_record(r: dict[str, Any], base: Path, threshold: float) -> Clip:
    falls, objects = [], []
    still = False
    for e in r.get("events", []):
        if e.get("type") == "fall":
            falls.append(FallTruth(float(e["t_onset"]), _opt(e.get("t_on_floor")),
                                   _opt(e.get("t_floor_end"))))
            still = still or bool(e.get("still_down_at_end")) or e.get("t_floor_end") is None
        elif e.get("type") == "object_placed":
            objects.append(ObjectTruth(float(e["t_placed"]), _opt(e.get("t_removed"))))
    zones = [
        ZoneConfig(name=z["name"], kind=z.get("kind", "fire_lane"),
                   polygon=[tuple(p) for p in z["polygon_norm"]],
                   dwell_s=float(z.get("dwell_s", 10)), clear_s=float(z.get("clear_s", 10)),
                   threshold=float(z.get("threshold", threshold)))
        for z in r.get("zones", [])
    ]
    src = base / r["file"]
    return Clip(r["name"], r.get("kind", "fall" if falls else "adl"), src, float(r.get("fps") or 0),
                falls, objects, zones, still, str(r.get("source_repo") or r["name"]))


def _opt(v: Any) -> float | None:
    return None if v is None else float(v)


def load_frame_folders(root: Path, fps: float = 30.0) -> list[Clip]:
    """UR Fall Detection layout: ``root/<clip>/*.png``; labels from ``root/*.csv``."""
    labels: dict[str, dict[int, int]] = {}
    for f in sorted(root.glob("*.csv")):
        with f.open(newline="") as fh:
            for row in csv.reader(fh):
                if len(row) < 3:
                    continue
                try:
                    labels.setdefault(row[0].strip(), {})[int(row[1])] = int(float(row[2]))
                except ValueError:
                    continue  # a header line
    clips = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if not any(f.suffix.lower() in IMAGE_EXT for f in d.iterdir()):
            continue
        m = re.match(r"(fall|adl)[-_]?(\d+)", d.name, re.I)
        if not m:
            log.warning("folder name says neither fall nor adl; skipped", extra={"clip": d.name})
            continue
        kind = m.group(1).lower()
        falls = []
        if kind == "fall":
            seq = labels.get(f"{m.group(1).lower()}-{m.group(2)}") or labels.get(d.name) or {}
            falls.append(_fall_from_labels(seq, fps, _frame_count(d)))
        clips.append(Clip(d.name, kind, d, fps, falls, [], [],
                          still_down_at_end=bool(falls and falls[0].t_floor_end is None)))
    return clips


def _frame_count(d: Path) -> int:
    return sum(1 for f in d.iterdir() if f.suffix.lower() in IMAGE_EXT)


def _fall_from_labels(seq: dict[int, int], fps: float, n: int) -> FallTruth:
    """URFD labels (-1 not lying, 0 falling, 1 lying) -> fall times; none: whole clip."""
    if not seq:
        return FallTruth(0.0, None, None)
    falling = sorted(i for i, v in seq.items() if v == 0)
    lying = sorted(i for i, v in seq.items() if v == 1)
    first = min(seq)  # URFD frame numbers start at 1
    onset = (falling[0] if falling else (lying[0] if lying else first)) - first
    on_floor = (lying[0] - first) / fps if lying else None
    end = None
    if lying and lying[-1] - first < n - 1:
        end = (lying[-1] - first + 1) / fps
    return FallTruth(onset / fps, on_floor, end)


# -- frames -------------------------------------------------------------------------


def iter_frames(clip: Clip, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    """(seconds of file time, BGR frame) at most ``fps`` per second of file time."""
    step = 1.0 / fps
    next_t = 0.0
    if clip.source.is_dir():
        files = sorted(f for f in clip.source.iterdir() if f.suffix.lower() in IMAGE_EXT)
        for i, f in enumerate(files):
            t = i / clip.fps
            if t + 1e-6 < next_t:
                continue
            # A downloaded data set is outside data: its files are sized from their
            # headers before decoding, like a camera's frames (hub.imaging).
            try:
                img = imaging.read_image_file(f, source="eval", max_pixels=EVAL_MAX_PIXELS)
            except (OSError, imaging.ImageRejected) as e:
                log.warning("unreadable frame skipped",
                            extra={"clip": clip.name, "file": f.name, "error": str(e)})
                continue
            next_t += step * max(1, int((t - next_t) // step) + 1)
            yield t, img
        return
    cap = cv2.VideoCapture(str(clip.source))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {clip.source}")
    native = clip.fps or cap.get(cv2.CAP_PROP_FPS) or 25.0
    i = 0
    try:
        while True:
            if not cap.grab():
                break
            t = i / native
            i += 1
            if t + 1e-6 < next_t:
                continue
            ok, img = cap.retrieve()
            if not ok or img is None:
                continue
            next_t += step * max(1, int((t - next_t) // step) + 1)
            yield t, img
    finally:
        cap.release()


def clip_frames(clip: Clip, fps: float, hold_s: float) -> Iterator[tuple[float, np.ndarray, bool]]:
    """Frames plus, for clips ending with someone down, the last frame held."""
    last: tuple[float, np.ndarray] | None = None
    for t, img in iter_frames(clip, fps):
        last = (t, img)
        yield t, img, False
    if last is not None and clip.still_down_at_end and hold_s > 0:
        t0, img = last
        for k in range(1, int(hold_s * fps) + 1):
            yield t0 + k / fps, img, True


# -- running ------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One setting of the fall rule's parameters, as ``--folds`` chooses between them.

    ``fall`` holds keyword arguments of :class:`FallDetector`; the first variant of
    :data:`VARIANTS` is what the hub runs."""

    name: str
    confirm_s: float = FallRule().confirm_s  # the site file's default unless a variant says
    fall: tuple[tuple[str, Any], ...] = ()

    def rule(self) -> FallRule:
        return FallRule(confirm_s=self.confirm_s)


# The candidates leave-one-source-out chooses from: each knob of the rule that a site
# could plausibly set differently, one or two steps either side of the default.
VARIANTS: tuple[Variant, ...] = (
    Variant("default"),
    Variant("confirm-1s", confirm_s=1.0),
    Variant("confirm-2s", confirm_s=2.0),
    Variant("transition-2s", fall=(("transition_s", 2.0),)),
    Variant("transition-3.5s", fall=(("transition_s", 3.5),)),
    Variant("no-drop-cue", fall=(("drop_share", 9.0),)),
    Variant("drop-0.6", fall=(("drop_share", 0.6),)),
    Variant("lost-2.5s", fall=(("lost_s", 2.5),)),
    Variant("level-view", fall=(("view", "level"),)),
    Variant("descent-1s", fall=(("descent_s", 1.0),)),
    Variant("descent-2s", fall=(("descent_s", 2.0),)),
    Variant("no-descent-limit", fall=(("descent_s", float("inf")),)),
    Variant("speed-0.6", fall=(("fall_speed", 0.6),)),
    Variant("speed-1.0", fall=(("fall_speed", 1.0),)),
    Variant("no-speed-gate", fall=(("fall_speed", 0.0),)),
    Variant("topple-0.6s", fall=(("topple_s", 0.6),)),
    Variant("topple-1.5s", fall=(("topple_s", 1.5),)),
)
FA_WEIGHT = 0.25  # a missed fall costs as much as four false alarms when choosing a variant

Frames = list[tuple[float, np.ndarray, bool]]


class OursRunner:
    """Our analyzer over a clip, with pose results from (in order of preference) a
    recording, a cache folder, or the estimator; what the estimator computes is kept in
    :attr:`poses` for ``--export-poses`` and the cache."""

    name = "ours"

    def __init__(self, estimator: Any | None, work: Path, cache: Path | None = None,
                 recorded: dict[str, ClipPoses] | None = None) -> None:
        self.estimator = estimator
        self.work = work
        self.cache = cache
        self.poses: dict[str, ClipPoses] = dict(recorded or {})
        self.rotated_misses = 0  # lying looks a recording did not hold (replay only)

    def _cache_file(self, clip: Clip, fps: float) -> Path:
        assert self.cache is not None and self.estimator is not None
        tag = f"{self.estimator.backend_name}-{self.estimator.imgsz}-{fps:g}"
        return self.cache / f"{clip.name}-{tag}.npz"

    def _load_cached(self, clip: Clip, fps: float) -> None:
        if clip.name in self.poses or self.cache is None or self.estimator is None:
            return
        f = self._cache_file(clip, fps)
        if f.exists():
            self.poses.update(poserec.load(f)[0])

    def save_cache(self, clip: Clip, fps: float) -> None:
        if self.cache is not None and self.estimator is not None and clip.name in self.poses:
            self.cache.mkdir(parents=True, exist_ok=True)
            poserec.save(self._cache_file(clip, fps), {clip.name: self.poses[clip.name]}, [])

    def frames(self, clip: Clip, fps: float, hold_s: float) -> Frames:
        """The clip's analysed frames: decoded, or blank frames of the recorded size
        when replaying a recording (the fall rule needs only the people and the size)."""
        self._load_cached(clip, fps)
        rec = self.poses.get(clip.name)
        if rec is not None and not clip.source.exists():
            blank = np.zeros((rec.size[1], rec.size[0], 3), np.uint8)
            times = sorted(rec.frames)
            out: Frames = [(t, blank, False) for t in times]
            if clip.still_down_at_end and hold_s > 0 and times:
                out += [(times[-1] + k / fps, blank, True) for k in range(1, int(hold_s * fps) + 1)]
            return out
        return list(clip_frames(clip, fps, hold_s))

    def run(self, clip: Clip, fps: float, hold_s: float, variant: Variant = VARIANTS[0],
            frames: Frames | None = None) -> tuple[list[Event], float, int]:
        from hub.vision.analyzer import CameraAnalyzer

        if frames is None:
            frames = self.frames(clip, fps, hold_s)
        rec = self.poses.get(clip.name)
        if rec is None:
            h, w = frames[0][1].shape[:2] if frames else (0, 0)
            rec = self.poses[clip.name] = ClipPoses((w, h))
        proxy = _RecordedPoses(self, rec)
        an = CameraAnalyzer(f"eval-{clip.name}", "110105001002", clip.zones, variant.rule(),
                            self.work / "evidence", pose=proxy,  # type: ignore[arg-type]
                            fall_params=dict(variant.fall))
        events: list[Event] = []
        end = 0.0
        n = 0
        for t, img, held in frames:
            people = None
            if not held:
                key = round(t, 4)
                people = rec.frames.get(key)
                if people is None:
                    if self.estimator is None:
                        raise ValueError(f"clip {clip.name}: no recorded poses at {key} s")
                    people = rec.frames[key] = self.estimator.detect(img)
                proxy.t = key
                n += 1
            for a in an.process(EPOCH + timedelta(seconds=t), img, people):
                events.append(Event(t, a.rule, a.dedup_key, a.state))
            end = t
        return events, end + 1.0 / fps, n


class _RecordedPoses:
    """The estimator as the analyzer sees it: rotated looks come from the recording
    when it holds one for (about) the same regions, else from the model, remembered."""

    def __init__(self, runner: OursRunner, rec: ClipPoses) -> None:
        self.runner = runner
        self.rec = rec
        self.iou = runner.estimator.iou if runner.estimator is not None else 0.7
        self.t = 0.0

    def detect_rotated(self, frame: np.ndarray, rois: Any = ()) -> list[Any]:
        key = tuple(tuple(float(v) for v in r) for r in rois)
        found = self.rec.rotated_at(self.t, key)
        if found is not None:
            return found
        if self.runner.estimator is None:
            self.runner.rotated_misses += 1
            return []
        people = self.runner.estimator.detect_rotated(frame, rois)
        self.rec.rotated.append((self.t, key, people))
        return people


def run_peer(peer: Any, clip: Clip, fps: float, hold_s: float) -> tuple[list[Event], float]:
    rate = peer.fps or fps
    peer.reset()
    events: list[Event] = []
    end = 0.0
    for t, img, held in clip_frames(clip, rate, hold_s):
        for e in peer.step(t, img, held):
            events.append(Event(e.t, "fall", e.key, e.state))
        end = t
    return events, end + 1.0 / rate


def _cached_peer(cache: Path | None, peer: Any, clip: Clip, fps: float,
                 hold_s: float) -> tuple[list[Event], float]:
    """A peer's alarms on a clip, kept in the pose cache folder like our pose results
    (the peers are deterministic and cost far more than our rules)."""
    f = None
    if cache is not None:
        confirm = getattr(peer, "confirm_s", "")
        f = cache / f"{clip.name}-peer-{peer.name}-{peer.fps or fps:g}-{hold_s:g}{confirm}.json"
        if f.exists():
            d = jsonlib.loads(f.read_text(encoding="utf-8"))
            return [Event(t, "fall", k, AlarmState(st)) for t, k, st in d["events"]], d["end"]
    events, end = run_peer(peer, clip, fps, hold_s)
    if f is not None:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(jsonlib.dumps({"events": [(e.t, e.key, e.state.value) for e in events],
                                    "end": end}), encoding="utf-8")
    return events, end


# -- scoring ------------------------------------------------------------------------


def onsets(events: list[Event], rule: str) -> list[Event]:
    """Alarm starts: the first FIRING of a key, or a FIRING after it cleared.

    Severity updates of a firing alarm are not new alarms."""
    firing: set[str] = set()
    out = []
    for e in events:
        if e.rule != rule:
            continue
        if e.state is AlarmState.FIRING and e.key not in firing:
            firing.add(e.key)
            out.append(e)
        elif e.state is AlarmState.CLEARED:
            firing.discard(e.key)
    return out


def _union_length(windows: list[tuple[float, float]], lo: float, hi: float) -> float:
    total, cur_a, cur_b = 0.0, None, None
    for a, b in sorted((max(lo, a), min(hi, b)) for a, b in windows):
        if b <= a:
            continue
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a  # type: ignore[operator]
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a  # type: ignore[operator]
    return total


def score_falls(clip: Clip, events: list[Event], duration: float) -> dict[str, Any]:
    alarms = onsets(events, "fall")
    windows = [(f.t_onset, duration if f.t_floor_end is None else f.t_floor_end + FALL_GRACE_S)
               for f in clip.falls]
    used: set[int] = set()
    found = []
    for f, (a, b) in zip(clip.falls, windows, strict=True):
        hit = next((i for i, e in enumerate(alarms) if i not in used and a <= e.t <= b), None)
        if hit is None:
            found.append({"found": False, "time_to_alarm_s": None})
            continue
        used.add(hit)
        tta = None if f.t_on_floor is None else round(alarms[hit].t - f.t_on_floor, 2)
        found.append({"found": True, "time_to_alarm_s": tta, "alarm_t": round(alarms[hit].t, 2)})
    false = [e for e in alarms if not any(a <= e.t <= b for a, b in windows)]
    outside = duration - _union_length(windows, 0.0, duration)
    return {
        "falls": found,
        "false_alarms": len(false),
        "false_alarm_t": [round(e.t, 2) for e in false],
        "seconds_outside_falls": round(outside, 2),
        "alarm_t": [round(e.t, 2) for e in alarms],
    }


def score_obstruction(clip: Clip, events: list[Event], duration: float) -> dict[str, Any] | None:
    lanes = [z for z in clip.zones if z.kind == "fire_lane"]
    if not lanes:
        return None
    alarms = onsets(events, "firelane")
    dwell = max(z.dwell_s for z in lanes)
    found = []
    used: set[int] = set()
    present: list[tuple[float, float]] = []
    for o in clip.objects:
        lo, hi = o.t_placed, o.t_placed + dwell + OBSTRUCTION_GRACE_S
        present.append((o.t_placed, duration if o.t_removed is None else o.t_removed + 15))
        hit = next((i for i, e in enumerate(alarms) if i not in used and lo < e.t <= hi), None)
        if hit is None:
            found.append({"found": False, "time_to_alarm_s": None})
        else:
            used.add(hit)
            found.append({"found": True, "time_to_alarm_s": round(alarms[hit].t - o.t_placed, 2)})
    # Clear footage: everything before an object is placed (and all of a clip with none).
    false = [e for i, e in enumerate(alarms)
             if i not in used and not any(a <= e.t <= b for a, b in present)]
    clear = duration - _union_length(present, 0.0, duration)
    return {"objects": found, "false_alarms": len(false),
            "false_alarm_t": [round(e.t, 2) for e in false], "seconds_clear": round(clear, 2),
            "alarm_t": [round(e.t, 2) for e in alarms]}


def summarise_falls(per_clip: list[tuple[Clip, dict[str, Any]]]) -> dict[str, Any]:
    falls = [f for _, r in per_clip for f in r["falls"]]
    ttas = [f["time_to_alarm_s"] for f in falls if f["found"] and f["time_to_alarm_s"] is not None]
    non_fall = [(c, r) for c, r in per_clip if not c.falls]
    fa = sum(r["false_alarms"] for _, r in per_clip)
    hours = sum(r["seconds_outside_falls"] for _, r in per_clip) / 3600
    return {
        "falls": len(falls),
        "found": sum(f["found"] for f in falls),
        "sensitivity": _ratio(sum(f["found"] for f in falls), len(falls)),
        "specificity": _ratio(sum(r["false_alarms"] == 0 for _, r in non_fall), len(non_fall)),
        "false_alarms": fa,
        "hours_outside_falls": round(hours, 4),
        "false_alarms_per_hour": round(fa / hours, 2) if hours > 0 else None,
        "median_time_to_alarm_s": round(statistics.median(ttas), 2) if ttas else None,
        "max_time_to_alarm_s": round(max(ttas), 2) if ttas else None,
    }


def summarise_obstruction(per_clip: list[dict[str, Any]]) -> dict[str, Any]:
    objs = [o for r in per_clip for o in r["objects"]]
    ttas = [o["time_to_alarm_s"] for o in objs if o["found"]]
    fa = sum(r["false_alarms"] for r in per_clip)
    hours = sum(r["seconds_clear"] for r in per_clip) / 3600
    return {
        "objects": len(objs),
        "found": sum(o["found"] for o in objs),
        "recall": _ratio(sum(o["found"] for o in objs), len(objs)),
        "false_alarms": fa,
        "hours_clear": round(hours, 4),
        "false_alarms_per_hour": round(fa / hours, 2) if hours > 0 else None,
        "median_time_to_alarm_s": round(statistics.median(ttas), 2) if ttas else None,
    }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


# -- entry points -------------------------------------------------------------------


def run_eval(manifest: Path | None, peers: bool = False, json: bool = False, *, fps: float = 5.0,
             hold_s: float = 30.0, backend: str = "auto", imgsz: int = 640, threads: int = 2,
             threshold: float = DEFAULT_THRESHOLD, only: list[str] | None = None,
             cache: Path | None = None, folds: str | None = None,
             replay: Path | None = None, export: Path | None = None) -> dict[str, Any]:
    """Evaluate ours (and the peers) on the clips of ``manifest`` (or of the recording
    ``replay``, without footage or model); return the report.

    ``folds="source"`` adds leave-one-source-out figures under ``out_of_sample``: for
    each source, the variant of the fall rule that scores best on the other sources is
    scored on this one. ``json`` only changes what :func:`main` prints."""
    recorded: dict[str, ClipPoses] | None = None
    if replay is not None:
        recorded, truth = poserec.load(replay)
        clips = [clip_from_record(r, Path(replay).parent, threshold) for r in truth]
        if peers:
            raise ValueError("--peers needs the footage; a replay has only our pose results")
    else:
        if manifest is None:
            raise ValueError("a manifest (or --replay) is needed")
        clips = load_manifest(Path(manifest), threshold)
    if only:
        clips = [c for c in clips if c.name in only]
    if folds not in (None, "source"):
        raise ValueError(f"unknown --folds {folds!r} (only 'source')")
    estimator = None
    if replay is None:
        from hub.vision.pose import PoseEstimator

        estimator = PoseEstimator(backend=backend, imgsz=imgsz, threads=threads)
    variants = VARIANTS if folds else VARIANTS[:1]
    report: dict[str, Any] = {"settings": {"fps": fps, "hold_s": hold_s, "backend":
                                           estimator.backend_name if estimator else "replay",
                                           "imgsz": imgsz, "zone_threshold_default": threshold,
                                           "folds": folds},
                              "clips": []}
    peer_objs: list[Any] = []
    if peers:
        from hubtools.peers import load_peers

        peer_objs, missing = load_peers()
        report["peers_unavailable"] = missing
    # results[variant name][clip name] = (fall row, obstruction row or None)
    results: dict[str, dict[str, tuple[dict[str, Any], dict[str, Any] | None]]] = {
        v.name: {} for v in variants}
    peer_rows: dict[str, list[tuple[Clip, dict[str, Any]]]] = {p.name: [] for p in peer_objs}
    with tempfile.TemporaryDirectory(prefix="hub-eval-") as tmp:
        runner = OursRunner(estimator, Path(tmp), cache, recorded)
        for clip in clips:
            t0 = time.perf_counter()
            frames = runner.frames(clip, fps, hold_s)
            row: dict[str, Any] = {"name": clip.name, "kind": clip.kind, "source": clip.group}
            for v in variants:
                events, duration, n = runner.run(clip, fps, hold_s, v, frames)
                fr = score_falls(clip, events, duration)
                results[v.name][clip.name] = (fr, score_obstruction(clip, events, duration))
                if v is variants[0]:
                    elapsed = time.perf_counter() - t0
                    row.update({"footage_s": round(duration, 2), "frames_analysed": n,
                                "ms_per_frame": round(1000 * elapsed / max(n, 1), 1), "fall": fr})
                    if results[v.name][clip.name][1] is not None:
                        row["obstruction"] = results[v.name][clip.name][1]
            runner.save_cache(clip, fps)
            if peer_objs:
                del frames
            for p in peer_objs:
                pe, pdur = _cached_peer(runner.cache, p, clip, fps, hold_s)
                pr = score_falls(clip, pe, pdur)
                peer_rows[p.name].append((clip, pr))
                row.setdefault("peers", {})[p.name] = pr
            report["clips"].append(row)
            log.info("clip evaluated", extra={"clip": clip.name,
                                              "seconds": round(time.perf_counter() - t0, 1)})
        if export is not None:
            truth = _truth_records(Path(manifest), clips) if manifest is not None else []
            poserec.save(export, {c.name: runner.poses[c.name] for c in clips}, truth)
        if replay is not None:
            report["settings"]["rotated_looks_not_recorded"] = runner.rotated_misses
    report.update(_summary(clips, results[variants[0].name], peer_rows))
    if folds:
        report["out_of_sample"] = _out_of_sample(clips, variants, results, peer_rows)
    return report


def _summary(clips: list[Clip], rows: dict[str, tuple[dict[str, Any], dict[str, Any] | None]],
             peer_rows: dict[str, list[tuple[Clip, dict[str, Any]]]]) -> dict[str, Any]:
    fall_rows = [(c, rows[c.name][0]) for c in clips]
    obs_rows = [rows[c.name][1] for c in clips if rows[c.name][1] is not None]
    return {"fall": summarise_falls(fall_rows),
            "obstruction": summarise_obstruction(obs_rows),  # type: ignore[arg-type]
            "peers": {name: {"fall": summarise_falls(r)} for name, r in peer_rows.items()}}


def _objective(clips: list[Clip], rows: dict[str, tuple[dict[str, Any], Any]]) -> float:
    found = sum(f["found"] for c in clips for f in rows[c.name][0]["falls"])
    false = sum(rows[c.name][0]["false_alarms"] for c in clips)
    return found - FA_WEIGHT * false


def _out_of_sample(clips: list[Clip], variants: tuple[Variant, ...],
                   results: dict[str, dict[str, tuple[dict[str, Any], dict[str, Any] | None]]],
                   peer_rows: dict[str, list[tuple[Clip, dict[str, Any]]]]) -> dict[str, Any]:
    """Leave one source out: for each source, the variant with the best objective on
    the other sources (ties: the earlier variant, the default first) is scored on it."""
    rows: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {}
    chosen: dict[str, str] = {}
    for g in sorted({c.group for c in clips}):
        train = [c for c in clips if c.group != g]
        best = max(variants, key=lambda v: (_objective(train, results[v.name]),
                                            -variants.index(v)))
        chosen[g] = best.name
        for c in clips:
            if c.group == g:
                rows[c.name] = results[best.name][c.name]
    out = _summary(clips, rows, peer_rows)  # the peers have nothing to choose
    out["chosen_variant"] = chosen
    out["variants_in_sample"] = {v.name: summarise_falls([(c, results[v.name][c.name][0])
                                                          for c in clips]) for v in variants}
    return out


def _truth_records(manifest: Path, clips: list[Clip]) -> list[dict[str, Any]]:
    """The manifest's records of these clips, reduced to what scoring needs."""
    keep = ("name", "file", "source_repo", "fps", "kind", "events", "zones", "width", "height")
    records = jsonlib.loads(manifest.read_text(encoding="utf-8"))
    if isinstance(records, dict):
        records = records.get("clips", [])
    names = {c.name for c in clips}
    return [{k: r[k] for k in keep if k in r} for r in records if r.get("name") in names]


def _table(report: dict[str, Any]) -> str:
    lines = []
    f = report["fall"]
    lines.append(f"{'detector':24} {'sens':>6} {'spec':>6} {'FA/h':>7} {'med TTA':>8} "
                 f"{'max TTA':>8}")
    rows = [("ours", f)] + [(n, p["fall"]) for n, p in report.get("peers", {}).items()]
    for name, s in rows:
        lines.append(f"{name:24} {_fmt(s['sensitivity']):>6} {_fmt(s['specificity']):>6} "
                     f"{_fmt(s['false_alarms_per_hour']):>7} "
                     f"{_fmt(s['median_time_to_alarm_s']):>8} "
                     f"{_fmt(s['max_time_to_alarm_s']):>8}")
    o = report["obstruction"]
    lines.append(f"obstruction: recall {_fmt(o['recall'])}, false alarms/h "
                 f"{_fmt(o['false_alarms_per_hour'])}, median time to alarm "
                 f"{_fmt(o['median_time_to_alarm_s'])} s")
    lines.append("")
    for c in report["clips"]:
        fr = c["fall"]
        found = "".join("F" if x["found"] else "-" for x in fr["falls"]) or "."
        extra = ""
        if "obstruction" in c:
            ob = c["obstruction"]
            extra = (f" lane: found {sum(x['found'] for x in ob['objects'])}/{len(ob['objects'])}"
                     f" FA {ob['false_alarms']}")
        lines.append(f"  {c['name']:20} {c['kind']:11} falls {found:4} FA {fr['false_alarms']}"
                     f" alarms@{fr['alarm_t']}{extra}")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return "-" if v is None else str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hub eval", description=__doc__.splitlines()[0])
    ap.add_argument("manifest", type=Path, nargs="?",
                    help="manifest.json, or a folder of frame folders")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--peers", action="store_true", help="also run the PyPI fall detectors")
    ap.add_argument("--fps", type=float, default=5.0, help="analysis frames per second")
    ap.add_argument("--hold", type=float, default=30.0,
                    help="seconds to hold the last frame when a clip ends with someone down")
    ap.add_argument("--backend", default="auto", help="pose backend: auto, torch, onnx, openvino")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                    help="zone share threshold for zones whose manifest entry names none")
    ap.add_argument("--clip", action="append", help="only this clip (repeatable)")
    ap.add_argument("--pose-cache", type=Path, help="folder caching pose results between runs")
    ap.add_argument("--folds", choices=["source"],
                    help="also score leave-one-source-out (report key out_of_sample)")
    ap.add_argument("--export-poses", type=Path, metavar="FILE",
                    help="write the pose results and ground truth of the run to FILE (.npz)")
    ap.add_argument("--replay", type=Path, metavar="FILE",
                    help="score a recording made by --export-poses: no footage, no model")
    args = ap.parse_args(argv)
    if args.manifest is None and args.replay is None:
        ap.error("give a manifest or --replay FILE")
    try:
        report = run_eval(args.manifest, peers=args.peers, json=args.json, fps=args.fps,
                          hold_s=args.hold, backend=args.backend, imgsz=args.imgsz,
                          threads=args.threads, threshold=args.threshold, only=args.clip,
                          cache=args.pose_cache, folds=args.folds, replay=args.replay,
                          export=args.export_poses)
    except (ValueError, OSError, zipfile.BadZipFile, KeyError) as e:
        # A bad manifest, a missing clip or recording, a file that is no recording.
        print(f"hub eval: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(jsonlib.dumps(report, indent=1, default=str))
    else:
        print(_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
