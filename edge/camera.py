"""Camera side of the edge agent: capture, rate limit, motion gate, JPEG, publish.

Sources (OpenCV): ``rtsp://...`` (and http/https streams), a USB camera (``/dev/videoN``
or its index ``N``), or a video file (looped for demos with ``loop: true``). A network
source's ``${NAME}`` placeholders are filled from the environment when the agent starts,
so a camera's user and password stay out of the site file; whatever the agent logs or
reports shows the URL with the password masked. RTSP runs over TCP (RTP interleaved in
the RTSP connection) unless ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` says otherwise. The demo
site's ``demo:NAME`` sources are not camera sources: ``hub demo`` builds that footage
(:mod:`hubtools.demo_media`) and hands the agent the file, so an edge box never runs
the demo tooling; ``hub-edge camera --source DEVICE=FILE`` does the same by hand.

Each camera runs in its own thread with its own MQTT connection (client id = device
id, so a broker ACL can hold it to its own topics). Frames go out on
``sc/v1/{site}/{device}/frame`` with QoS 0 (latest wins; a lost frame is replaced by
the next), with the data timestamp and a sequence number in the frame header:

* live sources stamp frames with the edge clock when captured;
* files stamp frame *i* as ``start_ts + i / file_fps`` (loops continue the count), so
  a replay is deterministic in data time whatever the machine's speed.

The motion gate (:class:`hub.motion.MotionGate`) sends a frame only when enough
of it changed since the last frame sent, and a keyframe every ``keyframe_s`` seconds
regardless, so the hub still sees a static scene and its dwell timers keep ticking.

The agent subscribes to its camera's retained ``config`` topic: the frame rate, JPEG
quality and width and the motion gate the hub pushes there replace the site file's,
and a live-view boost (a higher frame rate, the gate off) holds until its ``until``
and then ends by itself, renewed or not (:mod:`hub.stream_settings`). A config that
breaks the contract is counted (``config_rejected``), logged and ignored.

A camera that cannot be opened, stops delivering, or stalls (no frame within the
camera's ``timeout_s``: FFmpeg's open and read are interrupted then, so a server that
accepts and says nothing cannot hang the agent) is retried with exponential backoff
(with jitter, capped), reported by a ``camera_health`` event and a log line when it
turns unhealthy and again when it has streamed for ``recover_s`` (so a stream that
breaks a moment after each reconnect is one unhealthy period, not a flapping one, and
its backoff keeps growing); failures are counted by kind; it never raises out of its
thread. The
agent also keeps the camera device's presence: a retained ``online`` status, the
``offline`` one as its Last Will, and heartbeat events.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import string
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hub.config import CameraConfig, load_site
from hub.motion import MotionGate
from hub.protocol import (
    MAX_FRAME_BYTES,
    DeviceConfig,
    DeviceState,
    Event,
    EventType,
    FrameMeta,
    Kind,
    ProtocolError,
    Status,
    decode_config,
    encode,
    encode_frame,
    topic,
)
from hub.services import Broker, parse_mqtt_url
from hub.stream_settings import StreamSettings, boost_end, effective

log = logging.getLogger(__name__)

HEADER_ROOM = 1024  # bytes kept free in a frame message for the JSON header
MIN_QUALITY = 30
GRAB_FAILURES = 5  # failed grabs in a row that end a stream (a USB camera unplugged)
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
# RTP inside the RTSP connection: over UDP a lost packet smears or freezes the picture,
# and NAT or a firewall between agent and camera often drops it altogether.
DEFAULT_FFMPEG_OPTIONS = "rtsp_transport;tcp"


class CameraError(RuntimeError):
    """The camera cannot deliver frames now; ``kind`` is what went wrong, for counting:
    ``config``, ``missing_file``, ``no_frames``, ``open_failed``, ``ended``, ``stalled``,
    ``undecodable``, ``encode``."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------- JPEG


def encode_jpeg(frame: np.ndarray, quality: int, max_width: int,
                max_bytes: int = MAX_FRAME_BYTES - HEADER_ROOM) -> tuple[bytes, int, int]:
    """JPEG of ``frame`` no wider than ``max_width`` and no larger than ``max_bytes``:
    lower the quality first (down to 30), then halve the size until it fits."""
    h, w = frame.shape[:2]
    if w > max_width:
        nh = max(1, round(h * max_width / w))
        frame = cv2.resize(frame, (max_width, nh), interpolation=cv2.INTER_AREA)
    q = quality
    while True:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:
            raise CameraError("JPEG encoding failed", "encode")
        if buf.size <= max_bytes:
            h, w = frame.shape[:2]
            return buf.tobytes(), w, h
        if q > MIN_QUALITY:
            q = max(MIN_QUALITY, q - 15)
        else:
            h, w = frame.shape[:2]
            if w < 32:
                raise CameraError(f"cannot fit a frame into {max_bytes} bytes", "encode")
            frame = cv2.resize(frame, (w // 2, max(1, h // 2)), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------- sources


DEMO_PREFIX = "demo:"


def check_source(device_id: str, source: str | None) -> str:
    """``source`` if a camera agent can open it; ValueError (said once, at start) if not."""
    if not source:
        raise ValueError(f"camera {device_id} has no source")
    if source.startswith(DEMO_PREFIX):
        raise ValueError(
            f"camera {device_id}: {source!r} is demo footage, which `hub demo` builds and"
            f" plays itself; give the camera an rtsp:// URL, a device or a video file (e.g."
            f" --source {device_id}=FILE; `python -m hubtools.demo_media` prints the demo's"
            f" files)")
    return source


def is_network(source: str) -> bool:
    return "://" in source


def redact(source: str) -> str:
    """``source`` with the password of its URL masked, for logs and health reports."""
    scheme, sep, rest = source.partition("://")
    if not sep:
        return source
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return source
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}{slash}{path}"


def expand_source(device_id: str, source: str,
                  environ: dict[str, str] | None = None) -> str:
    """A network source with its ``${NAME}`` placeholders filled from the environment
    (``$$`` is a literal ``$``); ValueError naming the variable when one is not set.
    Files and devices are taken as they are."""
    if not is_network(source):
        return source
    env = os.environ if environ is None else environ
    try:
        return string.Template(source).substitute(env)
    except KeyError as e:
        raise ValueError(f"camera {device_id}: its source {redact(source)} needs the"
                         f" environment variable {e.args[0]}, which is not set") from None
    except ValueError as e:
        raise ValueError(f"camera {device_id}: its source {redact(source)}: {e}"
                         " (write a literal $ as $$)") from None


def use_tcp_for_rtsp() -> None:
    """Ask OpenCV's FFmpeg for RTSP over TCP, unless the operator set its options.
    Called from the main thread before any camera thread opens a stream: the variable
    is read by every open, and changing the environment under a reading thread is not
    safe."""
    os.environ.setdefault(FFMPEG_OPTIONS_ENV, DEFAULT_FFMPEG_OPTIONS)


def resolve_source(source: str) -> tuple[str | int, bool]:
    """OpenCV argument for ``source`` and whether it is a file (data-time stamping)."""
    if source.isdigit():
        return int(source), False
    if source.startswith("/dev/video"):
        return source, False
    if "://" in source:
        return source, False
    return source, True


def _open(arg: str | int, is_file: bool, timeout_s: float = 5.0) -> cv2.VideoCapture:
    if is_file and not Path(str(arg)).is_file():
        raise CameraError(f"video file {arg} does not exist", "missing_file")
    if isinstance(arg, str) and is_network(arg):
        # OpenCV's interrupt callback ends FFmpeg's open and each read after these;
        # without them a server that accepts and says nothing blocks for minutes.
        ms = round(timeout_s * 1000)
        t0 = time.monotonic()
        cap = cv2.VideoCapture(arg, cv2.CAP_FFMPEG, [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        # OpenCV does not say why an open failed; how long it took tells the two apart.
        waited = time.monotonic() - t0
        shown = redact(arg) + (f": no usable answer within {timeout_s:g} s"
                               if waited >= timeout_s * 0.9 else
                               ": refused, or not a stream OpenCV can read")
    else:
        cap = cv2.VideoCapture(arg)
        if not is_file:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # USB: keep the driver from hoarding frames
        shown = str(arg)
    if not cap.isOpened():
        cap.release()
        raise CameraError(f"cannot open {shown}", "open_failed")
    return cap


@dataclass(slots=True)
class Captured:
    ts: float  # data time, epoch seconds
    frame: np.ndarray


class FrameSource:
    """Frames from one source at no more than ``fps``, stamped in data time.

    ``realtime=False`` plays files as fast as they decode (tests, benchmarks); the
    timestamps are the same either way."""

    def __init__(self, source: str, fps: float, loop: bool = False, realtime: bool = True,
                 start_ts: float | None = None,
                 clock: Callable[[], float] = time.time,
                 stop: threading.Event | None = None, timeout_s: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.fps = fps
        self.timeout_s = timeout_s
        self.monotonic = monotonic  # times the waiting for frames (tests inject one)
        self.undecodable = 0  # frames grabbed that could not be decoded
        self.loop = loop
        self.realtime = realtime
        self.clock = clock
        self.start_ts = start_ts
        self.stop = stop or threading.Event()
        self.frame_index = 0  # frames read from a file so far, across loops
        self._next_emit: float | None = None
        self._wall0: float | None = None
        self._cap: cv2.VideoCapture | None = None

    def frames(self) -> Iterator[Captured]:
        """Yield frames until the source ends (a file without loop) or ``stop`` is set;
        raise CameraError when it cannot be opened or stops delivering."""
        arg, is_file = resolve_source(self.source)
        if is_file:
            yield from self._file_frames(arg)
            return
        cap = _open(arg, is_file, self.timeout_s)
        try:
            yield from self._live_frames(cap)
        finally:
            cap.release()

    def _due(self, t: float) -> bool:
        period = 1.0 / self.fps
        # The tolerance keeps float sums of periods from skipping a frame that is due.
        return self._next_emit is None or t >= self._next_emit - 1e-3 * period

    def _emitted(self, t: float) -> None:
        period = 1.0 / self.fps
        # Hold the cadence; after a gap (reconnect, slow read) restart it.
        gap = self._next_emit is None or t - self._next_emit > period
        self._next_emit = (t if gap else self._next_emit) + period  # type: ignore[operator]

    def _file_frames(self, arg: str | int) -> Iterator[Captured]:
        cap = _open(arg, True)
        try:
            yield from self._play(cap, arg)
        finally:
            if self._cap is not None:
                self._cap.release()
                self._cap = None

    def _play(self, cap: cv2.VideoCapture, arg: str | int) -> Iterator[Captured]:
        self._cap = cap
        file_fps = cap.get(cv2.CAP_PROP_FPS)
        if not file_fps or file_fps != file_fps or file_fps > 240:
            file_fps = 25.0
        if self.start_ts is None:
            self.start_ts = self.clock()
        if self._wall0 is None:
            self._wall0 = time.monotonic()
        read_in_pass = 0
        while not self.stop.is_set():
            t = self.start_ts + self.frame_index / file_fps
            due = self._due(t)
            if due:
                ok, frame = cap.read()
                ok = ok and frame is not None
            else:
                ok = cap.grab()  # skip without decoding
            if not ok:
                cap = self._rewind(cap, arg, read_in_pass)
                if cap is None:
                    return
                self._cap = cap
                read_in_pass = 0
                continue
            self.frame_index += 1
            read_in_pass += 1
            if not due:
                continue
            self._emitted(t)
            if self.realtime:
                wait = self._wall0 + (t - self.start_ts) - time.monotonic()
                if wait > 0 and self.stop.wait(wait):
                    return
            yield Captured(t, frame)

    def _rewind(self, cap: cv2.VideoCapture, arg: str | int,
                read_in_pass: int) -> cv2.VideoCapture | None:
        cap.release()
        self._cap = None
        if not self.loop:
            return None
        if read_in_pass == 0:
            raise CameraError(f"video file {arg} has no readable frames", "no_frames")
        return _open(arg, True)

    def _live_frames(self, cap: cv2.VideoCapture) -> Iterator[Captured]:
        failures = 0
        # Monotonic, not self.clock: the timeout is about this machine's waiting.
        last_grab = last_frame = self.monotonic()
        while not self.stop.is_set():
            # grab() every frame so the driver's buffer never holds old ones, decode
            # (retrieve) only those the frame-rate limit lets through.
            if not cap.grab():
                failures += 1
                silent = self.monotonic() - last_grab
                if silent >= self.timeout_s:  # FFmpeg's read timeout ended the grab
                    raise CameraError(f"no frame for {silent:.1f} s (stream stalled)",
                                      "stalled")
                if failures >= GRAB_FAILURES:
                    raise CameraError("camera stopped delivering frames (disconnected?)",
                                      "ended")
                self.stop.wait(0.05)
                continue
            failures = 0
            last_grab = self.monotonic()
            t = self.clock()
            if not self._due(t):
                continue
            ok, frame = cap.retrieve()
            if ok and frame is not None:
                last_frame = last_grab
                self._emitted(t)
                yield Captured(t, frame)
                continue
            self.undecodable += 1
            if last_grab - last_frame >= self.timeout_s:
                raise CameraError(f"no decodable frame for {last_grab - last_frame:.1f} s"
                                  f" ({self.undecodable} undecodable)", "undecodable")


# ---------------------------------------------------------------- agent


class Backoff:
    """Exponential backoff with jitter: initial, 2x, 4x, ... capped at ``maximum``."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, jitter: float = 0.2,
                 rng: random.Random | None = None) -> None:
        self.initial, self.maximum, self.jitter = initial, maximum, jitter
        self.attempt = 0
        self.rng = rng or random.Random()

    def next(self) -> float:
        d = min(self.maximum, self.initial * (2 ** self.attempt))
        self.attempt += 1
        return d * (1 + self.rng.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self.attempt = 0


class StreamTimer:
    """How long a stream has been delivering without a pause: a pause between frames
    longer than max(1 s, three frame periods at the rate asked now) starts it over, so
    a stream that stalls, or hands over a frame a while after a read timed out, has
    not been streaming. Times are the caller's (monotonic seconds)."""

    def __init__(self) -> None:
        self._since: float | None = None
        self._last = 0.0

    def restart(self) -> None:
        self._since = None

    def frame(self, now: float, fps: float) -> float:
        """A frame arrived at ``now``; seconds the stream has held since."""
        if self._since is None or now - self._last > max(1.0, 3.0 / fps):
            self._since = now
        self._last = now
        return now - self._since


@dataclass
class CameraStats:
    captured: int = 0
    sent: int = 0
    gated: int = 0  # not sent: too little motion and no keyframe due
    not_connected: int = 0  # not sent: broker unreachable (QoS 0 frames are not spooled)
    failures: int = 0
    failures_by_kind: dict[str, int] = field(default_factory=dict)  # CameraError.kind
    bytes_sent: int = 0
    config_applied: int = 0  # retained config messages taken from the hub
    config_rejected: int = 0  # ... and refused as breaking the contract


class CameraAgent:
    def __init__(
        self,
        device_id: str,
        site_id: str,
        camera: CameraConfig,
        broker: Broker,
        *,
        realtime: bool = True,
        start_ts: float | None = None,
        keyframe_s: float = 1.0,
        motion_threshold: float = 0.002,
        max_bytes: int = MAX_FRAME_BYTES - HEADER_ROOM,
        heartbeat_s: float | None = 30.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        recover_s: float = 3.0,
        username: str | None = None,
        password: str | None = None,
        clock: Callable[[], float] = time.time,
        on_frame: Callable[[FrameMeta, bytes], None] | None = None,
    ) -> None:
        self._source = expand_source(device_id, check_source(device_id, camera.source))
        if is_network(self._source):
            use_tcp_for_rtsp()
        self.device_id = device_id
        self.site_id = site_id
        self.camera = camera
        self.broker = broker
        self.realtime = realtime
        self.start_ts = start_ts
        self.max_bytes = max_bytes
        self.heartbeat_s = heartbeat_s
        self.clock = clock
        self.on_frame = on_frame
        self.gate = MotionGate(threshold=motion_threshold, keyframe_s=keyframe_s)
        self.backoff = Backoff(backoff_initial, backoff_max)
        self.recover_s = recover_s
        self.stats = CameraStats()
        self.healthy: bool | None = None
        self.health_reason = ""
        self.finished = threading.Event()  # a file without loop played to its end
        self._username = username if username is not None else broker.username
        self._password = password if password is not None else broker.password
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq_lock = threading.Lock()
        # Sequence numbers must keep rising across restarts (the store is idempotent
        # on (device, seq)); microseconds since the epoch at start do that without a
        # file, as long as the agent sends fewer than a million messages a second.
        self._seq = time.time_ns() // 1000
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._topic = {k: topic(site_id, device_id, k) for k in Kind}
        # What the hub pushed on the config topic (paho's thread writes, the capture
        # thread reads: one reference swapped, so no lock).
        self._pushed: tuple[DeviceConfig, datetime | None] | None = None
        self._applied: StreamSettings | None = None
        self._frames: FrameSource | None = None

    # ------------------------------------------------------------ public

    def start(self) -> None:
        self._client = self._make_client()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.device_id}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        c = self._client
        if c is not None:
            if c.is_connected():
                # A clean stop says offline itself (the broker only sends the Will on
                # an unclean loss).
                c.publish(self._topic[Kind.STATUS], self._status(DeviceState.OFFLINE, "stopped"),
                          qos=1, retain=True).wait_for_publish(2)
            c.disconnect()
            c.loop_stop()
            self._client = None

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def settings(self) -> StreamSettings:
        """The stream settings in force now: the site file's, the hub's pushed config,
        a live-view boost until it ends."""
        pushed = self._pushed
        cfg, ends = pushed if pushed is not None else (None, None)
        return effective(self.camera, cfg, self._now(), ends)

    # ------------------------------------------------------------ MQTT

    def _next_seq(self) -> int:
        with self._seq_lock:
            self._seq += 1
            return self._seq

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _status(self, state: DeviceState, reason: str | None = None) -> bytes:
        return encode(Status(device=self.device_id, seq=self._next_seq(), ts=self._now(),
                             state=state, reason=reason))

    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.device_id,
                        protocol=mqtt.MQTTv5)
        if self._username:
            c.username_pw_set(self._username, self._password)
        if self.broker.tls is not None:  # mqtts://: the broker's certificate is checked
            self.broker.tls.apply(c)
        c.will_set(self._topic[Kind.STATUS], self._status(DeviceState.OFFLINE, "connection lost"),
                   qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_config
        c.reconnect_delay_set(0.5, 30)
        c.max_queued_messages_set(1000)  # events while offline; frames are never queued
        c.connect_async(self.broker.host, self.broker.port, keepalive=30, clean_start=True)
        c.loop_start()
        return c

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            log.error("camera agent: broker refused connection",
                      extra={"device": self.device_id, "reason": str(rc)})
            return
        client.publish(self._topic[Kind.STATUS], self._status(DeviceState.ONLINE), qos=1,
                       retain=True)
        client.subscribe(self._topic[Kind.CONFIG], qos=1)
        self._connected.set()

    def _on_config(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != self._topic[Kind.CONFIG]:
            return
        try:
            cfg = decode_config(msg.payload)
        except ProtocolError as e:
            self.stats.config_rejected += 1
            log.warning("camera config refused", extra={
                "device": self.device_id, "reason": e.reason, "detail": e.detail[:300]})
            return
        ends = boost_end(cfg.live, self._now()) if cfg.live is not None else None
        self._pushed = (cfg, ends)
        self.stats.config_applied += 1

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("camera agent lost the broker",
                        extra={"device": self.device_id, "reason": str(rc)})

    def _event(self, etype: EventType, data: dict[str, Any]) -> None:
        c = self._client
        if c is None:
            return
        ev = Event(device=self.device_id, seq=self._next_seq(), ts=self._now(), type=etype,
                   data=data)
        c.publish(self._topic[Kind.EVENT], encode(ev), qos=1)

    def _set_health(self, healthy: bool, reason: str) -> None:
        if self.healthy is healthy:
            return
        self.healthy, self.health_reason = healthy, reason
        self._event(EventType.CAMERA_HEALTH, {"healthy": healthy, "reason": reason[:200]})
        if healthy:
            log.info("camera healthy", extra={"device": self.device_id, "reason": reason})
        else:
            log.warning("camera unhealthy", extra={"device": self.device_id, "reason": reason})

    # ------------------------------------------------------------ capture loop

    def _run(self) -> None:
        source = FrameSource(self._source, self.settings().fps, loop=self.camera.loop,
                             realtime=self.realtime, start_ts=self.start_ts,
                             clock=self.clock, stop=self._stop,
                             timeout_s=self.camera.timeout_s)
        self._frames = source
        last_beat = 0.0
        streaming = StreamTimer()
        # Frames are QoS 0 and dropped while disconnected; a recording waits (briefly)
        # for the broker so that its first frames, the empty-lane view, are not lost.
        self._connected.wait(10)
        while not self._stop.is_set():
            streaming.restart()
            try:
                for cap in source.frames():
                    self.stats.captured += 1
                    now = time.monotonic()
                    # source.fps: the rate asked now (the hub's config can change it).
                    held = streaming.frame(now, source.fps)
                    # The first frame after start says healthy at once; after a failure
                    # the stream must hold for recover_s first.
                    if self.healthy is None or (
                            self.healthy is False and held >= self.recover_s):
                        self._set_health(True, "streaming")
                        self.backoff.reset()
                    self._handle(cap)
                    if self.heartbeat_s and now - last_beat >= self.heartbeat_s:
                        last_beat = now
                        self._event(EventType.HEARTBEAT, {"frames_sent": self.stats.sent,
                                                          "failures": self.stats.failures})
                    if self._stop.is_set():
                        break
                else:
                    if not self._stop.is_set():
                        log.info("camera source ended", extra={"device": self.device_id})
                        self.finished.set()
                    return
            except Exception as e:  # noqa: BLE001 - a camera failure never ends the agent
                kind = e.kind if isinstance(e, CameraError) else type(e).__name__
                self.stats.failures += 1
                self.stats.failures_by_kind[kind] = self.stats.failures_by_kind.get(kind, 0) + 1
                reason = str(e) if isinstance(e, CameraError) else f"{type(e).__name__}: {e}"
                self._set_health(False, reason)
                delay = self.backoff.next()
                log.info("camera retry scheduled", extra={
                    "device": self.device_id, "kind": kind, "reason": reason[:200],
                    "delay_s": round(delay, 2),
                    "attempt": self.backoff.attempt, "failures": self.stats.failures})
                if self._stop.wait(delay):
                    return

    def _apply(self) -> StreamSettings:
        s = self.settings()
        if s != self._applied:
            if self._frames is not None:
                self._frames.fps = s.fps  # read at each frame's due time
            log.info("camera stream settings", extra={
                "device": self.device_id, "fps": s.fps, "gate": s.gate,
                "jpeg_quality": s.jpeg_quality, "max_width": s.max_width,
                "boosted_until": s.boosted_until.isoformat() if s.boosted_until else None})
            self._applied = s
        return s

    def _handle(self, cap: Captured) -> None:
        s = self._apply()
        decision = self.gate.check(cap.ts, cap.frame)
        if not decision.run and s.gate:
            self.stats.gated += 1
            return
        jpeg, w, h = encode_jpeg(cap.frame, s.jpeg_quality, s.max_width, self.max_bytes)
        meta = FrameMeta(device=self.device_id, seq=self._next_seq(),
                         ts=datetime.fromtimestamp(cap.ts, UTC), width=w, height=h,
                         motion=min(1.0, decision.motion))
        if self.on_frame is not None:
            self.on_frame(meta, jpeg)
        c = self._client
        if c is None or not c.is_connected():
            self.stats.not_connected += 1
            return
        c.publish(self._topic[Kind.FRAME], encode_frame(meta, jpeg), qos=0)
        self.stats.sent += 1
        self.stats.bytes_sent += len(jpeg)


# ---------------------------------------------------------------- command line


def parse_source_overrides(items: list[str] | None) -> dict[str, str]:
    """``DEVICE=SOURCE`` pairs from the command line."""
    out: dict[str, str] = {}
    for item in items or []:
        device, sep, source = item.partition("=")
        if not sep or not device or not source:
            raise ValueError(f"--source {item!r}: expected DEVICE=SOURCE")
        out[device] = source
    return out


def start_site_cameras(site_file: str | Path, broker: Broker, device_ids: list[str] | None = None,
                       sources: dict[str, str] | None = None,
                       **kwargs: Any) -> list[CameraAgent]:
    """Start a CameraAgent for each camera of the site (or the ones named); ``sources``
    replaces the site file's source of the cameras it names. Every camera is checked
    before any starts, so a bad one stops the command instead of leaving half running."""
    site = load_site(site_file)
    sources = sources or {}
    cameras = {d.id for d in site.devices if d.kind == "camera"}
    unknown = set(sources) - cameras
    if unknown:
        raise ValueError(f"--source names no camera of {site_file}: {sorted(unknown)}")
    heartbeat = kwargs.pop("heartbeat_s", None)
    agents = []
    for d in site.devices:
        if d.kind != "camera" or d.camera is None:
            continue
        camera = d.camera
        if d.id in sources:
            camera = camera.model_copy(update={"source": sources[d.id]})
        if not camera.source or (device_ids and d.id not in device_ids):
            continue
        agents.append(CameraAgent(d.id, site.site.id, camera, broker,
                                  heartbeat_s=heartbeat or d.heartbeat_s, **kwargs))
    if device_ids:
        missing = set(device_ids) - {a.device_id for a in agents}
        if missing:
            raise ValueError(f"no camera with a source named {sorted(missing)} in {site_file}")
    for a in agents:
        a.start()
    return agents


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="hub-edge camera",
                                     description="Publish camera frames to the hub")
    p.add_argument("--site", default="deploy/sites/demo.yaml", help="site file with the cameras")
    p.add_argument("--device", action="append", help="camera device id (repeat; default: all)")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt://user:pass@host:port")
    p.add_argument("--source", action="append", metavar="DEVICE=SOURCE",
                   help="play SOURCE (a file, rtsp:// URL or device) for camera DEVICE instead"
                        " of the site file's source (repeat)")
    p.add_argument("--fast", action="store_true",
                   help="play files as fast as they decode (tests; the hub rate-limits floods)")
    p.add_argument("--duration", type=float, default=0, help="stop after S seconds (0: run)")
    return p


def run(args: argparse.Namespace) -> int:
    from hub.config import ConfigError

    try:
        broker = parse_mqtt_url(args.broker)
        agents = start_site_cameras(args.site, broker, args.device,
                                    parse_source_overrides(args.source),
                                    realtime=not args.fast)
    except (ConfigError, ValueError) as e:
        print(f"hub-edge camera: {e}", file=sys.stderr)
        return 2
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait(args.duration or None)
    for a in agents:
        a.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO)
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
