"""Event clips: the seconds before and after a camera rule's alarm, as an H.264 MP4.

A vision worker keeps, per camera, a ring of the JPEG frames it received
(:class:`FrameRing`: the bytes as they came, never decoded arrays; bounded by the
frames' own time span and by bytes). When any :class:`~hub.vision.rules.base.VisionRule`
alarm fires, :class:`ClipRecorder` starts a clip of the window ``[ts - pre_s,
ts + post_s]`` (:func:`clip_window`) from the ring, adds the frames that arrive until
the window is full, and hands it to :class:`ClipWriter`, whose own thread encodes it
(PyAV's wheels ship FFmpeg with libx264): yuv420p, ``+faststart`` so a browser plays
it before it has all of it, timestamps from the frames so a motion-gated camera's
uneven frames keep their real timing. The alarm carries the clip's path in its
evidence (``evidence["clip"]``) from the moment it fires, so the incident knows where
its clip will be; the API answers "pending" until the file is there.

The recorder is pure apart from its lock: frames and alarms come in with the
caller's monotonic time, finished clips go out through a callback. The writer's
queue is bounded: a clip that finds it full is dropped and counted, so a slow encode
never holds a frame or an analysis thread.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from hub import imaging
from hub.config import ClipsConfig
from hub.domain import Alarm
from hub.vision import clipstore

log = logging.getLogger(__name__)

MB = 1024 * 1024
# A clip whose camera stops sending before its window is full is written with what
# it has this long (monotonic) after the window should have ended.
LATE_S = 5.0
# Frames keep arriving while an alarm is being analysed; the ring keeps this much
# more than pre_s so the clip's start is still there when the alarm comes.
RING_SLACK_S = 5.0
# Episodes remembered (so a repeat of a firing alarm gets the same clip, not a new one).
EPISODES_MAX = 1024
OUTPUT_FPS = 10  # the stream's nominal rate; the frames' own times set their timing

CLIPS = Counter("hub_vision_clips_total",
                "Event clips by outcome: written, dropped (encoder queue full), empty "
                "(no frame in the window), failed (encoder error), too_many (camera's "
                "pending clips at their limit)", ["camera", "result"])
CLIP_FRAMES_BAD = Counter("hub_vision_clip_frames_bad_total",
                          "Buffered frames the clip encoder could not decode", ["camera"])
CLIP_SECONDS = Histogram("hub_vision_clip_write_seconds",
                         "Time to decode and encode one clip",
                         buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32))
RING_BYTES = Gauge("hub_vision_clip_ring_bytes", "JPEG bytes held in a camera's ring",
                   ["camera"])
PENDING_MAX = 4  # clips of one camera collecting frames at once


@dataclass(frozen=True, slots=True)
class ClipFrame:
    ts: datetime  # the frame's own time, from the edge
    jpeg: bytes
    width: int  # as the frame header declared them
    height: int


class FrameRing:
    """One camera's last frames, oldest first. Bounded twice: the span between the
    oldest and the newest frame's time is at most ``span_s``, and the JPEG bytes at
    most ``max_bytes`` (a camera sending large frames keeps a shorter past)."""

    def __init__(self, span_s: float, max_bytes: int) -> None:
        self.span = timedelta(seconds=span_s)
        self.max_bytes = max_bytes
        self.frames: deque[ClipFrame] = deque()
        self.bytes = 0
        self.evicted_by_bytes = 0

    def add(self, f: ClipFrame) -> None:
        if self.frames and f.ts < self.frames[-1].ts:
            return  # out of order: the pipeline rejects it too
        self.frames.append(f)
        self.bytes += len(f.jpeg)
        while self.frames and f.ts - self.frames[0].ts > self.span:
            self._pop()
        while self.bytes > self.max_bytes and len(self.frames) > 1:
            self._pop()
            self.evicted_by_bytes += 1
        if self.bytes > self.max_bytes:  # one frame larger than the whole ring
            self._pop()
            self.evicted_by_bytes += 1

    def _pop(self) -> None:
        self.bytes -= len(self.frames.popleft().jpeg)

    def since(self, start: datetime) -> list[ClipFrame]:
        return [f for f in self.frames if f.ts >= start]

    def __len__(self) -> int:
        return len(self.frames)


def clip_window(ts: datetime, pre_s: float, post_s: float) -> tuple[datetime, datetime]:
    """The clip of an alarm at ``ts``: from ``pre_s`` before to ``post_s`` after."""
    return ts - timedelta(seconds=pre_s), ts + timedelta(seconds=post_s)


@dataclass
class PendingClip:
    camera: str
    dedup_key: str
    path: str  # relative to the data directory
    start: datetime
    end: datetime
    late_at: float  # monotonic: written with what it has after this
    max_bytes: int
    frames: list[ClipFrame] = field(default_factory=list)
    bytes: int = 0
    truncated: bool = False

    def add(self, f: ClipFrame) -> bool:
        """Take a frame if it falls in the window; True once the window is full."""
        if self.start <= f.ts <= self.end and (not self.frames or f.ts > self.frames[-1].ts):
            if self.bytes + len(f.jpeg) > self.max_bytes:
                self.truncated = True
            else:
                self.frames.append(f)
                self.bytes += len(f.jpeg)
        return f.ts >= self.end


class ClipRecorder:
    """Rings per camera and the clips being collected; finished clips go to ``sink``.

    ``on_frame`` is called from the MQTT thread with every accepted frame,
    ``on_alarm`` from an analysis thread with every alarm, ``due`` from the writer's
    thread; one lock keeps them apart (each holds it for a deque operation or a copy
    of a list of references, never for an encode)."""

    def __init__(self, cfg: ClipsConfig, sink: Callable[[PendingClip], None]) -> None:
        self.cfg = cfg
        self.sink = sink
        self._lock = threading.Lock()
        self._rings: dict[str, FrameRing] = {}
        self._pending: dict[str, list[PendingClip]] = {}
        # dedup key -> the clip's evidence, while its alarm is firing
        self._episodes: OrderedDict[str, dict[str, str]] = OrderedDict()

    def ring(self, camera: str) -> FrameRing:
        r = self._rings.get(camera)
        if r is None:
            r = self._rings[camera] = FrameRing(self.cfg.pre_s + RING_SLACK_S,
                                                int(self.cfg.buffer_mb * MB))
        return r

    def on_frame(self, camera: str, f: ClipFrame) -> None:
        done: list[PendingClip] = []
        with self._lock:
            ring = self.ring(camera)
            ring.add(f)
            RING_BYTES.labels(camera).set(ring.bytes)
            pending = self._pending.get(camera)
            if pending:
                keep = []
                for p in pending:
                    (done if p.add(f) else keep).append(p)
                self._pending[camera] = keep
        for p in done:
            self.sink(p)

    def on_alarm(self, a: Alarm, now: float) -> Alarm:
        """The alarm as it should go on: a firing one carries its clip's path in its
        evidence (a new clip for a new episode, the episode's clip for a repeat); a
        cleared one ends the episode."""
        if a.device_id is None:
            return a
        if not a.firing:
            with self._lock:
                self._episodes.pop(a.dedup_key, None)
            return a
        done: PendingClip | None = None
        with self._lock:
            ref = self._episodes.get(a.dedup_key)
            if ref is None:
                pending = self._pending.setdefault(a.device_id, [])
                if len(pending) >= PENDING_MAX:
                    CLIPS.labels(a.device_id, "too_many").inc()
                    log.warning("clip not recorded: the camera's pending clips are at their "
                                "limit", extra={"device": a.device_id, "dedup_key": a.dedup_key})
                    return a
                start, end = clip_window(a.ts, self.cfg.pre_s, self.cfg.post_s)
                p = PendingClip(
                    camera=a.device_id, dedup_key=a.dedup_key,
                    path=clipstore.clip_path(a.category, a.device_id, a.ts, a.rule),
                    start=start, end=end, late_at=now + self.cfg.post_s + LATE_S,
                    max_bytes=int(self.cfg.clip_max_mb * MB))
                full = False
                for f in self.ring(a.device_id).since(start):
                    full = p.add(f) or full
                if full:
                    done = p
                else:
                    pending.append(p)
                ref = {"path": p.path, "from": start.isoformat(), "to": end.isoformat(),
                       "at": a.ts.isoformat()}
                self._episodes[a.dedup_key] = ref
                while len(self._episodes) > EPISODES_MAX:
                    self._episodes.popitem(last=False)
                log.info("clip started", extra={"device": a.device_id, "dedup_key": a.dedup_key,
                                                "clip": p.path})
        if done is not None:
            self.sink(done)
        return replace(a, evidence={**a.evidence, "clip": dict(ref)})

    def due(self, now: float) -> None:
        """Send on the clips whose camera went quiet past their window's end."""
        done: list[PendingClip] = []
        with self._lock:
            for cam, pending in self._pending.items():
                late = [p for p in pending if now >= p.late_at]
                if late:
                    self._pending[cam] = [p for p in pending if now < p.late_at]
                    done += late
        for p in done:
            self.sink(p)

    def ring_stats(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {cam: {"frames": len(r), "bytes": r.bytes,
                          "span_s": ((r.frames[-1].ts - r.frames[0].ts).total_seconds()
                                     if r.frames else 0.0),
                          "evicted_by_bytes": r.evicted_by_bytes}
                    for cam, r in self._rings.items()}


def _even(n: int) -> int:
    return n - n % 2


def encode_mp4(frames: list[ClipFrame], out: Path, crf: int = 28,
               max_pixels: int = 4096 * 4096, camera: str = "") -> int:
    """Encode ``frames`` as H.264 (yuv420p) in an MP4 with its index first; returns
    how many frames went in. Every JPEG is decoded through
    :func:`hub.imaging.decode_image` against the size its frame header declared; one
    that fails is counted and left out. The file appears at ``out`` complete or not
    at all (written as ``.part``, then renamed)."""
    import av  # the codec library is loaded only where clips are written

    part = out.with_name(out.name + clipstore.PART)
    out.parent.mkdir(parents=True, exist_ok=True)
    size: tuple[int, int] | None = None
    written = 0
    t0: datetime | None = None
    last_pts = -1
    container = av.open(str(part), mode="w", format="mp4",
                        options={"movflags": "+faststart"})
    try:
        stream = None
        for f in frames:
            try:
                img, _ = imaging.decode_image(f.jpeg, source="clip", max_pixels=max_pixels,
                                              expect=(f.width, f.height),
                                              formats=frozenset({"jpeg"}))
            except imaging.ImageRejected:
                CLIP_FRAMES_BAD.labels(camera).inc()
                continue
            if stream is None:
                h, w = img.shape[:2]
                size = (_even(w), _even(h))
                stream = container.add_stream("libx264", rate=OUTPUT_FPS)
                stream.width, stream.height = size
                stream.pix_fmt = "yuv420p"
                stream.time_base = Fraction(1, 1000)
                stream.codec_context.time_base = Fraction(1, 1000)
                stream.options = {"crf": str(crf), "preset": "veryfast"}
                t0 = f.ts
            assert size is not None and t0 is not None
            if (img.shape[1], img.shape[0]) != size:
                # Odd sizes lose a pixel row/column (yuv420p needs even); a camera
                # reconfigured mid-clip is scaled to the clip's first size.
                img = (img[: size[1], : size[0]] if img.shape[1] - size[0] in (0, 1)
                       and img.shape[0] - size[1] in (0, 1)
                       else cv2.resize(img, size, interpolation=cv2.INTER_AREA))
            pts = int((f.ts - t0).total_seconds() * 1000)
            if pts <= last_pts:
                continue
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
            vf.pts, vf.time_base = pts, Fraction(1, 1000)
            for pkt in stream.encode(vf):
                container.mux(pkt)
            last_pts = pts
            written += 1
        if stream is not None:
            for pkt in stream.encode():
                container.mux(pkt)
    finally:
        container.close()
    if written == 0:
        part.unlink(missing_ok=True)
        return 0
    os.replace(part, out)
    return written


class ClipWriter:
    """The encoder's thread and its bounded queue; also runs the recorder's ``due``."""

    def __init__(self, cfg: ClipsConfig, data_dir: Path, max_pixels: int = 4096 * 4096) -> None:
        self.cfg = cfg
        self.data_dir = Path(data_dir)
        self.max_pixels = max_pixels
        self.recorder = ClipRecorder(cfg, self.submit)
        self._queue: queue.Queue[PendingClip] = queue.Queue(maxsize=cfg.queue)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written: list[str] = []  # paths, newest last (bounded)
        self.write_ms: deque[float] = deque(maxlen=256)

    def submit(self, p: PendingClip) -> None:
        try:
            self._queue.put_nowait(p)
        except queue.Full:
            CLIPS.labels(p.camera, "dropped").inc()
            log.warning("clip dropped: the encoder is behind",
                        extra={"device": p.camera, "dedup_key": p.dedup_key, "clip": p.path})

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="clip-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after writing what is queued (clips still collecting frames are
        written with what they have)."""
        self.recorder.due(float("inf"))
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while True:
            try:
                p = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._stop.is_set():
                    return
                self.recorder.due(time.monotonic())
                continue
            self.write(p)
            # A busy queue never times out: the quiet cameras' clips are looked at here too.
            self.recorder.due(time.monotonic())

    def write(self, p: PendingClip) -> str | None:
        """Encode one clip now (the writer's thread does; the benchmark calls it)."""
        t0 = time.perf_counter()
        try:
            n = encode_mp4(p.frames, self.data_dir / p.path, self.cfg.crf, self.max_pixels,
                           camera=p.camera)
        except Exception as e:  # noqa: BLE001 - one clip's failure must not stop the writer
            CLIPS.labels(p.camera, "failed").inc()
            log.error("clip not written", extra={"device": p.camera, "dedup_key": p.dedup_key,
                                                 "clip": p.path, "error": str(e)})
            return None
        dt = time.perf_counter() - t0
        if n == 0:
            CLIPS.labels(p.camera, "empty").inc()
            log.warning("clip not written: no usable frame in its window",
                        extra={"device": p.camera, "dedup_key": p.dedup_key})
            return None
        CLIP_SECONDS.observe(dt)
        CLIPS.labels(p.camera, "written").inc()
        self.write_ms.append(dt * 1000)
        self.written = [*self.written[-63:], p.path]
        log.info("clip written", extra={
            "device": p.camera, "dedup_key": p.dedup_key, "clip": p.path, "frames": n,
            "seconds": round((p.frames[-1].ts - p.frames[0].ts).total_seconds(), 1),
            "bytes": (self.data_dir / p.path).stat().st_size, "truncated": p.truncated,
            "encode_ms": round(dt * 1000)})
        return p.path
