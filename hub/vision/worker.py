"""A vision worker: frames from MQTT for the cameras it owns -> alarms.

Threads: paho's network thread only parses the frame header, applies the per-camera
rate limit and drops the frame into the camera's latest-frame slot (so a slow
analysis never backs up the broker connection); ``analysis_threads`` threads take
ready cameras from the mailbox and run :class:`~hub.vision.pipeline.CameraPipeline`.

Thread settings are deliberate: by default one analysis thread per core (no more
than there are cameras), each with its own model instance, and the cores divided
among them for the model (``pose_threads``); OpenCV gets one thread
(``cv2.setNumThreads(1)``) because its own pool would fight the model's for the same
cores on JPEG decode and resize, which are small per frame.

Which cameras a worker analyses: with ``leased`` (``hub run``), those whose lease it
holds (:mod:`hub.vision.ownership`: leases in PostgreSQL, moved to the other workers
within seconds when one dies); ``own``/``disown`` subscribe to and drop one camera's
topics. Otherwise a fixed split among ``worker_count`` workers
(:mod:`hub.vision.partition`), each subscribed to its cameras' exact frame topics; a
lone worker (``worker_count == 1``) subscribes to the site's frame wildcard instead,
so frames from a device the site does not know are seen and counted.

An operator's "this is the empty lane now" reaches the worker that owns the camera as
a :class:`~hub.protocol.RebaselineRequest` on ``sc/v1/control/{site}/{camera}/rebaseline``
(QoS 1); the camera's analysis thread applies it to the next frame it analyses, so
the rules are never touched from two threads.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import paho.mqtt.client as mqtt
from prometheus_client import Counter

from hub import protocol
from hub.clock import Clock, SystemClock
from hub.config import DeviceConfigEntry, Settings, Site
from hub.domain import Alarm
from hub.motion import MotionGate
from hub.mqtt import Consumer, MqttConnection
from hub.protocol import EventType, FrameMeta, Kind, ProtocolError, RebaselineRequest
from hub.ratelimit import TokenBuckets
from hub.services import Broker
from hub.stream_settings import LIVE_BOOST_FPS
from hub.vision import metrics as m
from hub.vision.clips import ClipFrame, ClipWriter
from hub.vision.mailbox import LatestMailbox
from hub.vision.partition import cameras_for
from hub.vision.pipeline import DEFAULT_MAX_WIDTH, CameraPipeline, FrameRejected, frame_limit

log = logging.getLogger(__name__)

UNHEALTHY_HOLD_S = 30.0  # a camera stays marked unhealthy this long after bad input
LOG_EVERY_S = 10.0  # at most one log line per camera and reason in this time
COMMANDS = Counter("hub_vision_commands_total",
                   "Operator commands to the vision worker, by outcome", ["command", "outcome"])


@dataclass(slots=True)
class _Inbound:
    meta: FrameMeta
    jpeg: bytes
    received: float  # time.monotonic() at arrival


@dataclass
class _CameraState:
    device: DeviceConfigEntry
    bucket: TokenBuckets  # one key: the camera's id
    pipeline: CameraPipeline | None = None
    received: int = 0
    rate_limited: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    last_frame_ts: datetime | None = None
    last_arrival: float | None = None
    problem: str | None = None
    problem_until: float = 0.0
    edge_healthy: bool | None = None
    edge_reason: str | None = None
    rebaseline: RebaselineRequest | None = None  # waiting for the next analysed frame


def _default_pose_threads(analysis_threads: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, analysis_threads))


class VisionWorker:
    def __init__(
        self,
        site: Site,
        broker: Broker,
        data_dir: Path,
        on_alarm: Callable[[Alarm], None],
        worker_index: int = 0,
        worker_count: int = 1,
        backend: str = "auto",
        *,
        analysis_threads: int | None = None,
        pose_threads: int | None = None,
        imgsz: int = 640,
        gate_threshold: float = 0.003,
        gate_keyframe_s: float = 4.0,
        pose_min_interval_s: float = 0.2,
        rate_factor: float = 2.0,
        client_id: str | None = None,
        pose_factory: Callable[[], Any] | None = None,
        analyzer_factory: Callable[[DeviceConfigEntry], Any] | None = None,
        max_clock_skew_s: float | None = None,
        clock: Clock | None = None,
        mqtt_connection: MqttConnection | None = None,
        leased: bool = False,
    ) -> None:
        """``mqtt_connection``: the process's shared connection; without one the
        worker opens its own (a clean session as ``client_id``). ``leased``: every
        camera of the site is a candidate, analysed only between ``own`` and
        ``disown`` (``worker_index``/``worker_count`` are then not used)."""
        self.site = site
        self.broker = broker
        self.data_dir = Path(data_dir)
        self.on_alarm = on_alarm
        self.worker_index = worker_index
        self.worker_count = worker_count
        self.backend = backend
        self._analysis_threads = analysis_threads
        self._pose_threads = pose_threads
        self.imgsz = imgsz
        self.gate_threshold = gate_threshold
        self.gate_keyframe_s = gate_keyframe_s
        self.pose_min_interval_s = pose_min_interval_s
        self.client_id = client_id or f"hub-vision-{site.site.id}-{worker_index}of{worker_count}"
        # A frame's ts times dwell and falls and becomes its alarm's time: bounded like
        # a sensor's (HUB_MAX_CLOCK_SKEW_S when None).
        self.max_clock_skew_s = (Settings().max_clock_skew_s if max_clock_skew_s is None
                                 else max_clock_skew_s)
        self._clock: Clock = clock or SystemClock()
        self._pose_factory = pose_factory or self._pose_estimator
        self._analyzer_factory = analyzer_factory or self._camera_analyzer
        all_cams = [d for d in site.devices if d.kind == "camera"]
        self.leased = leased
        self._held: dict[str, Consumer] = {}  # leased: the cameras analysed now
        owned = ({d.id for d in all_cams} if leased else
                 set(cameras_for([d.id for d in all_cams], worker_index, worker_count)))
        self.cameras: dict[str, _CameraState] = {}
        for d in all_cams:
            if d.id not in owned:
                continue
            assert d.camera is not None
            # Allow bursts and jitter above the configured rate; beyond that is a flood.
            # A live view raises the camera's rate to LIVE_BOOST_FPS while watched.
            rate = max(d.camera.fps * rate_factor, d.camera.fps + 2, LIVE_BOOST_FPS + 2)
            self.cameras[d.id] = _CameraState(
                d, TokenBuckets(capacity=max(2 * rate, 4), per_s=rate))
        # Threads: with several cameras, one analysis thread per core, each running the
        # model single-threaded, analyses about twice the frames of one thread running
        # it on all cores (measured: 229 vs 145 frames/min on the demo's three cameras on
        # 2 cores) - a single-threaded inference wastes nothing on synchronisation. One
        # camera cannot use two threads (its frames are analysed in order), so then the
        # model gets all the cores instead.
        cores = os.cpu_count() or 1
        self.analysis_threads = analysis_threads or max(1, min(cores, len(self.cameras)))
        self.pose_threads = pose_threads or _default_pose_threads(self.analysis_threads)
        self.mailbox: LatestMailbox[str, _Inbound] = LatestMailbox()
        self.rejected: dict[str, int] = {}
        self._lock = threading.Lock()
        self._log_times: dict[tuple[str, str], float] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._owns_mqtt = mqtt_connection is None
        self._mqtt = mqtt_connection or MqttConnection(broker, self.client_id)
        self._consumer: Consumer | None = None
        self._poses: list[Any] = []
        # Event clips: a ring of each camera's received JPEGs, a clip per firing alarm.
        largest = max((frame_limit(st.device.camera.max_width) for st in self.cameras.values()
                       if st.device.camera), default=frame_limit(DEFAULT_MAX_WIDTH))
        self.clips = (ClipWriter(site.clips, self.data_dir, max_pixels=largest[0] * largest[1])
                      if site.clips.enabled else None)

    # ------------------------------------------------------------ factories

    def _pose_estimator(self) -> Any:
        from hub.vision.pose import PoseEstimator

        est = PoseEstimator(backend=self.backend, imgsz=self.imgsz, threads=self.pose_threads)
        log.info("pose model ready", extra={"backend": est.backend_name,
                                            "threads": self.pose_threads, "imgsz": self.imgsz})
        return est

    def _camera_analyzer(self, device: DeviceConfigEntry) -> Any:
        from hub.vision.analyzer import CameraAnalyzer

        assert device.camera is not None
        return CameraAnalyzer(
            camera_id=device.id,
            grid_code=device.grid,
            zones=list(device.camera.zones),
            fall_rule=self.site.rules.fall,
            evidence_dir=self.data_dir / "evidence",
            pose=self._poses[0] if self._poses else None,
            label=device.location.label,
            fall_params={"view": device.camera.view},
            settings=device.camera.rules,  # the camera's rules: section, validated
            # Empty-lane references survive restarts: an object already standing in the
            # lane when the hub restarts is still compared with the real empty lane.
            reference_store=self.data_dir / "references",
        )

    # ------------------------------------------------------------ lifecycle

    @property
    def owned_cameras(self) -> list[str]:
        if self.leased:
            with self._lock:
                return sorted(self._held)
        return sorted(self.cameras)

    def frame_topics(self) -> list[str]:
        sid = self.site.site.id
        if self.worker_count == 1:
            return [f"{protocol.ROOT}/{sid}/+/{Kind.FRAME.value}"]
        return [protocol.topic(sid, c, Kind.FRAME) for c in self.owned_cameras]

    def load_models(self) -> None:
        """Load the pose model(s); on a first start this exports them, which takes a
        while. ``start()`` does it when it has not been done."""
        if not self._poses:
            self._poses = [self._pose_factory() for _ in range(self.analysis_threads)]

    def start(self, wait_connected: float = 10.0) -> None:
        cv2.setNumThreads(1)
        # Load the model(s) before subscribing, so the first frames don't wait for it.
        self.load_models()
        for cid, st in self.cameras.items():
            st.pipeline = self._pipeline(cid, st)
            m.CAMERA_HEALTHY.labels(cid).set(1)
        if self.clips is not None:
            self.clips.start()
        for i in range(self.analysis_threads):
            t = threading.Thread(target=self._analyse_loop, args=(self._poses[i],),
                                 name=f"vision-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        if not self.leased:  # leased: each camera's own consumer, from own()
            self._consumer = self._mqtt.add_consumer(
                f"vision-{self.worker_index}", self.subscriptions(), self._on_message)
        if self._owns_mqtt:
            self._mqtt.start()
        log.info("vision worker started", extra={
            "worker": "leased" if self.leased else f"{self.worker_index}/{self.worker_count}",
            "cameras": self.owned_cameras})
        if self._consumer is not None and wait_connected and \
                not self._consumer.ready.wait(wait_connected):
            log.warning("vision worker not connected to the broker yet",
                        extra={"broker": f"{self.broker.host}:{self.broker.port}"})

    def stop(self) -> None:
        self._stop.set()
        for cid in self.owned_cameras if self.leased else ():
            self.disown(cid)
        if self._consumer is not None:
            self._mqtt.stop_consumer(self._consumer)
            self._consumer = None
        if self._owns_mqtt:
            self._mqtt.stop()
        self.mailbox.close()
        for t in self._threads:
            t.join(timeout=10)
        self._threads.clear()
        if self.clips is not None:
            self.clips.stop()

    def __enter__(self) -> VisionWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        """True while the broker holds this worker's subscriptions."""
        if self.leased:
            with self._lock:
                held = list(self._held.values())
            return self._mqtt.connected and all(c.ready.is_set() for c in held)
        return self._consumer is not None and self._consumer.ready.is_set()

    # ------------------------------------------------------------ camera leases

    def own(self, camera_id: str) -> Consumer:
        """Start analysing ``camera_id`` (its lease was taken): a fresh pipeline (the
        tracks and dwell times of whoever analysed it before are not known here; the
        empty-lane reference is, from the data directory) and its own subscriptions.
        Returns its consumer, ready once the broker acknowledged them."""
        st = self.cameras[camera_id]
        with self._lock:
            held = self._held.get(camera_id)
        if held is not None:
            return held
        if self._poses:
            st.pipeline = self._pipeline(camera_id, st)
        consumer = self._mqtt.add_consumer(
            f"vision-camera-{camera_id}", self._camera_subscriptions(camera_id),
            self._on_message)
        with self._lock:
            self._held[camera_id] = consumer
        log.info("camera taken", extra={"device": camera_id, "worker": self.client_id})
        return consumer

    def disown(self, camera_id: str) -> None:
        """Stop analysing ``camera_id`` (its lease was lost or given back)."""
        with self._lock:
            consumer = self._held.pop(camera_id, None)
        if consumer is not None:
            self._mqtt.remove_consumer(consumer)
            log.info("camera given up", extra={"device": camera_id, "worker": self.client_id})

    def _camera_subscriptions(self, cid: str) -> list[tuple[str, int]]:
        sid = self.site.site.id
        return [(protocol.topic(sid, cid, Kind.FRAME), 0),
                (protocol.topic(sid, cid, Kind.EVENT), 0),
                (protocol.control_topic(sid, cid, "rebaseline"), 1)]

    def _pipeline(self, cid: str, st: _CameraState) -> CameraPipeline:
        return CameraPipeline(
            cid, lambda d=st.device: self._analyzer_factory(d), self._poses[0].detect,
            MotionGate(threshold=self.gate_threshold, keyframe_s=self.gate_keyframe_s),
            pose_min_interval_s=self.pose_min_interval_s,
            max_width=(st.device.camera.max_width if st.device.camera else DEFAULT_MAX_WIDTH),
        )

    # ------------------------------------------------------------ MQTT side

    def subscriptions(self) -> list[tuple[str, int]]:
        """Its cameras' frames, and their edge camera-health events (which feed
        ``health()``; the ingest stores them), all at QoS 0. A worker is ready once
        the broker has them: frames are QoS 0 and not retained, so one sent before
        the SUBACK would be lost to it."""
        subs = [(t, 0) for t in self.frame_topics()]
        subs += [(protocol.topic(self.site.site.id, c, Kind.EVENT), 0)
                 for c in self.owned_cameras]
        sid = self.site.site.id
        if self.worker_count == 1:
            subs.append((f"{protocol.ROOT}/{protocol.CONTROL_SEGMENT}/{sid}/+/rebaseline", 1))
        else:
            subs += [(protocol.control_topic(sid, c, "rebaseline"), 1)
                     for c in self.owned_cameras]
        return subs

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        try:
            self.submit(msg.topic, msg.payload)
        except Exception:  # noqa: BLE001 - the network thread must survive anything
            log.exception("vision worker failed on a message", extra={"topic": msg.topic})

    def submit(self, topic: str, payload: bytes, now: float | None = None) -> str:
        """Take one message as it came off the wire; returns what became of it
        (``queued``, ``stale``, ``rate_limited``, ``event`` or a rejection reason)."""
        now = time.monotonic() if now is None else now
        if topic.startswith(f"{protocol.ROOT}/{protocol.CONTROL_SEGMENT}/"):
            return self._command(topic, payload)
        try:
            t = protocol.parse_topic(topic)
        except ProtocolError as e:
            return self._reject(None, e.reason, e.detail, topic)
        if t.site != self.site.site.id:
            return self._reject(None, "bad_topic", f"site {t.site!r} is not ours", topic)
        st = self.cameras.get(t.device)
        if st is not None and self.leased and t.device not in self._held:
            return "not_owned"  # its lease moved on; a message already under way
        if t.kind is Kind.EVENT:
            if st is not None:
                self._edge_event(st, payload)
            return "event"
        if t.kind is not Kind.FRAME:
            return self._reject(None, "bad_topic", f"{t.kind.value} is not a frame", topic)
        if st is None:
            dev = self.site.device(t.device)
            if dev is None or dev.kind != "camera":
                return self._reject(None, "unknown_camera",
                                    f"device {t.device!r} is not a camera of site "
                                    f"{self.site.site.id!r}", topic, device=t.device)
            return "not_owned"  # another worker's camera, seen through the wildcard
        if not st.bucket.take(t.device, now):
            st.rate_limited += 1
            m.FRAMES_DROPPED.labels(t.device, "rate_limited").inc()
            self._problem(st, "flooding", now, f"more than {st.bucket.per_s:g} frames/s")
            return "rate_limited"
        try:
            meta, jpeg = protocol.decode_frame(payload, device=t.device)
            protocol.check_device_time(meta.ts, self._clock.now(), self.max_clock_skew_s)
        except ProtocolError as e:
            return self._reject(st, e.reason, e.detail, topic, device=t.device, now=now)
        st.received += 1
        st.last_arrival = now
        m.FRAMES_RECEIVED.labels(t.device).inc()
        if self.clips is not None:
            self.clips.recorder.on_frame(t.device, ClipFrame(meta.ts, jpeg, meta.width,
                                                             meta.height))
        if self.mailbox.put(t.device, _Inbound(meta, jpeg, now)):
            m.FRAMES_DROPPED.labels(t.device, "stale").inc()
            return "stale"
        return "queued"

    def _command(self, topic: str, payload: bytes) -> str:
        parts = topic.split("/")
        if len(parts) != 6 or parts[3] != self.site.site.id or parts[5] != "rebaseline":
            COMMANDS.labels("unknown", "bad_topic").inc()
            return "bad_topic"
        st = self.cameras.get(parts[4])
        if st is None or (self.leased and parts[4] not in self._held):
            return "not_owned"
        try:
            req = protocol.decode_rebaseline(payload, parts[4])
        except ProtocolError as e:
            COMMANDS.labels("rebaseline", e.reason).inc()
            self._log(parts[4], "command_" + e.reason, "operator command refused",
                      {"device": parts[4], "reason": e.reason, "detail": e.detail[:200]})
            return e.reason
        with self._lock:
            st.rebaseline = req
        COMMANDS.labels("rebaseline", "queued").inc()
        log.info("empty-lane renewal requested", extra={
            "device": req.device, "by": req.by, "request_id": req.request_id})
        return "command"

    def _edge_event(self, st: _CameraState, payload: bytes) -> None:
        try:
            ev = protocol.decode_json(Kind.EVENT, payload, device=st.device.id)
        except ProtocolError:
            return  # ingest counts bad events; here only camera health matters
        if getattr(ev, "type", None) is EventType.CAMERA_HEALTH:
            st.edge_healthy = bool(ev.data.get("healthy", True))  # type: ignore[union-attr]
            st.edge_reason = str(ev.data.get("reason", "")) or None  # type: ignore[union-attr]

    def _reject(self, st: _CameraState | None, reason: str, detail: str, topic: str,
                device: str | None = None, now: float | None = None) -> str:
        m.FRAMES_REJECTED.labels(reason).inc()
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
        if st is not None:
            st.rejected[reason] = st.rejected.get(reason, 0) + 1
            self._problem(st, reason, time.monotonic() if now is None else now, detail)
        else:
            self._log(device or topic, reason, "frame rejected",
                      {"topic": topic, "device": device, "reason": reason, "detail": detail})
        return reason

    def _problem(self, st: _CameraState, reason: str, now: float, detail: str) -> None:
        st.problem, st.problem_until = reason, now + UNHEALTHY_HOLD_S
        m.CAMERA_HEALTHY.labels(st.device.id).set(0)
        self._log(st.device.id, reason, "camera unhealthy: bad frames",
                  {"device": st.device.id, "reason": reason, "detail": detail})

    def _log(self, who: str, reason: str, msg: str, extra: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._log_times.get((who, reason))
            if last is not None and now - last < LOG_EVERY_S:
                return
            self._log_times[(who, reason)] = now
        log.warning(msg, extra=extra)

    # ------------------------------------------------------------ analysis side

    def _analyse_loop(self, pose: Any) -> None:
        while not self._stop.is_set():
            got = self.mailbox.get(timeout=0.5)
            if got is None:
                continue
            cid, item = got
            try:
                self._analyse(cid, item, pose)
            finally:
                self.mailbox.done(cid)

    def _analyse(self, cid: str, item: _Inbound, pose: Any) -> None:
        st = self.cameras[cid]
        pipe = st.pipeline
        assert pipe is not None
        # A model instance is not shared between threads: this thread's goes in, both for
        # the pipeline's pass and for the analyzer's own rotated "lying" pass.
        pipe.detect = pose.detect
        if hasattr(pipe.analyzer, "pose") and hasattr(pose, "detect_rotated"):
            pipe.analyzer.pose = pose
        t0 = time.perf_counter()
        try:
            frame = pipe.check(item.meta, item.jpeg)
        except FrameRejected as e:
            self._reject(st, e.reason, e.detail, protocol.topic(self.site.site.id, cid, Kind.FRAME),
                         device=cid)
            return
        runs_before = pipe.stats.pose_runs
        try:
            alarms = pipe.analyse(item.meta.ts, frame, t0)
        except Exception:  # noqa: BLE001 - one camera's bug must not stop the others
            m.ERRORS.labels(cid).inc()
            self._log(cid, "error", "frame analysis failed", {"device": cid})
            log.debug("frame analysis failed", exc_info=True, extra={"device": cid})
            return
        ran = pipe.stats.pose_runs > runs_before
        m.FRAMES_PROCESSED.labels(cid, "run" if ran else "skipped").inc()
        m.FRAME_SECONDS.observe(time.perf_counter() - t0)
        st.last_frame_ts = item.meta.ts
        with self._lock:
            req, st.rebaseline = st.rebaseline, None
        if req is not None:
            pipe.rebaseline(item.meta.ts)
            COMMANDS.labels("rebaseline", "applied").inc()
            log.info("empty-lane reference renewed", extra={
                "device": cid, "by": req.by, "request_id": req.request_id,
                "frame_ts": item.meta.ts.isoformat()})
        if st.problem is None or time.monotonic() >= st.problem_until:
            m.CAMERA_HEALTHY.labels(cid).set(1)
        for a in alarms:
            m.ALARMS.labels(cid, a.rule).inc()
            if self.clips is not None:
                try:
                    a = self.clips.recorder.on_alarm(a, time.monotonic())
                except Exception:  # noqa: BLE001 - the alarm goes on without its clip
                    log.exception("clip not started", extra={"device": cid,
                                                             "dedup_key": a.dedup_key})
            log.info("vision alarm", extra={"device": cid, "rule": a.rule,
                                            "state": a.state.value, "dedup_key": a.dedup_key})
            try:
                self.on_alarm(a)
            except Exception:  # noqa: BLE001 - the consumer's failure is its own
                log.exception("on_alarm callback failed", extra={"device": cid})

    # ------------------------------------------------------------ health

    def rebaseline(self, camera_id: str, ts: datetime) -> None:
        """Operator action: accept the camera's current view as the empty lane."""
        st = self.cameras[camera_id]
        if st.pipeline is not None:
            st.pipeline.rebaseline(ts)

    def health(self, stale_after_s: float = 30.0) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        out: dict[str, dict[str, Any]] = {}
        for cid, st in self.cameras.items():
            if self.leased and cid not in self._held:
                continue  # another worker's now
            ps = st.pipeline.stats if st.pipeline else None
            box = self.mailbox.stats.get(cid)
            reason = None
            if st.problem is not None and now < st.problem_until:
                reason = st.problem
            elif st.edge_healthy is False:
                reason = f"edge: {st.edge_reason or 'unhealthy'}"
            elif st.last_arrival is None:
                reason = "no_frames_yet"
            elif now - st.last_arrival > stale_after_s:
                reason = "no_frames"
            out[cid] = {
                "healthy": reason is None,
                "reason": reason,
                "worker": self.worker_index,
                "frames_received": st.received,
                "frames_processed": ps.processed if ps else 0,
                "pose_runs": ps.pose_runs if ps else 0,
                "dropped_stale": box.dropped_stale if box else 0,
                "rate_limited": st.rate_limited,
                "rejected": dict(st.rejected),
                "alarms": ps.alarms if ps else 0,
                "last_frame_ts": st.last_frame_ts.isoformat() if st.last_frame_ts else None,
                "seconds_since_frame": (round(now - st.last_arrival, 1)
                                        if st.last_arrival is not None else None),
            }
        return out

