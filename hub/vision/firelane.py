"""Fire-lane obstruction: class-agnostic static-obstruction detection per zone.

Per zone, on a small grey image of the zone's bounding rectangle:

* a **reference** of the empty lane (long-term model), captured at commissioning,
  stored on disk by :class:`ReferenceStore`, renewed by an operator (``rebaseline``)
  and adapted very slowly only where the lane looks empty;
* a **short-term model** (a running average with a time constant of about a second);
* the **static map**: pixels that differ from the reference and have stopped changing
  for ``static_s``. People found by the pose model are masked out (their pixels keep
  the state they had before the person stepped in), so someone walking through or
  lying on the floor is never an obstruction; the analyzer masks a standing person's
  legs, not the ground around their feet (``analyzer.person_outline``).

The detector watches a band of ``edge_px`` around the zone as well: an object standing
on the zone's edge counts with its whole footprint.

Light: each frame is scaled so the zone's empty part matches the reference's
brightness before comparing, so a gradual change of light is not a difference.

The obstructed share of the zone against ``threshold`` drives a dwell timer with a
short grace (a person passing in front does not restart it); the alarm fires after
``dwell_s`` above the threshold and clears after ``clear_s`` below it. Pure: frames
and timestamps in, decisions out; disk access lives in :class:`ReferenceStore`.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from hub.config import ZoneConfig
from hub.domain import AlarmState
from hub.vision.zones import polygon_mask

log = logging.getLogger(__name__)

WORK_WIDTH = 320  # analysis width of the whole frame, pixels


def _gradient(img: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


# Edges relative to brightness: gradient / (local mean + this), so dark corners are
# not all "edgeless"; GHOST_MIN_EDGE is the old absolute slack of 2 grey levels at a
# mid-grey (128 + 32) lane.
_DARK = 32.0
GHOST_MIN_EDGE = 2.0 / (128.0 + _DARK)
_RING = np.ones((5, 5), np.uint8)  # a region's outline: 2 work pixels either side
SHARP_MIN = 0.4  # see ObstructionDetector._sharp


def _relative_gradient(img: np.ndarray) -> np.ndarray:
    """Edge strength relative to the local brightness: light and shade scale both."""
    return _gradient(img) / (cv2.blur(img, (7, 7)) + _DARK)


def work_gray(frame_bgr: np.ndarray, width: int = WORK_WIDTH) -> np.ndarray:
    """The frame as a small, blurred grey image (float32) used by every zone."""
    h, w = frame_bgr.shape[:2]
    height = max(1, round(h * width / w))
    g = cv2.cvtColor(cv2.resize(frame_bgr, (width, height), interpolation=cv2.INTER_AREA),
                     cv2.COLOR_BGR2GRAY)
    return cv2.GaussianBlur(g, (5, 5), 0).astype(np.float32)


@dataclass(frozen=True)
class ObstructionDecision:
    state: AlarmState
    ts: datetime
    share: float
    dwell_s: float
    reason: str


@dataclass(frozen=True)
class Reference:
    image: np.ndarray  # uint8 grey, zone crop at work size
    valid: np.ndarray  # bool: pixels whose empty-lane look is known


class ObstructionDetector:
    def __init__(
        self,
        zone: ZoneConfig,
        work_size: tuple[int, int],
        static_s: float = 2.0,
        grace_s: float | None = None,
        diff_threshold: float = 28.0,
        motion_threshold: float = 12.0,
        short_tau_s: float = 0.8,
        reference_tau_s: float = 120.0,
        ghost_ratio: float = 1.3,
        edge_px: int = 10,
        edge_inside: float = 0.25,
    ) -> None:
        """``work_size`` is (width, height) of :func:`work_gray` images.

        ``edge_px``: the detector also watches a band this wide (work pixels) around
        the zone, so an object standing on the zone's edge is seen whole; a static
        region with at least ``edge_inside`` of itself inside the zone counts with
        all of its pixels (it stands in the lane), one mostly outside counts with the
        part inside only (a car parked beside the lane)."""
        self.zone = zone
        self.static_s = static_s
        self.grace_s = grace_s
        self.diff_threshold = diff_threshold
        self.motion_threshold = motion_threshold
        self.short_tau_s = short_tau_s
        self.reference_tau_s = reference_tau_s
        self.ghost_ratio = ghost_ratio
        self.edge_inside = edge_inside
        if grace_s is None:
            # Long dwell times tolerate longer gaps (a crowd hiding the object).
            grace_s = min(30.0, max(3.0, 0.5 * zone.dwell_s))
        w, h = work_size
        full = polygon_mask(zone.polygon, w, h)
        if not full.any():
            raise ValueError(f"zone {zone.name} covers no pixels at {w}x{h}")
        k = 2 * edge_px + 1
        band = cv2.dilate(full.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
        ys, xs = np.nonzero(band)
        self.rect = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        x1, y1, x2, y2 = self.rect
        self.mask = full[y1:y2, x1:x2]  # the zone itself
        self.band = band[y1:y2, x1:x2]  # the zone and the band around it
        self.area = int(self.mask.sum())
        self.work_size = work_size
        self.reference: np.ndarray | None = None  # float32
        self.valid: np.ndarray | None = None
        self._short: np.ndarray | None = None
        self._prev_masked: np.ndarray | None = None
        self._age: np.ndarray | None = None
        self._last_ts: datetime | None = None
        self.static_map = np.zeros_like(self.mask)
        self.share = 0.0
        self.timer = DwellTimer(zone.threshold, zone.dwell_s, zone.clear_s, grace_s)
        self.gain = 1.0

    # -- reference ----------------------------------------------------------------

    def crop(self, gray: np.ndarray) -> np.ndarray:
        x1, y1, x2, y2 = self.rect
        return gray[y1:y2, x1:x2]

    def set_reference(self, ref: Reference) -> None:
        if ref.image.shape != self.band.shape:
            raise ValueError(f"reference of {ref.image.shape} does not fit the zone's "
                             f"{self.band.shape}")
        self.reference = ref.image.astype(np.float32)
        self.valid = ref.valid.astype(bool).copy()
        self._age = np.zeros(self.mask.shape, np.float32)
        self.static_map = np.zeros_like(self.mask)
        self.share = 0.0
        self.timer.reset()

    def capture_reference(self, gray: np.ndarray, people: np.ndarray) -> Reference:
        """The current view as the empty lane; pixels under people stay unknown."""
        ref = Reference(np.clip(self.crop(gray), 0, 255).astype(np.uint8), ~self.crop(people))
        self.set_reference(ref)
        return ref

    def current_reference(self) -> Reference | None:
        if self.reference is None or self.valid is None:
            return None
        return Reference(np.clip(self.reference, 0, 255).astype(np.uint8), self.valid.copy())

    @property
    def has_reference(self) -> bool:
        return self.reference is not None

    # -- per frame ----------------------------------------------------------------

    def update(self, ts: datetime, gray: np.ndarray,
               people: np.ndarray) -> ObstructionDecision | None:
        """One frame: ``gray`` from :func:`work_gray`, ``people`` a bool mask the same size."""
        if self.reference is None or self.valid is None or self._age is None:
            raise RuntimeError("update() before a reference was set")
        img = self.crop(gray)
        masked = self.crop(people)
        dt = 0.0 if self._last_ts is None else max(0.0, (ts - self._last_ts).total_seconds())
        self._last_ts = ts
        if self._short is None:
            self._short = img.copy()
            moving = np.zeros(img.shape, bool)
        else:
            moving = np.abs(img - self._short) > self.motion_threshold
            a = 1.0 - math.exp(-dt / self.short_tau_s) if dt > 0 else 0.0
            # Not under people. Where someone just stepped away, what they hid starts
            # afresh: unseen is not "moving", and static_s still has to pass before it
            # counts (a bag put down by its owner is found once the owner leaves).
            self._short[~masked] += a * (img[~masked] - self._short[~masked])
            if self._prev_masked is not None:
                uncovered = self._prev_masked & ~masked
                self._short[uncovered] = img[uncovered]
                moving[uncovered] = False
        moving = cv2.dilate(moving.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        self._prev_masked = masked

        # Light: match the brightness of the empty, visible part of the zone (the zone
        # itself, not the band around it: the band may be a wall in other light).
        ref = self.reference
        calm = self.mask & self.valid & ~masked & ~self.static_map
        if calm.sum() > 0.05 * self.area:
            g = float(np.median(ref[calm])) / max(float(np.median(img[calm])), 1.0)
            self.gain = float(np.clip(g, 0.25, 4.0))
        norm = img * self.gain
        fg = (np.abs(norm - ref) > self.diff_threshold) & self.valid & self.band
        fg = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN,
                              np.ones((3, 3), np.uint8)).astype(bool)

        still = fg & ~moving & ~masked
        age = self._age
        age[still] += dt
        age[~fg & ~masked] = 0.0
        age[moving & ~masked] = 0.0
        # Under a person the age is frozen: a bag someone stands beside stays a bag.
        self.static_map = (age >= self.static_s) & self.band
        if self.static_map.any():
            self._heal_ghosts(norm, masked)

        # Unknown parts of the reference (a person stood there at commissioning) are
        # learnt once they are seen calm; the rest adapts slowly where the lane is empty.
        if dt > 0:
            learn = ~self.valid & ~masked & ~moving & self.band
            if learn.any():
                ref[learn] = norm[learn]
                self.valid |= learn
            a_ref = 1.0 - math.exp(-dt / self.reference_tau_s)
            quiet = ~fg & ~masked & ~moving & self.valid
            ref[quiet] += a_ref * (norm[quiet] - ref[quiet])

        # Whole regions on the edge can add pixels beyond the polygon: at most all of it.
        self.share = min(1.0, self._blocked(norm, masked) / max(self.area, 1))
        return self._dwell(ts)

    def _blocked(self, norm: np.ndarray, masked: np.ndarray) -> float:
        """Pixels of the static map that block the zone.

        A static region standing on the zone's edge blocks it with all of its
        footprint, not only with the pixels the polygon happens to cut off: a bag by
        the kerb whose top half is beyond the line is still in the lane. Only a region
        with the outline of a thing counts whole (see :meth:`_sharp`): a change of
        light or exposure reaching over the edge (a white wall beside the lane after
        the camera's exposure moved) counts with the part inside only, as do regions
        mostly outside (a car parked alongside, reaching in)."""
        sm = self.static_map
        inside = sm & self.mask
        if not inside.any():
            return 0.0
        if not (sm & ~self.mask).any():
            return float(inside.sum())
        n, labels, stats, _ = cv2.connectedComponentsWithStats(sm.astype(np.uint8), 8)
        ins = np.bincount(labels[inside], minlength=n)
        size = stats[:, cv2.CC_STAT_AREA]
        total = 0.0
        for i in range(1, n):
            if ins[i] and ins[i] < size[i] and ins[i] >= self.edge_inside * size[i] \
                    and self._sharp(labels == i, norm, masked):
                total += size[i]
            else:
                total += ins[i]
        return total

    def _sharp(self, region: np.ndarray, norm: np.ndarray, masked: np.ndarray) -> bool:
        """Whether the region has the outline of a thing set down, not of light.

        An object makes a step along its outline as strong as its difference from the
        lane; light and exposure change smoothly, so their regions end where the
        difference fades below the threshold, with no step. Measured as the edges
        the change added along the outline (current view minus reference), relative
        to the region's own contrast: 0.7-0.9 for the bags of the tests and the
        backpack of the ABODA clip, at most 0.25 for the exposure changes on the
        white walls of a clear clip (eikesan_video)."""
        assert self.reference is not None
        comp = region.astype(np.uint8)
        ring = (cv2.dilate(comp, _RING) - cv2.erode(comp, _RING)).astype(bool)
        seen = ring & ~masked
        if seen.sum() < 0.5 * ring.sum():
            return False  # mostly hidden: count the part inside until it can be judged
        contrast = np.abs(norm - self.reference) / (cv2.blur(norm, (7, 7)) + _DARK)
        c = float(contrast[region].mean())
        added = float(_relative_gradient(norm)[seen].mean()
                      - _relative_gradient(self.reference)[seen].mean())
        return c > 0 and added >= SHARP_MIN * c

    def _heal_ghosts(self, norm: np.ndarray, masked: np.ndarray) -> None:
        """Forget "objects" that are really the empty lane showing again.

        Something that was in the lane when the reference was taken (a person the pose
        model missed, a car that left) leaves a region that differs from the reference
        once it goes. Along the region's outline a real object makes edges in the
        current view; a ghost has its edges in the reference instead. Ghosts are
        written into the reference.

        Edges are measured relative to the local brightness: a shadow or a beam of
        light over the lane scales the edges under it with the light, so it is not
        taken for a ghost (writing a passing shadow into the reference left a false
        "object" where the sun came back)."""
        assert self.reference is not None and self._age is not None
        n, labels, stats, _ = cv2.connectedComponentsWithStats(self.static_map.astype(np.uint8))
        if n <= 1:
            return
        gc = _relative_gradient(norm)
        gr = _relative_gradient(self.reference)
        kernel = np.ones((5, 5), np.uint8)
        for i in range(1, n):
            if stats[i, cv2.CC_STAT_AREA] < 4:
                continue
            comp = (labels == i).astype(np.uint8)
            ring = (cv2.dilate(comp, kernel) - cv2.erode(comp, kernel)).astype(bool)
            seen = ring & ~masked
            if seen.sum() < 0.5 * ring.sum():
                continue  # mostly hidden by people: judge it when it can be seen
            ring = seen
            now, then = float(gc[ring].mean()), float(gr[ring].mean())
            if then > self.ghost_ratio * now + GHOST_MIN_EDGE:
                region = cv2.dilate(comp, kernel).astype(bool) & self.band & ~masked
                self.reference[region] = norm[region]
                self._age[region] = 0.0
                self.static_map[region] = False
                log.info("ghost in fire-lane reference healed",
                         extra={"zone": self.zone.name, "pixels": int(region.sum()),
                                "edges_now": round(now, 1), "edges_reference": round(then, 1)})

    def _dwell(self, ts: datetime) -> ObstructionDecision | None:
        state = self.timer.update(ts, self.share)
        if state is AlarmState.FIRING:
            return ObstructionDecision(state, ts, self.share, self.timer.held_s(ts),
                                       "static obstruction above threshold for the dwell time")
        if state is AlarmState.CLEARED:
            return ObstructionDecision(state, ts, self.share, 0.0, "zone clear")
        return None

    @property
    def firing(self) -> bool:
        return self.timer.firing

    @property
    def dwell_so_far(self) -> float:
        return 0.0 if self._last_ts is None else self.timer.held_s(self._last_ts)


class DwellTimer:
    """A value above a threshold for ``dwell_s`` fires; below it for ``clear_s`` clears.

    Dips below the threshold shorter than ``grace_s`` do not restart the dwell (someone
    walking past the object, a flicker of the static map)."""

    def __init__(self, threshold: float, dwell_s: float, clear_s: float, grace_s: float) -> None:
        self.threshold, self.dwell_s = threshold, dwell_s
        self.clear_s, self.grace_s = clear_s, grace_s
        self.firing = False
        self._above_since: datetime | None = None
        self._last_above: datetime | None = None
        self._below_since: datetime | None = None

    def reset(self) -> None:
        self._above_since = self._last_above = None

    def held_s(self, ts: datetime) -> float:
        return 0.0 if self._above_since is None else (ts - self._above_since).total_seconds()

    def update(self, ts: datetime, value: float) -> AlarmState | None:
        if value >= self.threshold:
            self._last_above = ts
            self._above_since = self._above_since or ts
            self._below_since = None
        else:
            self._below_since = self._below_since or ts
            if self._last_above is not None and \
                    (ts - self._last_above).total_seconds() > self.grace_s:
                self._above_since = None
        if not self.firing and self._above_since is not None and self.held_s(ts) >= self.dwell_s:
            self.firing = True
            return AlarmState.FIRING
        if self.firing and self._below_since is not None and \
                (ts - self._below_since).total_seconds() >= self.clear_s:
            self.firing = False
            return AlarmState.CLEARED
        return None


class ReferenceStore:
    """Empty-lane references on disk: ``ROOT/<camera>/<zone>.png`` + ``.valid.png`` + ``.json``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _base(self, camera_id: str, zone: str) -> Path:
        return self.root / camera_id / zone

    def save(self, camera_id: str, zone: str, ref: Reference, ts: datetime,
             work_size: tuple[int, int]) -> None:
        base = self._base(camera_id, zone)
        base.parent.mkdir(parents=True, exist_ok=True)
        tmp = base.with_name(base.name + ".tmp.png")
        cv2.imwrite(str(tmp), ref.image)
        tmp.replace(base.with_suffix(".png"))
        cv2.imwrite(str(base.with_suffix(".valid.png")), ref.valid.astype(np.uint8) * 255)
        meta = {"captured_at": ts.isoformat(), "work_size": list(work_size)}
        base.with_suffix(".json").write_text(json.dumps(meta))
        log.info("empty-lane reference saved", extra={"device": camera_id, "zone": zone})

    def load(self, camera_id: str, zone: str, work_size: tuple[int, int]) -> Reference | None:
        base = self._base(camera_id, zone)
        try:
            meta = json.loads(base.with_suffix(".json").read_text())
        except (OSError, ValueError):
            return None
        if tuple(meta.get("work_size", ())) != tuple(work_size):
            log.warning("stored reference is for another frame size; recapturing",
                        extra={"device": camera_id, "zone": zone})
            return None
        img = cv2.imread(str(base.with_suffix(".png")), cv2.IMREAD_GRAYSCALE)
        valid = cv2.imread(str(base.with_suffix(".valid.png")), cv2.IMREAD_GRAYSCALE)
        if img is None or valid is None:
            return None
        return Reference(img, valid > 127)
