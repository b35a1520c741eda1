"""The INT8 pose model against the OpenVINO export it is made from: speed and people.

Frames: ``--per-clip`` frames of every clip of the manifest (evenly spaced), each as it
is and turned 90 degrees (what the lying pass feeds the model). Both backends see every
frame in turn, interleaved frame by frame, so they share the machine's load (the
machine is shared: compare the ratio, not the milliseconds). Agreement: people of the
INT8 model matched to the export's by box IoU >= 0.5 (recall, and people only one of
them found), and the median keypoint distance of matched people over keypoints both
see (confidence > 0.5), as a share of the person's box height.

    python bench/pose_int8.py --json [--media /work/shared/media] [--per-clip 3]
        [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.vision.pose import PoseEstimator  # noqa: E402
from hub.vision.tracker import iou  # noqa: E402


def sample(media: Path, per_clip: int) -> list[np.ndarray]:
    manifest = json.loads((media / "manifest.json").read_text(encoding="utf-8"))
    out: list[np.ndarray] = []
    for rec in manifest:
        cap = cv2.VideoCapture(str(media / rec["file"]))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        for k in range(per_clip):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(n * (k + 0.5) / per_clip))
            ok, img = cap.read()
            if ok and img is not None:
                out += [img, cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)]
        cap.release()
    return out


def compare(ref: list, got: list) -> tuple[int, int, int, list[float]]:
    """(matched, reference people, people only ``got`` has, keypoint offsets)."""
    used: set[int] = set()
    offsets: list[float] = []
    for r in ref:
        best = max(((iou(r.box, g.box), j) for j, g in enumerate(got) if j not in used),
                   default=(0.0, -1))
        if best[0] < 0.5:
            continue
        used.add(best[1])
        g = got[best[1]]
        vis = (r.keypoints[:, 2] > 0.5) & (g.keypoints[:, 2] > 0.5)
        if vis.any():
            d = np.linalg.norm(r.keypoints[vis, :2] - g.keypoints[vis, :2], axis=1)
            offsets.append(float(np.median(d)) / max(1.0, r.height))
    return len(used), len(ref), len(got) - len(used), offsets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", type=Path, default=Path("/work/shared/media"))
    ap.add_argument("--per-clip", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    frames = sample(a.media, a.per_clip)
    if not frames:
        print(f"error: no frames from {a.media}", file=sys.stderr)
        return 2
    names = ("openvino", "openvino-int8")
    est = {n: PoseEstimator(backend=n, threads=a.threads) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    outs: dict[str, list[list]] = {n: [] for n in names}
    for rnd in range(a.repeat):
        for f in frames:
            for n in names if rnd % 2 == 0 else names[::-1]:
                t = time.perf_counter()
                people = est[n].detect(f)
                times[n].append((time.perf_counter() - t) * 1000)
                if rnd == 0:
                    outs[n].append(people)
    matched = total = extra = 0
    offsets: list[float] = []
    for r, g in zip(outs["openvino"], outs["openvino-int8"], strict=True):
        m, t, x, o = compare(r, g)
        matched, total, extra, offsets = matched + m, total + t, extra + x, offsets + o
    ms = {n: statistics.median(v) for n, v in times.items()}
    report = {
        "frames": len(frames), "threads": a.threads, "repeat": a.repeat,
        "ms_median": {n: round(v, 1) for n, v in ms.items()},
        "int8_speedup": round(ms["openvino"] / ms["openvino-int8"], 2),
        "people_export": total, "people_matched": matched,
        "recall_vs_export": round(matched / total, 3) if total else None,
        "people_only_int8": extra,
        "keypoint_offset_share_of_height": {
            "median": round(statistics.median(offsets), 4) if offsets else None,
            "p90": round(float(np.percentile(offsets, 90)), 4) if offsets else None},
    }
    print(json.dumps(report) if a.json else json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
