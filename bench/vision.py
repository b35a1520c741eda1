"""Vision throughput on real CCTV footage: the hub's frame pipeline against what users write.

Everything is measured in one run on this machine, on the same footage. Hub, skilled
and naive take turns clip by clip in one process, so all three see the same machine
load (the machine is shared and its load swings); the other parts run in their own
processes.

The footage (``--media``, default /work/shared/media) is real only: the manifest's
clips from fixed cameras (``camera_view`` says CCTV, elevated, ceiling, wall, overhead,
security or doorbell camera: the plaza ``vtest``, the Le2i coffee room, the hallway,
kitchen, garage and street cameras), whole, with no frame made up. ``--all-clips``
takes every clip of the manifest instead. Each clip is sampled the way ultralytics'
``vid_stride`` samples it: stride ``s = round(file fps / 5)``, native frames ``s-1,
2s-1, ...`` (about 5 a second, the rate at which the hub analyses moving scenes and
``hub eval`` measures the detectors), and sent to the hub as the camera agent sends
them (JPEG, quality 80, at most 960 wide, stamped in file time).

Unit of every ``*_fps``: frames of a 5 frame/s camera stream handled per second of wall
time, i.e. 5 x (seconds of footage covered / seconds of wall time). For the hub and the
skilled user that is also, within rounding, the frames analysed per second.

* ``naive_fps``   - ``YOLO(yolo11n-pose.pt).predict(frame)`` per frame with ultralytics'
  defaults (640, torch, ultralytics' own thread count, reported as
  ``naive_torch_threads``): what a user writes first. Timed on every
  ``--naive-every``-th frame of the mix (its cost does not depend on the content).
* ``skilled_fps`` - what a capable user writes: the same model exported to OpenVINO
  with ultralytics (``model.export(format="openvino", dynamic=True)``, offline; the
  hub's exported file under var/models is reused), then
  ``YOLO(openvino_dir).predict(source=video, vid_stride=s, stream=True)`` on the clip
  file: the same 5 analysed frames a second of footage as the hub, with as many
  threads as the hub (torch for pre/post-processing set to the machine's cores;
  OpenVINO's own thread count is read back and reported). Wall time includes reading
  and decoding the video (``skilled_read_share`` is the part outside ultralytics'
  pre-process, inference and post-process).
* ``hub_fps``     - frames our pipeline fully handles with its defaults (JPEG decode,
  checks, motion gate, pose on the default backend with all cores, tracker, fall and
  fire-lane rules, lying pass, evidence). ``gate_skip_share``: the share of frames on
  which the motion gate skipped the model (``CameraPipeline.stats.gate_reasons
  ["still"]``); ``pose_run_share`` the share on which the model ran.
  ``hub_time_share``: where the hub's time went (``PipelineStats``: JPEG decode and
  checks, motion gate, the model on whole frames, the lying pass's turned looks, the
  rest: tracker, rules, evidence), with ``pose_ms_per_frame_call`` and
  ``lying_ms_per_look``. ``--backend`` runs the hub on another pose backend (e.g.
  ``openvino-int8``); the skilled user keeps the OpenVINO export.
* accuracy        - people: the people the hub acted on (found, or carried over by the
  gate) against the skilled user's on every frame of the mix, and against naive's on
  the frames naive ran (F1 at IoU 0.5); events: fall and obstruction alarms of the
  gated pipeline against the same pipeline running the model on every frame, scored
  against the manifest's ground truth (no hold after a clip ends: events that cannot
  complete within the footage are not counted).
* ``streams_at_1fps`` - K simulated cameras, each sending one frame a second of the mix
  (every 5th frame) through the real broker to one VisionWorker; K is raised until
  the worker drops frames as stale (> 5 % of them) or the analysed share falls below
  95 %.
* ``p95_frame_to_alarm_ms`` - the mix's fall and obstruction clips played in real time
  by ``--latency-cameras`` cameras at once through the real broker to one VisionWorker:
  from publishing a frame to the worker's ``on_alarm`` call for an alarm on that frame,
  counting only alarms on frames where the pose model ran (the others are reported as
  ``alarms_without_pose``). ``p95_pose_frame_ms``: publish to the end of analysis over
  every frame on which the model ran, in the same trial.

    python bench/vision.py --json [--media /work/shared/media] [--quick]

The GPU is not used (CI has none). The machine is shared: quote medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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

FPS = 5.0  # analysed rate (the hub's pose_min_interval_s = 0.2 s) and the unit of *_fps
QUICK_CLIP_S = 10.0  # --quick: clips cut to this length
QUICK_CLIPS = ("vtest", "le2i_coffee_cam2", "aboda_cut_video1")
T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
# Fixed cameras, as the manifest's camera_view words them.
FIXED_VIEW = re.compile(r"cctv|elevated|ceiling|overhead|security camera|wall camera|"
                        r"high fixed|doorbell", re.IGNORECASE)


def log(msg: str) -> None:
    print(f"[bench/vision] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the mix


def stride_for(native_fps: float) -> int:
    """ultralytics' ``vid_stride`` that analyses about FPS frames a second."""
    return max(1, round(native_fps / FPS))


def select_clips(manifest: list[dict[str, Any]], all_clips: bool,
                 quick: bool) -> list[dict[str, Any]]:
    if quick:
        return [r for r in manifest if r["name"] in QUICK_CLIPS]
    if all_clips:
        return manifest
    return [r for r in manifest if FIXED_VIEW.search(r.get("camera_view") or "")]


def build_mix(media: Path, out: Path, quick: bool, all_clips: bool) -> dict[str, Any]:
    """Decode the chosen clips as ``vid_stride`` does (grab s frames, keep the last),
    write JPEGs as the camera agent would send them (max width 960, quality 80); return
    the plan. Nothing is added: every frame is a frame of the clip."""
    from edge.camera import encode_jpeg

    manifest = json.loads((media / "manifest.json").read_text(encoding="utf-8"))
    clips = []
    for rec in select_clips(manifest, all_clips, quick):
        path = media / rec["file"]
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            log(f"skip {path}: cannot open")
            continue
        native = cap.get(cv2.CAP_PROP_FPS) or rec.get("fps") or 25.0
        s = stride_for(native)
        limit = int(QUICK_CLIP_S * native) if quick else None
        d = out / rec["name"]
        d.mkdir(parents=True, exist_ok=True)
        ts: list[float] = []
        size, src_w = [0, 0], 0
        i = 0
        while limit is None or i < limit:
            if not cap.grab():
                break
            i += 1
            if i % s:
                continue
            ok, f = cap.retrieve()
            if not ok or f is None:
                break
            src_w = f.shape[1]
            jpeg, w, h = encode_jpeg(f, 80, 960)
            size = [w, h]
            (d / f"{len(ts):05d}.jpg").write_bytes(jpeg)
            ts.append((i - 1) / native)  # file time of native frame i-1
        cap.release()
        if not ts:
            continue
        zones = [{"name": z["name"], "kind": "fire_lane", "polygon": z["polygon_norm"],
                  "dwell_s": z.get("dwell_s", 10)} for z in rec.get("zones") or []]
        clips.append({"name": rec["name"], "file": str(path), "dir": str(d), "n": len(ts),
                      "ts": ts, "stride": s, "native_fps": native, "size": size,
                      "scale": size[0] / src_w, "footage_s": len(ts) * s / native,
                      "duration_s": len(ts) * s / native, "events": rec.get("events", []),
                      "zones": zones, "camera_view": rec.get("camera_view")})
    return {"clips": clips, "frames": sum(c["n"] for c in clips),
            "footage_s": round(sum(c["footage_s"] for c in clips), 2)}


def _jpegs(clip: dict[str, Any]) -> list[bytes]:
    return [Path(clip["dir"], f"{k:05d}.jpg").read_bytes() for k in range(clip["n"])]


def _fps(footage_s: float, wall_s: float) -> float:
    """The unit of every *_fps: frames of a FPS camera stream per second of wall time."""
    return FPS * footage_s / wall_s if wall_s > 0 else 0.0


# ---------------------------------------------------------------- parts (subprocesses)


def _skilled_model() -> Any:
    """The OpenVINO export a capable user makes with ultralytics, loaded by ultralytics.
    The hub's export (same model, same exporter, dynamic input) is reused."""
    from ultralytics import YOLO

    from hub.vision.backends import _exported

    return YOLO(str(_exported("openvino", 640)), task="pose")


def part_throughput(plan: dict[str, Any], naive_every: int, backend: str) -> dict[str, Any]:
    """Hub, skilled and naive in one process, clip by clip in turn, so that all three
    see the same machine load (the machine is shared; load swings by 2x within minutes).
    Naive runs on every ``naive_every``-th frame (its cost does not depend on content)."""
    import torch
    from ultralytics import YOLO

    from hub.vision.backends import model_path
    from hub.vision.pose import PoseEstimator

    cores = os.cpu_count() or 1
    cv_threads = cv2.getNumThreads()
    warm = np.zeros((360, 640, 3), np.uint8)
    naive = YOLO(str(model_path()))
    naive.predict(warm, verbose=False)  # first call builds the model; not timed
    naive_threads = torch.get_num_threads()  # what ultralytics chose
    skilled = _skilled_model()
    torch.set_num_threads(cores)
    skilled.predict(warm, verbose=False)  # compiles the model; not timed
    skilled_ov_threads = _ov_threads(skilled)
    pose = PoseEstimator(backend=backend, threads=cores)
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
    skilled_boxes: dict[str, list[list[float]]] = {}
    alarms: dict[str, list[dict[str, Any]]] = {}
    reasons: dict[str, int] = {}
    hub_frames = hub_pose = naive_frames = skilled_frames = 0
    hub_wall = naive_wall = skilled_wall = skilled_inner = 0.0
    hub_footage = naive_footage = skilled_footage = 0.0
    naive_times: list[float] = []
    per_clip: list[dict[str, Any]] = []
    spent = {"decode": 0.0, "gate": 0.0, "pose": 0.0, "total": 0.0}  # PipelineStats' *_s
    for clip in plan["clips"]:
        data = _jpegs(clip)
        per_frame_s = clip["stride"] / clip["native_fps"]  # footage one mix frame stands for
        # --- hub
        cv2.setNumThreads(1)  # as the worker does
        pipe = _pipeline(clip, pose, True)
        out = alarms.setdefault(clip["name"], [])
        wall0 = hub_wall
        for k, jpeg in enumerate(data):
            meta = _frame_meta(clip, k)
            t = time.perf_counter()
            got = pipe.process(meta, jpeg)
            hub_wall += time.perf_counter() - t
            for a in got:
                out.append({"t": clip["ts"][k], "rule": a.rule, "state": a.state.value})
            hub_boxes[f"{clip['name']}:{k}"] = [list(p.box) for p in pipe.analyzer._last_people]
        hub_frames += len(data)
        hub_footage += len(data) * per_frame_s
        hub_pose += pipe.stats.pose_runs
        for part in spent:
            spent[part] += getattr(pipe.stats, f"{part}_s")
        for r, c in pipe.stats.gate_reasons.items():
            reasons[r] = reasons.get(r, 0) + c
        cv2.setNumThreads(cv_threads)
        # --- skilled: ultralytics + OpenVINO on the video file with vid_stride
        torch.set_num_threads(cores)
        n = 0
        t = time.perf_counter()
        gen = skilled.predict(source=clip["file"], vid_stride=clip["stride"], stream=True,
                              verbose=False)
        for r in gen:
            b = r.boxes.xyxy.cpu().numpy() * clip["scale"] if r.boxes is not None else []
            skilled_boxes[f"{clip['name']}:{n}"] = [list(map(float, x)) for x in b]
            skilled_inner += sum(r.speed.values()) / 1000
            n += 1
            if n >= clip["n"]:
                break
        gen.close()
        dt = time.perf_counter() - t
        skilled_wall += dt
        skilled_frames += n
        skilled_footage += n * per_frame_s
        # --- naive
        torch.set_num_threads(naive_threads)
        nw0 = naive_wall
        for k in range(0, len(data), naive_every):
            t = time.perf_counter()
            frame = cv2.imdecode(np.frombuffer(data[k], np.uint8), cv2.IMREAD_COLOR)
            r = naive.predict(frame, verbose=False)[0]
            d = time.perf_counter() - t
            naive_wall += d
            naive_times.append(d)
            naive_frames += 1
            naive_footage += per_frame_s
            naive_boxes[f"{clip['name']}:{k}"] = (r.boxes.xyxy.cpu().numpy().tolist()
                                                  if r.boxes is not None else [])
        st = pipe.stats
        row = {"clip": clip["name"], "frames": len(data),
               "hub_fps": round(_fps(len(data) * per_frame_s, hub_wall - wall0), 2),
               "skilled_fps": round(_fps(n * per_frame_s, dt), 2),
               "naive_fps": round(_fps(len(range(0, len(data), naive_every)) * per_frame_s,
                                       naive_wall - nw0), 2),
               "gate_skip_share": round(st.gate_reasons.get("still", 0) / max(1, st.processed), 3),
               "pose_run_share": round(st.pose_runs / max(1, st.processed), 3)}
        per_clip.append(row)
        log(f"{clip['name']}: {row}")
    return {"hub_fps": _fps(hub_footage, hub_wall), "hub_frames": hub_frames,
            "hub_pose_runs": hub_pose, "gate_reasons": reasons,
            "skilled_fps": _fps(skilled_footage, skilled_wall), "skilled_frames": skilled_frames,
            "skilled_read_share": 1 - skilled_inner / skilled_wall if skilled_wall else None,
            "skilled_torch_threads": cores, "skilled_openvino_threads": skilled_ov_threads,
            "naive_fps": _fps(naive_footage, naive_wall), "naive_frames": naive_frames,
            "naive_median_ms": statistics.median(naive_times) * 1000,
            "naive_torch_threads": naive_threads, "backend": pose.backend_name,
            "hub_pose_threads": cores,
            "lying_pass_calls": lying["calls"], "lying_pass_share": lying["s"] / hub_wall,
            "hub_time_s_total": spent["total"],
            "hub_time_s": {**{k: v for k, v in spent.items() if k != "total"},
                           "lying_pass": lying["s"],
                           "rules_and_rest": spent["total"] - spent["decode"] - spent["gate"]
                           - spent["pose"] - lying["s"]},
            "hub_boxes": hub_boxes, "naive_boxes": naive_boxes, "skilled_boxes": skilled_boxes,
            "alarms": alarms, "per_clip": per_clip}


def _ov_threads(model: Any) -> int | None:
    """OpenVINO's inference thread count in ultralytics' compiled model (read back)."""
    try:
        return int(model.predictor.model.backend.ov_compiled_model.get_property(
            "INFERENCE_NUM_THREADS"))
    except Exception:  # noqa: BLE001 - only a report; ultralytics' internals may move
        return None


def _pipeline(clip: dict[str, Any], pose: Any, gated: bool) -> Any:
    from hub.config import FallRule, ZoneConfig
    from hub.motion import MotionGate
    from hub.vision.analyzer import CameraAnalyzer
    from hub.vision.pipeline import CameraPipeline

    zones = [ZoneConfig(**z) for z in clip["zones"]]
    ev = Path(tempfile.mkdtemp(prefix="bench-ev-"))
    # Gated: the worker's defaults. Reference: the model on every frame.
    gate = None if gated else MotionGate(threshold=0.0)
    return CameraPipeline(
        clip["name"],
        lambda: CameraAnalyzer(clip["name"], "11010500100201", zones, FallRule(), ev, pose=pose),
        pose.detect, gate, **({} if gated else {"pose_min_interval_s": 0.0}))


def _frame_meta(clip: dict[str, Any], k: int) -> Any:
    from hub.protocol import FrameMeta

    w, h = clip["size"]
    return FrameMeta(device=clip["name"], seq=k, ts=T0 + timedelta(seconds=clip["ts"][k]),
                     width=w, height=h)


def part_every_frame(plan: dict[str, Any], backend: str) -> dict[str, Any]:
    """The accuracy reference: the same pipeline with the model on every frame."""
    from hub.vision.pose import PoseEstimator

    cv2.setNumThreads(1)
    pose = PoseEstimator(backend=backend, threads=os.cpu_count() or 1)
    alarms: dict[str, list[dict[str, Any]]] = {}
    for clip in plan["clips"]:
        pipe = _pipeline(clip, pose, False)
        out = alarms.setdefault(clip["name"], [])
        for k, jpeg in enumerate(_jpegs(clip)):
            for a in pipe.process(_frame_meta(clip, k), jpeg):
                out.append({"t": clip["ts"][k], "rule": a.rule, "state": a.state.value})
    return {"alarms": alarms}


def part_streams(plan: dict[str, Any], broker_url: str, max_k: int, trial_s: float,
                 backend: str) -> dict[str, Any]:
    from hub.services import parse_mqtt_url

    broker = parse_mqtt_url(broker_url)
    pose = _estimators(backend)
    # Each simulated camera plays a clip of the mix at 1 frame/s: every FPS-th frame.
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
    pose_runs = sum(v["pose_runs"] for v in h.values())
    stale = sum(v["dropped_stale"] for v in h.values())
    rejected = sum(sum(v["rejected"].values()) for v in h.values())
    sent = k * int(trial_s)
    ok = (received >= 0.98 * sent and processed >= 0.95 * sent and stale <= 0.05 * sent
          and rejected == 0)
    return {"k": k, "sent": sent, "received": received, "processed": processed,
            "pose_runs": pose_runs, "dropped_stale": stale, "rejected": rejected, "ok": ok}


def _lanes(clips: list[dict[str, Any]], n: int) -> list[list[dict[str, Any]]]:
    """Clips split over n lanes of about equal footage, longest first."""
    lanes: list[list[dict[str, Any]]] = [[] for _ in range(max(1, n))]
    for c in sorted(clips, key=lambda c: -c["footage_s"]):
        min(lanes, key=lambda lane: sum(x["footage_s"] for x in lane)).append(c)
    return [lane for lane in lanes if lane]


def part_latency(plan: dict[str, Any], broker_url: str, cameras: int, passes: int,
                 backend: str) -> dict[str, Any]:
    """The mix's clips with a fall or an obstruction, played in real time (frames at
    their file times) by ``cameras`` cameras at once, ``passes`` times, through the
    real broker to one worker. A camera plays one clip, so each clip starts on a fresh
    camera; the lanes play their clips one after another."""
    import uuid

    from hub import protocol
    from hub.protocol import FrameMeta, Kind
    from hub.services import parse_mqtt_url
    from hub.vision.pipeline import CameraPipeline
    from hub.vision.worker import VisionWorker

    broker = parse_mqtt_url(broker_url)
    pose = _estimators(backend)
    event_clips = [c for c in plan["clips"]
                   if any(e.get("type") in ("fall", "object_placed") for e in c["events"])]
    data = {c["name"]: _jpegs(c) for c in event_clips}
    # schedule: (offset s from start, camera id, clip, frame index)
    sched: list[tuple[float, str, dict[str, Any], int]] = []
    cams: dict[str, dict[str, Any]] = {}
    cam_clip: dict[str, str] = {}
    t_pass = 0.0
    for p in range(passes):
        longest = 0.0
        for li, lane in enumerate(_lanes(event_clips, cameras)):
            t_lane = t_pass + li * 0.37  # cameras are not in step
            for c in lane:
                cid = f"lat-{p}-{len(cams):02d}"
                cams[cid] = {"source": "sim", "fps": int(FPS), "zones": c["zones"]}
                cam_clip[cid] = c["name"]
                sched += [(t_lane + ts, cid, c, k) for k, ts in enumerate(c["ts"])]
                t_lane += c["footage_s"] + 0.5
            longest = max(longest, t_lane - t_pass)
        t_pass += longest
    sched.sort(key=lambda x: x[0])
    site_id = f"bench{uuid.uuid4().hex[:8]}"
    published: dict[tuple[str, datetime], float] = {}
    alarm_ms: list[float] = []
    alarms_info: list[dict[str, Any]] = []
    pose_frame_ms: list[float] = []
    skipped_alarms = unmatched = 0
    lock = threading.Lock()
    tl = threading.local()
    orig_analyse = CameraPipeline.analyse

    def analyse(self: Any, ts: datetime, frame: np.ndarray, t0: float | None = None) -> Any:
        # Measurement hook (this process only): did the model run on this frame?
        runs = self.stats.pose_runs
        try:
            return orig_analyse(self, ts, frame, t0)
        finally:
            ran = self.stats.pose_runs > runs
            tl.last = (self.camera_id, ts, ran)
            if ran:
                with lock:
                    t = published.get((self.camera_id, ts))
                    if t is not None:
                        pose_frame_ms.append((time.monotonic() - t) * 1000)

    def on_alarm(a: Any) -> None:
        nonlocal skipped_alarms, unmatched
        now = time.monotonic()
        last = getattr(tl, "last", None)
        with lock:
            t = published.get((a.device_id, a.ts))
            if t is None or last is None or last[:2] != (a.device_id, a.ts):
                unmatched += 1
                return
            if not last[2]:
                skipped_alarms += 1
                return
            alarm_ms.append((now - t) * 1000)
            alarms_info.append({"clip": cam_clip.get(a.device_id), "rule": a.rule,
                                "state": a.state.value, "ms": round((now - t) * 1000, 1)})

    CameraPipeline.analyse = analyse  # type: ignore[method-assign]
    w = VisionWorker(_site(site_id, cams), broker, Path(tempfile.mkdtemp(prefix="bench-lat-")),
                     on_alarm, pose_factory=pose)
    w.start()
    pub = _publisher(broker)
    try:
        start = time.monotonic() + 0.5
        wall0 = datetime.now(UTC)
        for off, cid, c, k in sched:
            delay = start + off - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ts = wall0 + timedelta(seconds=off)
            wd, ht = c["size"]
            meta = FrameMeta(device=cid, seq=k, ts=ts, width=wd, height=ht)
            payload = protocol.encode_frame(meta, data[c["name"]][k])
            with lock:
                published[(cid, ts)] = time.monotonic()
            pub.publish(protocol.topic(site_id, cid, Kind.FRAME), payload, qos=0)
        time.sleep(2.0)
    finally:
        pub.disconnect()
        pub.loop_stop()
        w.stop()
        CameraPipeline.analyse = orig_analyse  # type: ignore[method-assign]
    h = w.health()
    lat = sorted(alarm_ms)
    return {"alarms": len(lat), "p95_ms": _p95(lat),
            "median_ms": statistics.median(lat) if lat else None,
            "alarms_without_pose": skipped_alarms, "alarms_unmatched": unmatched,
            "pose_frames": len(pose_frame_ms), "pose_frame_p95_ms": _p95(sorted(pose_frame_ms)),
            "pose_frame_median_ms": statistics.median(pose_frame_ms) if pose_frame_ms else None,
            "cameras_at_once": cameras, "passes": passes, "clips": [c["name"] for c in event_clips],
            "frames_sent": len(sched),
            "frames_processed": sum(v["frames_processed"] for v in h.values()),
            "dropped_stale": sum(v["dropped_stale"] for v in h.values()),
            "alarm_list": alarms_info}


def _p95(s: list[float]) -> float | None:
    return s[min(len(s) - 1, int(0.95 * len(s)))] if s else None


# ---------------------------------------------------------------- scoring


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def agreement(hub: dict[str, list], ref: dict[str, list]) -> dict[str, float]:
    """The hub's people against a reference's on the reference's frames (IoU >= 0.5)."""
    tp = fp = fn = 0
    for key, want in ref.items():
        got = list(hub.get(key, []))
        used = set()
        for r in want:
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
            "f1": round(2 * p * r / (p + r), 3) if p + r else 0.0, "frames": len(ref)}


def score_events(plan: dict[str, Any], alarms: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Ground-truth events found (falls, obstructions) and alarms outside any event.
    Events that cannot complete within the footage (the mix holds no frame after a
    clip's end) are not counted."""
    found = missed = false = 0
    which: dict[str, list[str]] = {"found": [], "missed": [], "false": []}
    for clip in plan["clips"]:
        got = [a for a in alarms.get(clip["name"], []) if a["state"] == "firing"]
        dur = clip["duration_s"]
        windows: list[tuple[str, float, float]] = []
        scored: list[bool] = []
        for e in clip["events"]:
            if e.get("type") == "fall":
                end = e.get("t_floor_end")
                end = dur if end is None else end
                windows.append(("fall", e["t_onset"], end + 5))
                scored.append(e.get("t_on_floor", e["t_onset"]) < dur)
            elif e.get("type") == "object_placed" and clip["zones"]:
                dwell = clip["zones"][0]["dwell_s"]
                windows.append(("firelane", e["t_placed"], e["t_placed"] + dwell + 10))
                scored.append(e["t_placed"] + dwell < dur)
        for (rule, a, b), counted in zip(windows, scored, strict=True):
            hit = any(x["rule"] == rule and a <= x["t"] <= b for x in got)
            if not counted:
                continue
            if hit:
                found += 1
                which["found"].append(f"{clip['name']}:{rule}@{a:g}")
            else:
                missed += 1
                which["missed"].append(f"{clip['name']}:{rule}@{a:g}")
        for x in got:
            if not any(x["rule"] == r and a <= x["t"] <= b for r, a, b in windows):
                false += 1
                which["false"].append(f"{clip['name']}:{x['rule']}@{x['t']:.1f}")
    return {"events_found": found, "events_missed": missed, "false_alarms": false,
            "detail": which}


# ---------------------------------------------------------------- orchestration


def _run_part(args: list[str], timeout: float) -> dict[str, Any]:
    """Run one part in its own process; its log goes to our stderr as it runs."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"part {args[:2]} failed (exit {r.returncode}; its log is above)")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _r(v: float | None, nd: int = 1) -> float | None:
    return round(v, nd) if v is not None else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--media", default="/work/shared/media", help="folder with manifest.json")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true",
                   help=f"three clips cut to {QUICK_CLIP_S:g} s, shorter trials")
    p.add_argument("--all-clips", action="store_true",
                   help="every clip of the manifest, not only the fixed cameras")
    p.add_argument("--mqtt", default="", help="broker URL (default: 127.0.0.1:1883 or own)")
    p.add_argument("--backend", default="auto", help="pose backend for the hub parts")
    p.add_argument("--naive-every", type=int, default=4, help="naive runs on every Nth frame")
    p.add_argument("--max-streams", type=int, default=64)
    p.add_argument("--latency-cameras", type=int, default=2,
                   help="cameras playing the event clips at once in the latency trial")
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
            res = part_latency(plan, o["mqtt"], o["cameras"], o["passes"], o["backend"])
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
    t_start = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-vision-") as tmp:
            log("building the frame mix (real footage only)")
            plan = build_mix(media, Path(tmp) / "mix", a.quick, a.all_clips)
            if not plan["clips"]:
                print(f"error: no usable clips in {media}", file=sys.stderr)
                return 2
            plan_file = Path(tmp) / "plan.json"
            plan_file.write_text(json.dumps(plan))
            pa = ["--plan", str(plan_file)]
            log(f"mix: {len(plan['clips'])} clips, {plan['frames']} frames, "
                f"{plan['footage_s']:.0f} s of footage; hub, skilled and naive")
            thr = _run_part(["--part", "throughput", *pa, "--opt", json.dumps(
                {"naive_every": a.naive_every, "backend": a.backend})], 3600)
            log(f"hub {thr['hub_fps']:.2f} fps ({thr['backend']}), skilled "
                f"{thr['skilled_fps']:.2f}, naive {thr['naive_fps']:.2f}; the same pipeline "
                "with the model on every frame, for accuracy")
            every = _run_part(["--part", "every", *pa, "--opt", json.dumps(
                {"backend": a.backend})], 3600)
            log("streams part")
            streams = _run_part(["--part", "streams", *pa, "--opt", json.dumps(
                {"mqtt": mqtt_url, "max_k": 8 if a.quick else a.max_streams,
                 "trial_s": 8 if a.quick else 12, "backend": a.backend})], 3600)
            log("latency part")
            lat = _run_part(["--part", "latency", *pa, "--opt", json.dumps(
                {"mqtt": mqtt_url, "cameras": a.latency_cameras,
                 "passes": 1 if a.quick else 2, "backend": a.backend})], 1800)
    finally:
        if own_broker is not None:
            own_broker.stop()

    frames = max(1, thr["hub_frames"])
    reasons = thr["gate_reasons"]
    hub, sk, nv = thr["hub_fps"], thr["skilled_fps"], thr["naive_fps"]
    out = {
        "naive_fps": round(nv, 2),
        "skilled_fps": round(sk, 2),
        "hub_fps": round(hub, 2),
        "streams_at_1fps": streams["streams_at_1fps"],
        "gate_skip_share": round(reasons.get("still", 0) / frames, 3),
        "p95_frame_to_alarm_ms": _r(lat["p95_ms"]),
        "hub_vs_skilled": round(hub / sk, 2) if sk else None,
        "hub_vs_naive": round(hub / nv, 2) if nv else None,
        "targets": {"hub_fps >= 2 x skilled_fps": bool(sk and hub >= 2 * sk),
                    "hub_fps >= 3 x naive_fps": bool(nv and hub >= 3 * nv),
                    "streams_at_1fps >= 40": streams["streams_at_1fps"] >= 40},
        "unit": f"*_fps: frames of a {FPS:g} frame/s camera stream per second of wall time "
                f"({FPS:g} x seconds of footage covered / seconds of wall time)",
        "median_frame_to_alarm_ms": _r(lat["median_ms"]),
        "alarms_timed": lat["alarms"],
        "alarms_without_pose": lat["alarms_without_pose"],
        "p95_pose_frame_ms": _r(lat["pose_frame_p95_ms"]),
        "median_pose_frame_ms": _r(lat["pose_frame_median_ms"]),
        "pose_run_share": round(thr["hub_pose_runs"] / frames, 3),
        "gate_reasons": reasons,
        # Share of the hub's time spent in the fall rules' rotated "lying" pass.
        "lying_pass_time_share": round(thr["lying_pass_share"], 3),
        "lying_pass_calls": thr["lying_pass_calls"],
        # Where the hub's time went: JPEG decode and checks, motion gate, the model on
        # whole frames, the lying pass (its turned looks), and the rest (tracker,
        # rules, evidence); shares of the hub's wall time, and ms per model call.
        "hub_time_share": {k: round(v / thr["hub_time_s_total"], 3)
                           for k, v in thr["hub_time_s"].items()},
        "pose_ms_per_frame_call": _r(1000 * thr["hub_time_s"]["pose"]
                                     / max(1, thr["hub_pose_runs"])),
        "lying_ms_per_look": _r(1000 * thr["hub_time_s"]["lying_pass"]
                                / max(1, thr["lying_pass_calls"])),
        "hub_backend": thr["backend"],
        "hub_pose_threads": thr["hub_pose_threads"],
        "skilled_torch_threads": thr["skilled_torch_threads"],
        "skilled_openvino_threads": thr["skilled_openvino_threads"],
        "skilled_read_share": _r(thr["skilled_read_share"], 3),
        "naive_torch_threads": thr["naive_torch_threads"],
        "naive_median_ms": round(thr["naive_median_ms"], 1),
        "mix": {"clips": [c["name"] for c in plan["clips"]], "frames": plan["frames"],
                "footage_s": plan["footage_s"], "analysed_fps": FPS,
                "naive_frames": thr["naive_frames"], "skilled_frames": thr["skilled_frames"]},
        "per_clip": thr["per_clip"],
        "accuracy": {
            "people_hub_vs_skilled": agreement(thr["hub_boxes"], thr["skilled_boxes"]),
            "people_hub_vs_naive": agreement(thr["hub_boxes"], thr["naive_boxes"]),
            "events_gated": score_events(plan, thr["alarms"]),
            "events_pose_every_frame": score_events(plan, every["alarms"]),
        },
        "stream_trials": [{k: t[k] for k in ("k", "processed", "sent", "pose_runs",
                                              "dropped_stale", "ok")}
                          for t in streams["trials"]],
        "latency_trial": {k: lat[k] for k in ("cameras_at_once", "passes", "frames_sent",
                                              "frames_processed", "dropped_stale",
                                              "pose_frames", "alarms_unmatched", "alarm_list")},
        "cpu_count": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.monotonic() - t_start, 1),
        "gpu_used": False,
    }
    if a.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
