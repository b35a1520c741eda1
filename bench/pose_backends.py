"""Pose backends side by side: ms per frame and agreement with ultralytics/torch.

    python bench/pose_backends.py [--video PATH] [--frames N] [--threads T] [--json]

Runs every backend on the same frames in the same run (default: the images that ship
inside the ultralytics wheel, or frames sampled from --video). Agreement is measured
against the torch backend, which is ultralytics' own pipeline: people matched by box
IoU >= 0.5, and the mean keypoint distance of matched people in pixels. Prints JSON
with medians; the machine is shared, so compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.vision.pose import PoseEstimator  # noqa: E402
from hub.vision.tracker import iou  # noqa: E402


def frames_from(video: Path | None, n: int) -> list[np.ndarray]:
    if video is None:
        assets = Path(str(resources.files("ultralytics") / "assets"))
        imgs = [cv2.imread(str(p)) for p in sorted(assets.glob("*.jpg"))]
        return [i for i in imgs if i is not None]
    cap = cv2.VideoCapture(str(video))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or n
    out = []
    for k in range(n):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(k * total / n))
        ok, img = cap.read()
        if ok:
            out.append(img)
    cap.release()
    return out


def agreement(ref: list, got: list) -> tuple[int, int, float | None]:
    matched, dists = 0, []
    used: set[int] = set()
    for r in ref:
        best = max(((iou(r.box, g.box), j) for j, g in enumerate(got) if j not in used),
                   default=(0.0, -1))
        if best[0] >= 0.5:
            used.add(best[1])
            matched += 1
            g = got[best[1]]
            vis = (r.keypoints[:, 2] > 0.5) & (g.keypoints[:, 2] > 0.5)
            if vis.any():
                dists.append(float(np.linalg.norm(r.keypoints[vis, :2] - g.keypoints[vis, :2],
                                                  axis=1).mean()))
    return matched, len(ref), (statistics.mean(dists) if dists else None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    frames = frames_from(args.video, args.frames)
    results: dict[str, dict] = {}
    outputs: dict[str, list] = {}
    for name in ("torch", "onnx", "openvino"):
        try:
            est = PoseEstimator(backend=name, imgsz=args.imgsz, threads=args.threads)
        except Exception as e:  # noqa: BLE001 - report and go on with the others
            results[name] = {"error": str(e)}
            continue
        est.detect(frames[0])  # warm-up
        times, outs = [], []
        for _ in range(args.repeat):
            outs = []
            for f in frames:
                t0 = time.perf_counter()
                outs.append(est.detect(f))
                times.append((time.perf_counter() - t0) * 1000)
        outputs[name] = outs
        results[name] = {"ms_per_frame_median": round(statistics.median(times), 1),
                         "ms_per_frame_p90": round(sorted(times)[int(0.9 * len(times))], 1),
                         "people": sum(len(o) for o in outs)}
    if "torch" in outputs:
        base = results["torch"]["ms_per_frame_median"]
        for name, outs in outputs.items():
            m = t = 0
            d = []
            for r, g in zip(outputs["torch"], outs, strict=True):
                a, b, c = agreement(r, g)
                m, t = m + a, t + b
                if c is not None:
                    d.append(c)
            results[name]["people_matched_to_torch"] = f"{m}/{t}"
            results[name]["keypoint_offset_px_mean"] = round(statistics.mean(d), 2) if d else None
            ms = results[name]["ms_per_frame_median"]
            results[name]["speedup_vs_torch"] = round(base / ms, 2)
    report = {"frames": len(frames), "imgsz": args.imgsz, "threads": args.threads,
              "backends": results}
    print(json.dumps(report, indent=1) if args.json else report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
