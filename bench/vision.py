"""Vision throughput: the hub's frame pipeline against what a typical user writes.

Everything is measured in the same run on this machine, on the same frames. Hub and
naive take turns clip by clip in one process, so both see the same machine load (the
machine is shared and its load swings); the other parts run in their own processes:

* ``naive_fps``  - ultralytics ``YOLO(yolo11n-pose.pt).predict(frame)`` per frame, default
  settings (640, torch, ultralytics' own thread count): what a user writes, timed on
  every 4th frame of the mix (its cost does not depend on what the frame shows).
* ``hub_fps``    - frames our pipeline fully processes per second with its defaults
  (JPEG decode, checks, motion gate, pose on the default backend, tracker, fall and
  fire-lane rules, evidence), on a realistic mix in which most frames show little
  motion: each real clip (from ``--media``, the manifest's clips) is preceded by a
  still stretch 1.5 times as long (the clip's first frame held, with sensor noise of
  sigma 2 grey levels added to every frame so no two frames are identical).
* accuracy      - people: on sampled frames, the people the hub acted on (found, or
  carried over by the motion gate) against naive's detections (F1 at IoU 0.5);
  events: fall and obstruction alarms of the gated pipeline against the same pipeline
  running the model on every frame, scored against the manifest's ground truth.
* ``streams_at_1fps`` - K simulated cameras, each sending one frame a second of that
  mix through the real broker to one VisionWorker; K is raised until the worker drops
  frames as stale (> 5 % of them) or the analysed share falls below 95 %.
* ``p95_frame_to_alarm_ms`` - fire-lane cameras on the real broker: from publishing
  the frame that completes the condition (the alarm's own timestamp) to the worker's
  ``on_alarm`` call; dwell and grace are excluded by construction.

    python bench/vision.py --json [--media /work/shared/media] [--quick]

The GPU is not used (CI has none). The machine is shared: quote medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

FPS = 5.0  # camera frame rate of the mix (the demo cameras' rate)
STILL_FACTOR = 1.5  # still stretch length per clip, relative to the clip
MAX_CLIP_S = 15.0
T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def log(msg: str) -> None:
    print(f"[bench/vision] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the mix


def build_mix(media: Path, out: Path, quick: bool) -> dict[str, Any]:
    """Decode the manifest's clips at FPS, prepend still stretches, write JPEGs as the
    camera agent would send them (max width 960, quality 80); return the plan."""
    from edge.camera import encode_jpeg

    manifest = json.loads((media / "manifest.json").read_text(encoding="utf-8"))
    if quick:
        manifest = manifest[:4]
    rng = np.random.default_rng(1)
    clips = []
    for rec in manifest:
        path = media / rec["file"]
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            log(f"skip {path}: cannot open")
            continue
        native = cap.get(cv2.CAP_PROP_FPS) or rec.get("fps") or 25.0
        frames: list[np.ndarray] = []
        i, next_t = 0, 0.0
        while True:
            ok = cap.grab()
            if not ok:
                break
            t = i / native
            i += 1
            if t > MAX_CLIP_S:
                break
            if t + 1e-6 >= next_t:
                ok, f = cap.retrieve()
                if ok:
                    frames.append(f)
                    next_t += 1 / FPS
        cap.release()
        if not frames:
            continue
        n_still = int(len(frames) * STILL_FACTOR)
        d = out / rec["name"]
        d.mkdir(parents=True, exist_ok=True)
        kinds = []
        first = frames[0].astype(np.int16)
        for k in range(n_still + len(frames)):
            if k < n_still:
                f = np.clip(first + rng.normal(0, 2, first.shape), 0, 255).astype(np.uint8)
                kinds.append("still")
            else:
                f = frames[k - n_still]
                kinds.append("clip")
            jpeg, w, h = encode_jpeg(f, 80, 960)
            size = [w, h]
            (d / f"{k:05d}.jpg").write_bytes(jpeg)
        zones = [{"name": z["name"], "kind": "fire_lane", "polygon": z["polygon_norm"],
                  "dwell_s": z.get("dwell_s", 10)} for z in rec.get("zones") or []]
        clips.append({"name": rec["name"], "dir": str(d), "n": len(kinds), "kinds": kinds,
                      "size": size,
                      "still_s": n_still / FPS, "events": rec.get("events", []),
                      "zones": zones, "duration_s": len(frames) / FPS})
    total = sum(c["n"] for c in clips)
    still = sum(k == "still" for c in clips for k in c["kinds"])
    return {"clips": clips, "frames": total, "still_share": round(still / max(1, total), 3)}


def _jpegs(clip: dict[str, Any]) -> list[bytes]:
    return [Path(clip["dir"], f"{k:05d}.jpg").read_bytes() for k in range(clip["n"])]


def _sample_ids(plan: dict[str, Any], n: int) -> list[tuple[int, int]]:
    """(clip index, frame index) pairs spread evenly over the whole mix."""
    flat = [(ci, k) for ci, c in enumerate(plan["clips"]) for k in range(c["n"])]
    idx = np.linspace(0, len(flat) - 1, min(n, len(flat))).astype(int)
    return [flat[i] for i in idx]


# ---------------------------------------------------------------- parts (subprocesses)


def part_throughput(plan: dict[str, Any], naive_every: int, backend: str) -> dict[str, Any]:
    """Hub and naive in one process, clip by clip in turn, so that both see the same
    machine load (the machine is shared; load swings by 2x within minutes). Naive runs on
    every ``naive_every``-th frame (its cost per frame does not depend on the content)."""
    import torch
    from ultralytics import YOLO

    from hub.vision.backends import model_path
    from hub.vision.pose import PoseEstimator

    cv_threads = cv2.getNumThreads()
    naive = YOLO(str(model_path()))
    warm = np.zeros((360, 640, 3), np.uint8)
    naive.predict(warm, verbose=False)  # first call builds the model; not timed
    naive_threads = torch.get_num_threads()  # what ultralytics chose
    pose = PoseEstimator(backend=backend, threads=os.cpu_count() or 1)
    pose.detect(warm)  # warm-up, not timed
    lying = {"calls": 0, "s": 0.0}
    rotated = getattr(pose, "detect_rotated", None)
    if rotated is not None:  # measure what the fall rules' extra "lying" pass costs
        def timed_rotated(*args: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return rotated(*args, **kw)
            finally:
                lying["calls"] += 1
                lying["s"] += time.perf_counter() - t

        pose.detect_rotated = timed_rotated  # type: ignore[method-assign]
    hub_boxes: dict[str, list[list[float]]] = {}
    naive_boxes: dict[str, list[list[float]]] = {}
    alarms: dict[str, list[dict[str, Any]]] = {}
    hub_frames = hub_pose = naive_frames = 0
    hub_wall = naive_wall = 0.0
    naive_times: list[float] = []
    for clip in plan["clips"]:
        data = _jpegs(clip)
        cv2.setNumThreads(1)  # as the worker does
        pipe = _pipeline(clip, pose, True)
        out = alarms.setdefault(clip["name"], [])
        for k, jpeg in enumerate(data):
            meta = _frame_meta(clip["name"], k, *clip["size"])
            t = time.perf_counter()
            got = pipe.process(meta, jpeg)
            hub_wall += time.perf_counter() - t
            hub_frames += 1
            for a in got:
                out.append({"t": k / FPS - clip["still_s"], "rule": a.rule, "state": a.state.value})
            if k % naive_every == 0:
                hub_boxes[f"{clip['name']}:{k}"] = [list(p.box) for p in pipe.analyzer._last_people]
        hub_pose += pipe.stats.pose_runs
        cv2.setNumThreads(cv_threads)
        torch.set_num_threads(naive_threads)
        for k in range(0, len(data), naive_every):
            t = time.perf_counter()
            frame = cv2.imdecode(np.frombuffer(data[k], np.uint8), cv2.IMREAD_COLOR)
            r = naive.predict(frame, verbose=False)[0]
            dt = time.perf_counter() - t
            naive_wall += dt
            naive_times.append(dt)
            naive_frames += 1
            naive_boxes[f"{clip['name']}:{k}"] = (r.boxes.xyxy.cpu().numpy().tolist()
                                                  if r.boxes is not None else [])
        log(f"{clip['name']}: hub {pipe.stats.processed / max(pipe.stats.total_s, 1e-9):.1f} fps"
            f" ({pipe.stats.pose_runs} pose runs of {pipe.stats.processed}), naive so far "
            f"{naive_frames / naive_wall:.1f} fps")
    return {"hub_fps": hub_frames / hub_wall, "hub_frames": hub_frames, "hub_pose_runs": hub_pose,
            "naive_fps": naive_frames / naive_wall, "naive_frames": naive_frames,
            "naive_median_ms": statistics.median(naive_times) * 1000,
            "naive_torch_threads": naive_threads, "backend": pose.backend_name,
            "lying_pass_calls": lying["calls"], "lying_pass_share": lying["s"] / hub_wall,
            "hub_boxes": hub_boxes, "naive_boxes": naive_boxes, "alarms": alarms}


def _pipeline(clip: dict[str, Any], pose: Any, gated: bool) -> Any:
    from hub.config import FallRule, ZoneConfig
    from hub.vision.analyzer import CameraAnalyzer
    from hub.vision.motion import MotionGate
    from hub.vision.pipeline import CameraPipeline

    zones = [ZoneConfig(**z) for z in clip["zones"]]
    ev = Path(tempfile.mkdtemp(prefix="bench-ev-"))
    # Gated: the worker's defaults. Reference: the model on every frame.
    gate = None if gated else MotionGate(threshold=0.0)
    return CameraPipeline(
        clip["name"],
        lambda: CameraAnalyzer(clip["name"], "11010500100201", zones, FallRule(), ev, pose=pose),
        pose.detect, gate, **({} if gated else {"pose_min_interval_s": 0.0}))


def _frame_meta(name: str, k: int, w: int, h: int) -> Any:
    from hub.protocol import FrameMeta

    return FrameMeta(device=name, seq=k, ts=T0 + timedelta(seconds=k / FPS), width=w, height=h)


def part_every_frame(plan: dict[str, Any], backend: str) -> dict[str, Any]:
    """The accuracy reference: the same pipeline with the model on every clip frame."""
    from hub.vision.pose import PoseEstimator

    cv2.setNumThreads(1)
    pose = PoseEstimator(backend=backend, threads=os.cpu_count() or 1)
    alarms: dict[str, list[dict[str, Any]]] = {}
    for clip in plan["clips"]:
        pipe = _pipeline(clip, pose, False)
        out = alarms.setdefault(clip["name"], [])
        for k, jpeg in enumerate(_jpegs(clip)):
            if clip["kinds"][k] == "still":
                continue
            for a in pipe.process(_frame_meta(clip["name"], k, *clip["size"]), jpeg):
                out.append({"t": k / FPS - clip["still_s"], "rule": a.rule, "state": a.state.value})
    return {"alarms": alarms}


def part_streams(plan: dict[str, Any], broker_url: str, max_k: int, trial_s: float,
                 backend: str) -> dict[str, Any]:
    from hub.services import parse_mqtt_url

    broker = parse_mqtt_url(broker_url)
    pose = _estimators(backend)
    # Each simulated camera plays the mix at 1 frame/s: every FPS-th frame.
    streams = [_jpegs(c)[:: int(FPS)] for c in plan["clips"]]
    sizes = [tuple(c["size"]) for c in plan["clips"]]
    trials: list[dict[str, Any]] = []

    def trial(k: int) -> bool:
        r = _stream_trial(k, streams, sizes, broker, pose, trial_s)
        trials.append(r)
        log(f"streams K={k}: {r}")
        return r["ok"]

    k, good, bad = 1, 0, None
    while k <= max_k:
        if trial(k):
            good, k = k, k * 2
        else:
            bad = k
            break
    if bad is not None:
        lo, hi = good, bad
        while hi - lo > max(1, lo // 8):
            mid = (lo + hi) // 2
            if trial(mid):
                lo = mid
            else:
                hi = mid
        good = lo
    return {"streams_at_1fps": good, "trials": trials}


def _estimators(backend: str) -> Any:
    """A factory handing out one model instance per analysis thread, made once for all
    trials, with the worker's default thread split (one thread each on a multi-core
    machine with several cameras)."""
    import itertools

    from hub.vision.pose import PoseEstimator

    cores = os.cpu_count() or 1
    ests = [PoseEstimator(backend=backend, threads=1) for _ in range(cores)]
    for e in ests:
        e.detect(np.zeros((240, 320, 3), np.uint8))
    it = itertools.cycle(ests)
    return lambda: next(it)


def _site(site_id: str, cams: dict[str, dict[str, Any]]) -> Any:
    import yaml

    from hub.config import Site

    raw = yaml.safe_load((ROOT / "deploy/sites/demo.yaml").read_text(encoding="utf-8"))
    raw["site"]["id"] = site_id
    grid = next(d["grid"] for d in raw["devices"] if d["kind"] == "camera")
    raw["devices"] = [d for d in raw["devices"] if d["kind"] != "camera"] + [
        {"id": cid, "kind": "camera", "grid": grid, "location": {"x": 0.5, "y": 0.5},
         "camera": cam} for cid, cam in cams.items()]
    return Site.model_validate(raw)


def _publisher(broker: Any) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if broker.username:
        c.username_pw_set(broker.username, broker.password)
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def _stream_trial(k: int, streams: list[list[bytes]], sizes: list[tuple[int, int]], broker: Any,
                  pose: Any, trial_s: float) -> dict[str, Any]:
    import uuid

    from hub import protocol
    from hub.protocol import FrameMeta, Kind
    from hub.vision.worker import VisionWorker

    site_id = f"bench{uuid.uuid4().hex[:8]}"
    cams = {f"cam-{i:03d}": {"source": "sim", "fps": 1} for i in range(k)}
    site = _site(site_id, cams)
    w = VisionWorker(site, broker, Path(tempfile.mkdtemp(prefix="bench-vw-")), lambda a: None,
                     pose_factory=pose)
    w.start()
    pub = _publisher(broker)
    try:
        start = time.monotonic() + 0.5
        seconds = int(trial_s)
        for s in range(seconds):
            for i, cid in enumerate(cams):
                # Cameras spread over the second, as real ones are not in step.
                due = start + s + i / k
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                frames = streams[i % len(streams)]
                jpeg = frames[(s + 7 * i) % len(frames)]
                wd, ht = sizes[i % len(streams)]
                meta = FrameMeta(device=cid, seq=s, ts=T0 + timedelta(seconds=s), width=wd,
                                 height=ht)
                pub.publish(protocol.topic(site_id, cid, Kind.FRAME),
                            protocol.encode_frame(meta, jpeg), qos=0)
        time.sleep(1.5)  # let the last frames finish
    finally:
        pub.disconnect()
        pub.loop_stop()
        w.stop()
    h = w.health()
    received = sum(v["frames_received"] for v in h.values())
    processed = sum(v["frames_processed"] for v in h.values())
    stale = sum(v["dropped_stale"] for v in h.values())
    rejected = sum(sum(v["rejected"].values()) for v in h.values())
    sent = k * int(trial_s)
    ok = (received >= 0.98 * sent and processed >= 0.95 * sent and stale <= 0.05 * sent
          and rejected == 0)
    return {"k": k, "sent": sent, "received": received, "processed": processed,
            "dropped_stale": stale, "rejected": rejected, "ok": ok}


def _lane_frames(n: int, placed: tuple[int, int]) -> list[bytes]:
    """A lane scene at 320x240 where a box stands from frame placed[0] to placed[1]."""
    rng = np.random.default_rng(3)
    base = np.full((240, 320, 3), 110, np.uint8)
    base[120:230, 30:290] = (150, 150, 145)
    for _ in range(120):
        x, y = int(rng.integers(0, 310)), int(rng.integers(0, 236))
        base[y:y + 3, x:x + 10] = rng.integers(60, 200, 3)
    out = []
    for i in range(n):
        img = base.copy()
        if placed[0] <= i < placed[1]:
            cv2.rectangle(img, (110, 140), (210, 215), (40, 70, 120), -1)
        img = cv2.add(img, rng.integers(0, 3, img.shape, dtype=np.uint8))
        out.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    return out


def part_latency(broker_url: str, cameras: int, cycles: int, backend: str) -> dict[str, Any]:
    import uuid

    from hub import protocol
    from hub.protocol import FrameMeta, Kind
    from hub.services import parse_mqtt_url
    from hub.vision.worker import VisionWorker

    broker = parse_mqtt_url(broker_url)
    pose = _estimators(backend)
    fps, cycle = 4, 36  # 9 s cycles at 4 fps: box from 1.5 s to 6.5 s
    frames = _lane_frames(cycle, (6, 26))
    lane = [(0.1, 0.5), (0.9, 0.5), (0.9, 0.95), (0.1, 0.95)]
    cams = {f"lane-{i}": {"source": "sim", "fps": fps, "zones": [
        {"name": "lane", "kind": "fire_lane", "polygon": lane, "dwell_s": 1, "clear_s": 1,
         "threshold": 0.1}]} for i in range(cameras)}
    site_id = f"bench{uuid.uuid4().hex[:8]}"
    published: dict[tuple[str, datetime], float] = {}
    latencies: list[float] = []
    lock = threading.Lock()

    def on_alarm(a: Any) -> None:
        now = time.monotonic()
        with lock:
            t = published.get((a.device_id, a.ts))
            if t is not None:
                latencies.append((now - t) * 1000)

    w = VisionWorker(_site(site_id, cams), broker, Path(tempfile.mkdtemp(prefix="bench-lat-")),
                     on_alarm, pose_factory=pose)
    w.start()
    pub = _publisher(broker)
    try:
        start = time.monotonic() + 0.5
        wall0 = datetime.now(UTC)
        for j in range(cycle * cycles):
            for i, cid in enumerate(cams):
                due = start + j / fps + i / (fps * cameras)
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                ts = wall0 + timedelta(seconds=j / fps + i / (fps * cameras))
                meta = FrameMeta(device=cid, seq=j, ts=ts, width=320, height=240)
                payload = protocol.encode_frame(meta, frames[j % cycle])
                with lock:
                    published[(cid, ts)] = time.monotonic()
                pub.publish(protocol.topic(site_id, cid, Kind.FRAME), payload, qos=0)
        time.sleep(2.0)
    finally:
        pub.disconnect()
        pub.loop_stop()
        w.stop()
    lat = sorted(latencies)
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else None
    return {"alarms": len(lat), "p95_ms": p95, "median_ms": statistics.median(lat) if lat else None,
            "cameras": cameras, "camera_fps": fps, "expected_alarms": 2 * cycles * cameras}


# ---------------------------------------------------------------- scoring


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def agreement(hub: dict[str, list], naive: dict[str, list]) -> dict[str, float]:
    tp = fp = fn = 0
    for key, ref in naive.items():
        got = list(hub.get(key, []))
        used = set()
        for r in ref:
            best, bi = 0.0, -1
            for j, g in enumerate(got):
                if j not in used and (v := _iou(r, g)) > best:
                    best, bi = v, j
            if best >= 0.5:
                tp += 1
                used.add(bi)
            else:
                fn += 1
        fp += len(got) - len(used)
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {"precision": round(p, 3), "recall": round(r, 3),
            "f1": round(2 * p * r / (p + r), 3) if p + r else 0.0}


def score_events(plan: dict[str, Any], alarms: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Ground-truth events found (falls, obstructions) and alarms outside any event."""
    found = missed = false = 0
    for clip in plan["clips"]:
        got = [a for a in alarms.get(clip["name"], []) if a["state"] == "firing"]
        windows: list[tuple[str, float, float]] = []
        for e in clip["events"]:
            if e.get("type") == "fall":
                end = e.get("t_floor_end")
                end = clip["duration_s"] if end is None else end
                windows.append(("fall", e["t_onset"], end + 5))
            elif e.get("type") == "object_placed" and clip["zones"]:
                dwell = clip["zones"][0]["dwell_s"]
                windows.append(("firelane", e["t_placed"], e["t_placed"] + dwell + 10))
        for rule, a, b in windows:
            if b > clip["duration_s"] + 5 and rule == "firelane" and a + 1 > clip["duration_s"]:
                continue
            if any(x["rule"] == rule and a <= x["t"] <= b for x in got):
                found += 1
            else:
                missed += 1
        for x in got:
            if not any(x["rule"] == r and a <= x["t"] <= b for r, a, b in windows):
                false += 1
    return {"events_found": found, "events_missed": missed, "false_alarms": false}


# ---------------------------------------------------------------- orchestration


def _run_part(args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"part {args[:2]} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--media", default="/work/shared/media", help="folder with manifest.json")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true", help="fewer clips and shorter trials")
    p.add_argument("--mqtt", default="", help="broker URL (default: 127.0.0.1:1883 or own)")
    p.add_argument("--backend", default="auto", help="pose backend for the hub parts")
    p.add_argument("--naive-every", type=int, default=4, help="naive runs on every Nth frame")
    p.add_argument("--max-streams", type=int, default=64)
    p.add_argument("--part", help=argparse.SUPPRESS)
    p.add_argument("--plan", help=argparse.SUPPRESS)
    p.add_argument("--opt", default="{}", help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.part:  # a child process: one measurement, one JSON line on stdout
        plan = json.loads(Path(a.plan).read_text()) if a.plan else {}
        o = json.loads(a.opt)
        if a.part == "throughput":
            res = part_throughput(plan, o["naive_every"], o["backend"])
        elif a.part == "every":
            res = part_every_frame(plan, o["backend"])
        elif a.part == "streams":
            res = part_streams(plan, o["mqtt"], o["max_k"], o["trial_s"], o["backend"])
        elif a.part == "latency":
            res = part_latency(o["mqtt"], o["cameras"], o["cycles"], o["backend"])
        else:
            raise SystemExit(f"unknown part {a.part}")
        print(json.dumps(res))
        return 0

    from hub import services

    media = Path(a.media)
    if not (media / "manifest.json").is_file():
        print(f"error: no manifest.json in {media} (pass --media)", file=sys.stderr)
        return 2
    own_broker = None
    mqtt_url = a.mqtt
    if not mqtt_url:
        if services.tcp_open("127.0.0.1", 1883):
            mqtt_url = "mqtt://127.0.0.1:1883"
        else:
            own_broker = services.ensure_broker(None, Path(tempfile.mkdtemp(prefix="bench-mq-")))
            mqtt_url = own_broker.url
    try:
        with tempfile.TemporaryDirectory(prefix="bench-vision-") as tmp:
            log("building the frame mix")
            plan = build_mix(media, Path(tmp) / "mix", a.quick)
            plan_file = Path(tmp) / "plan.json"
            plan_file.write_text(json.dumps(plan))
            pa = ["--plan", str(plan_file)]
            log(f"mix: {plan['frames']} frames, {plan['still_share']:.0%} still; hub and naive")
            thr = _run_part(["--part", "throughput", *pa, "--opt", json.dumps(
                {"naive_every": a.naive_every, "backend": a.backend})], 3600)
            log(f"hub {thr['hub_fps']:.2f} fps ({thr['backend']}), naive {thr['naive_fps']:.2f}"
                " fps; the same pipeline with the model on every frame, for accuracy")
            every = _run_part(["--part", "every", *pa, "--opt", json.dumps(
                {"backend": a.backend})], 3600)
            log("streams part")
            streams = _run_part(["--part", "streams", *pa, "--opt", json.dumps(
                {"mqtt": mqtt_url, "max_k": 8 if a.quick else a.max_streams,
                 "trial_s": 8 if a.quick else 12, "backend": a.backend})], 3600)
            log("latency part")
            lat = _run_part(["--part", "latency", "--opt", json.dumps(
                {"mqtt": mqtt_url, "cameras": 2 if a.quick else 4,
                 "cycles": 1 if a.quick else 3, "backend": a.backend})], 1800)
    finally:
        if own_broker is not None:
            own_broker.stop()

    people = agreement(thr["hub_boxes"], thr["naive_boxes"])
    ev_gated = score_events(plan, thr["alarms"])
    ev_every = score_events(plan, every["alarms"])
    out = {
        "naive_fps": round(thr["naive_fps"], 2),
        "hub_fps": round(thr["hub_fps"], 2),
        "speedup": round(thr["hub_fps"] / thr["naive_fps"], 2) if thr["naive_fps"] else None,
        "streams_at_1fps": streams["streams_at_1fps"],
        "p95_frame_to_alarm_ms": round(lat["p95_ms"], 1) if lat["p95_ms"] is not None else None,
        "median_frame_to_alarm_ms": (round(lat["median_ms"], 1)
                                     if lat["median_ms"] is not None else None),
        "alarms_timed": lat["alarms"],
        "hub_backend": thr["backend"],
        "naive_torch_threads": thr["naive_torch_threads"],
        "naive_median_ms": round(thr["naive_median_ms"], 1),
        "mix": {"clips": len(plan["clips"]), "frames": plan["frames"],
                "still_share": plan["still_share"], "camera_fps": FPS,
                "naive_frames": thr["naive_frames"]},
        "pose_run_share": round(thr["hub_pose_runs"] / max(1, thr["hub_frames"]), 3),
        # Share of the hub's time spent in the fall rules' rotated "lying" pass.
        "lying_pass_time_share": round(thr["lying_pass_share"], 3),
        "lying_pass_calls": thr["lying_pass_calls"],
        "accuracy": {
            "people_vs_naive": people,
            "events_gated": ev_gated,
            "events_pose_every_frame": ev_every,
        },
        "stream_trials": [{k: t[k] for k in ("k", "processed", "sent", "dropped_stale", "ok")}
                          for t in streams["trials"]],
        "cpu_count": os.cpu_count(),
        "gpu_used": False,
    }
    if a.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
