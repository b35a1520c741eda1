"""Live view: the frames the hub already receives over MQTT, handed to the browsers
watching a camera, and the camera asked for a steadier stream while watched.

The API process subscribes to a camera's frames on its one MQTT connection
(:mod:`hub.mqtt`) only while someone watches it: the first viewer adds a consumer
(``live-<camera>``, filter ``sc/v1/+/<camera>/frame``: a filter of its own, never
the vision worker's ``sc/v1/<site>/+/frame`` or ``sc/v1/<site>/<camera>/frame``,
which an unsubscribe would take away), the last one leaving removes it. paho's
network thread only checks the frame (:func:`hub.protocol.decode_frame`), keeps it as
the camera's latest and wakes the viewers' tasks on the server's event loop; each
viewer sends the newest frame at most ``fps`` times a second and skips the ones in
between, so a slow browser never backs anything up.

While a camera is watched its retained ``config`` carries a live boost (a higher
frame rate, the motion gate off) until ``now + lease_s``, renewed every third of
the lease; when the last viewer leaves the base config (the site file's settings)
is published again, and if the hub dies the camera agent ends the boost by itself
at ``until`` (:mod:`hub.stream_settings`). At start the base config of every camera
is published, so a camera agent applies what the site file says.

Viewers are bounded per camera and per user; a refusal is a :class:`LiveRefused`
with a stable code (the route answers 429) and counted.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import paho.mqtt.client as mqtt
from prometheus_client import Counter, Gauge

from hub import protocol
from hub.clock import Clock, SystemClock
from hub.config import DeviceConfigEntry, Site
from hub.mqtt import Consumer, MqttConnection
from hub.protocol import FrameMeta, Kind, ProtocolError
from hub.stream_settings import LIVE_BOOST_FPS, base_config, boosted_config

log = logging.getLogger(__name__)

VIEWERS = Gauge("hub_live_viewers", "Browsers watching a camera's live view", ["camera"])
FRAMES_IN = Counter("hub_live_frames_in_total",
                    "Frames received for live view (while watched)", ["camera"])
FRAMES_OUT = Counter("hub_live_frames_out_total", "Frames sent to live viewers")
REFUSED = Counter("hub_live_refused_total", "Live views refused, by reason", ["reason"])
REJECTED = Counter("hub_live_frames_rejected_total",
                   "Frames for live view that broke the contract, by reason", ["reason"])
CONFIGS = Counter("hub_live_configs_total", "Camera configs published, by kind",
                  ["kind"])
LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class LiveLimits:
    fps: float = 5.0  # frames a second to one viewer
    per_camera: int = 20  # viewers of one camera
    per_user: int = 16  # live views one user has open (a video wall)
    lease_s: float = 30.0  # a boost's length; renewed every lease_s / 3 while watched
    boost_fps: float = LIVE_BOOST_FPS  # the camera's frame rate while watched


class LiveRefused(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(slots=True)
class LiveFrame:
    meta: FrameMeta
    jpeg: bytes
    received: float  # time.monotonic() at arrival


@dataclass(eq=False)
class Viewer:
    camera: str
    user: str
    loop: asyncio.AbstractEventLoop
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    sent: int = 0


@dataclass(eq=False)
class _Feed:
    device: DeviceConfigEntry
    viewers: set[Viewer] = field(default_factory=set)
    consumer: Consumer | None = None
    latest: LiveFrame | None = None
    lease_until: datetime | None = None
    guard: threading.Lock = field(default_factory=threading.Lock)


class LiveView:
    """The live views of one API process. ``mqtt`` is the process's connection."""

    def __init__(self, site: Site, mqtt_connection: MqttConnection,
                 limits: LiveLimits | None = None, clock: Clock | None = None,
                 stopping: Callable[[], bool] = lambda: False) -> None:
        """``stopping``: whether the HTTP server is shutting down (it waits for open
        responses, so the viewers' streams end when it says so)."""
        self.site = site
        self.stopping = stopping
        self.mqtt = mqtt_connection
        self.limits = limits or LiveLimits()
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._feeds: dict[str, _Feed] = {
            d.id: _Feed(d) for d in site.devices if d.kind == "camera" and d.camera}
        self._per_user: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log_times: dict[tuple[str, str], float] = {}

    # ------------------------------------------------------------ lifecycle

    def start(self) -> LiveView:
        self._thread = threading.Thread(target=self._lease_loop, name="live-lease",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            feeds = list(self._feeds.values())
        for f in feeds:
            for v in list(f.viewers):
                self._wake(v, closed=True)
        if self._thread is not None:
            self._thread.join(5)

    def cameras(self) -> list[DeviceConfigEntry]:
        return [f.device for f in self._feeds.values()]

    def watchers(self, camera: str) -> int:
        f = self._feeds.get(camera)
        return len(f.viewers) if f else 0

    # ------------------------------------------------------------ viewers

    def open(self, camera: str, user: str, loop: asyncio.AbstractEventLoop) -> Viewer:
        """A new viewer of ``camera`` (LiveRefused when a limit is reached)."""
        lim = self.limits
        with self._lock:
            feed = self._feeds.get(camera)
            if feed is None:
                raise LiveRefused("unknown_camera", f"no camera {camera!r} in this site")
            if self._stop.is_set():
                raise LiveRefused("stopping", "the hub is stopping")
            if len(feed.viewers) >= lim.per_camera:
                REFUSED.labels("camera_full").inc()
                raise LiveRefused("camera_full", f"camera {camera} has {lim.per_camera}"
                                  " live viewers already")
            if self._per_user.get(user, 0) >= lim.per_user:
                REFUSED.labels("user_full").inc()
                raise LiveRefused("user_full", f"at most {lim.per_user} live views per"
                                  " user; close one first")
            v = Viewer(camera, user, loop)
            feed.viewers.add(v)
            self._per_user[user] = self._per_user.get(user, 0) + 1
            first = len(feed.viewers) == 1
        VIEWERS.labels(camera).inc()
        if first:
            self._sync(feed)
        log.info("live view opened", extra={"device": camera, "user": user,
                                            "viewers": len(feed.viewers)})
        return v

    def close(self, v: Viewer) -> None:
        with self._lock:
            feed = self._feeds[v.camera]
            if v not in feed.viewers:
                return
            feed.viewers.discard(v)
            n = self._per_user.get(v.user, 1) - 1
            if n > 0:
                self._per_user[v.user] = n
            else:
                self._per_user.pop(v.user, None)
            last = not feed.viewers
        v.closed = True
        VIEWERS.labels(v.camera).dec()
        if last:
            self._sync(feed)
        log.info("live view closed", extra={"device": v.camera, "user": v.user,
                                            "frames_sent": v.sent})

    def latest(self, camera: str) -> LiveFrame | None:
        f = self._feeds.get(camera)
        return f.latest if f else None

    # ------------------------------------------------------------ MQTT side

    def _sync(self, feed: _Feed) -> None:
        """Subscribe while the camera has viewers, unsubscribe when it has none; one
        change at a time per camera (a viewer may leave while the first subscribes)."""
        with feed.guard:
            watched = bool(feed.viewers)
            if watched and feed.consumer is None:
                cid = feed.device.id
                filt = f"{protocol.ROOT}/+/{cid}/{Kind.FRAME.value}"
                feed.consumer = self.mqtt.add_consumer(
                    f"live-{cid}", [(filt, 0)], lambda msg, f=feed: self._on_frame(f, msg))
                self._boost(feed)
            elif not watched and feed.consumer is not None:
                self.mqtt.remove_consumer(feed.consumer)
                feed.consumer = None
                feed.latest = None
                feed.lease_until = None
                self._publish_config(feed.device, boosted=False)

    def _on_frame(self, feed: _Feed, msg: mqtt.MQTTMessage) -> None:
        cid = feed.device.id
        try:
            t = protocol.parse_topic(msg.topic)
            if t.site != self.site.site.id:
                raise ProtocolError("bad_topic", f"site {t.site!r} is not ours")
            meta, jpeg = protocol.decode_frame(msg.payload, device=cid)
        except ProtocolError as e:
            REJECTED.labels(e.reason).inc()
            self._log(cid, e.reason, {"device": cid, "topic": msg.topic,
                                      "reason": e.reason, "detail": e.detail[:200]})
            return
        FRAMES_IN.labels(cid).inc()
        feed.latest = LiveFrame(meta, jpeg, time.monotonic())
        for v in list(feed.viewers):
            self._wake(v)

    @staticmethod
    def _wake(v: Viewer, closed: bool = False) -> None:
        if closed:
            v.closed = True
        try:
            v.loop.call_soon_threadsafe(v.wake.set)
        except RuntimeError:  # the server's loop has closed: the viewer is gone
            v.closed = True

    # ------------------------------------------------------------ camera config

    def publish_base(self) -> None:
        """Every camera's base config (the site file's settings), retained."""
        for f in self._feeds.values():
            if not f.viewers:
                self._publish_config(f.device, boosted=False)

    def _boost(self, feed: _Feed) -> None:
        until = self.clock.now() + timedelta(seconds=self.limits.lease_s)
        with self._lock:
            if not feed.viewers:
                return
            feed.lease_until = until
        self._publish_config(feed.device, boosted=True, until=until)

    def _publish_config(self, device: DeviceConfigEntry, *, boosted: bool,
                        until: datetime | None = None) -> None:
        assert device.camera is not None
        cfg = (boosted_config(device.camera, until, self.limits.boost_fps)
               if boosted and until is not None else base_config(device.camera))
        t = protocol.topic(self.site.site.id, device.id, Kind.CONFIG)
        self.mqtt.publish(t, protocol.encode(cfg), qos=1, retain=True, by="live")
        CONFIGS.labels("boost" if boosted else "base").inc()
        log.info("camera config published", extra={
            "device": device.id, "boosted": boosted,
            "until": until.isoformat() if until else None})

    def _lease_loop(self) -> None:
        # The base configs wait for the connection: a retained message published
        # before it would be lost.
        while not self._stop.is_set() and not self.mqtt.wait_connected(1.0):
            pass
        if self._stop.is_set():
            return
        self.publish_base()
        renew = self.limits.lease_s / 3
        while not self._stop.wait(min(1.0, renew)):
            now = self.clock.now()
            for f in list(self._feeds.values()):
                due = f.lease_until
                if f.viewers and due is not None and (due - now).total_seconds() <= 2 * renew:
                    self._boost(f)

    def _log(self, who: str, reason: str, extra: dict[str, object]) -> None:
        now = time.monotonic()
        if now - self._log_times.get((who, reason), -LOG_EVERY_S) < LOG_EVERY_S:
            return
        self._log_times[(who, reason)] = now
        log.warning("live frame rejected", extra=extra)


def mjpeg_part(frame: LiveFrame, boundary: str) -> bytes:
    head = (f"--{boundary}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(frame.jpeg)}\r\n"
            f"X-Frame-Seq: {frame.meta.seq}\r\nX-Frame-Ts: {frame.meta.ts.isoformat()}\r\n\r\n")
    return head.encode() + frame.jpeg + b"\r\n"


async def frames(live: LiveView, v: Viewer, boundary: str,
                 now: Callable[[], float] = time.monotonic) -> AsyncIterator[bytes]:
    """The viewer's MJPEG body: the newest frame at most ``live.limits.fps`` a
    second; closes the viewer when the browser goes (the task is cancelled)."""
    period = 1.0 / live.limits.fps
    last_seq: int | None = None
    next_at = 0.0
    try:
        while not v.closed and not live.stopping():
            try:
                await asyncio.wait_for(v.wake.wait(), timeout=1.0)
            except TimeoutError:
                continue
            v.wake.clear()
            if v.closed:
                break
            f = live.latest(v.camera)
            if f is None or f.meta.seq == last_seq:
                continue
            wait = next_at - now()
            if wait > 0:
                await asyncio.sleep(wait)
                f = live.latest(v.camera) or f  # the newest, after the wait
            last_seq = f.meta.seq
            next_at = now() + period
            v.sent += 1
            FRAMES_OUT.inc()
            yield mjpeg_part(f, boundary)
    finally:
        live.close(v)
