"""The ``live`` section of bench/video.py: what live viewers cost the hub.

One process as a hub's API and vision roles share one: an MQTT connection
(hub.mqtt), a vision worker on it (pose and rules stubbed out: the frames' transport
is measured, not the model) owning ``--streams`` cameras, and the live view
(hub.api.liveview) behind the real route under uvicorn. A publisher sends every camera
a real JPEG (the demo footage's size) at 1 frame a second, the watched camera at the
live boost's 5 frames a second, each stamped with the time it was published.

* ``live_view_viewers``: browsers (HTTP clients reading the MJPEG stream) watching
  the one camera, ``--viewers`` (20).
* ``live_latency_p95_ms``: frame published -> its part read by a viewer, 95th
  percentile over every part every viewer read (target <= 500).
* ``streams_at_1fps_with_viewers`` / ``..._without_viewers``: frames a second the
  vision worker received per camera at 1 fps (the watched one left out), over the
  same seconds of the same load, with the viewers and with none; ``streams_ratio`` =
  with / without (target >= 0.9).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import uvicorn
import yaml

from bench.common import percentile
from hub import protocol
from hub.api.app import create_app
from hub.api.deps import AppContext, Principal
from hub.api.liveview import LiveLimits, LiveView
from hub.config import Site
from hub.mqtt import MqttConnection
from hub.protocol import FrameMeta, Kind
from hub.services import ensure_broker, free_port
from hub.stream_settings import LIVE_BOOST_FPS

REPO = Path(__file__).resolve().parents[1]


def _site(streams: int) -> Site:
    raw = yaml.safe_load((REPO / "deploy/sites/demo.yaml").read_text(encoding="utf-8"))
    raw["site"]["id"] = "benchlive"
    grid = next(d["grid"] for d in raw["devices"] if d["kind"] == "camera")
    raw["devices"] = [d for d in raw["devices"] if d["kind"] != "camera"] + [
        {"id": f"cam-{i:03d}", "kind": "camera", "grid": grid,
         "location": {"x": 0.5, "y": 0.5}, "camera": {"fps": 1}} for i in range(streams)]
    return Site.model_validate(raw)


class _NoPose:
    def detect(self, frame: np.ndarray, lying_pass: bool = False) -> list[Any]:
        return []


class _NoRules:
    def process(self, ts: datetime, frame: np.ndarray, people: Any) -> list[Any]:
        return []

    def rebaseline(self, ts: datetime) -> None:
        return None

    def needs_still_frames(self, ts: datetime) -> bool:
        return False


def _jpeg(i: int) -> bytes:
    rng = np.random.default_rng(i)
    img = rng.integers(60, 200, (540, 960, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (9, 9), 0)  # about the size of a real 960-wide frame
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


def _publisher(conn: MqttConnection, site: str, cams: list[str], watched: str,
               stop: threading.Event) -> None:
    jpegs = [_jpeg(i) for i in range(8)]
    seq = 0
    t0 = time.monotonic()
    tick = 0
    period = 1.0 / LIVE_BOOST_FPS
    while not stop.is_set():
        tick += 1
        # Every camera once a second (spread over the second), the watched one each tick.
        due = [c for j, c in enumerate(cams) if j % int(LIVE_BOOST_FPS) == tick % int(
            LIVE_BOOST_FPS) and c != watched] + [watched]
        for c in due:
            seq += 1
            meta = FrameMeta(device=c, seq=seq, ts=datetime.now(UTC), width=960, height=540)
            conn.publish(protocol.topic(site, c, Kind.FRAME),
                         protocol.encode_frame(meta, jpegs[seq % len(jpegs)]), qos=0,
                         by="bench")
        wait = t0 + tick * period - time.monotonic()
        if wait > 0:
            stop.wait(wait)


def _viewer(url: str, lat: list[float], lock: threading.Lock, stop: threading.Event,
            ready: threading.Event) -> None:
    with httpx.Client(timeout=None) as c, c.stream("GET", url) as r:
        ready.set()
        buf = b""
        for chunk in r.iter_raw():
            now = datetime.now(UTC)
            buf += chunk
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = dict(x.split(": ", 1) for x in buf[:end].decode().split("\r\n")[1:])
                n = int(head["Content-Length"])
                if len(buf) < end + 6 + n:
                    break
                buf = buf[end + 6 + n:]
                ts = datetime.fromisoformat(head["X-Frame-Ts"])
                with lock:
                    lat.append((now - ts).total_seconds() * 1000)
            if stop.is_set():
                return


def bench_live(a: argparse.Namespace, _cfg: Any) -> dict[str, Any]:
    from hub.vision.worker import VisionWorker

    streams, viewers, seconds = a.streams, a.viewers, a.live_seconds
    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    broker = ensure_broker(a.broker, work)
    site = _site(streams)
    cams = [d.id for d in site.devices if d.kind == "camera"]
    watched = cams[0]
    conn = MqttConnection(broker, "hub-bench-live")
    worker = VisionWorker(site, broker, work, lambda _a: None, pose_factory=_NoPose,
                          analyzer_factory=lambda _d: _NoRules(), analysis_threads=1,
                          mqtt_connection=conn)
    worker.start(wait_connected=0)
    conn.start()
    assert conn.wait_connected(10)
    live = LiveView(site, conn, LiveLimits(per_user=viewers, per_camera=viewers)).start()
    ctx = AppContext(pool=None, site=site, tree=None, data_dir=work,
                     principal=lambda _r: Principal("bench", "operator"),
                     extra={"live": live})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    stop_pub = threading.Event()
    pub = threading.Thread(target=_publisher, args=(conn, site.site.id, cams, watched,
                                                    stop_pub), daemon=True)
    pub.start()

    def received() -> int:  # the cameras at 1 fps (the watched one sends 5)
        return sum(st.received for c, st in worker.cameras.items() if c != watched)

    try:
        time.sleep(2)  # warm up
        n0 = received()
        time.sleep(seconds)
        without = (received() - n0) / seconds / (streams - 1)
        lat: list[float] = []
        lock = threading.Lock()
        stop_view = threading.Event()
        readies = []
        for _ in range(viewers):
            ready = threading.Event()
            threading.Thread(target=_viewer, args=(
                f"http://127.0.0.1:{port}/api/live/{watched}/mjpeg", lat, lock, stop_view,
                ready), daemon=True).start()
            readies.append(ready)
        for r in readies:
            r.wait(10)
        time.sleep(2)
        with lock:
            lat.clear()
        n0 = received()
        time.sleep(seconds)
        with_viewers = (received() - n0) / seconds / (streams - 1)
        with lock:
            got = list(lat)
        watching = live.watchers(watched)
        stop_view.set()
    finally:
        stop_pub.set()
        pub.join(5)
        server.should_exit = True
        live.stop()
        worker.stop()
        conn.stop()
    return {
        "live_view_viewers": watching,
        "live_streams": streams,
        "live_latency_p50_ms": round(percentile(got, 0.5), 1),
        "live_latency_p95_ms": round(percentile(got, 0.95), 1),
        "live_parts_read": len(got),
        "streams_at_1fps_without_viewers": round(without, 3),
        "streams_at_1fps_with_viewers": round(with_viewers, 3),
        "streams_ratio": round(with_viewers / without, 3) if without else None,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--streams", type=int, default=40, help="live: cameras sending 1 fps")
    p.add_argument("--viewers", type=int, default=20, help="live: viewers of one camera")
    p.add_argument("--live-seconds", type=float, default=10.0,
                   help="live: seconds measured with and without viewers")
    p.add_argument("--broker", default=None, help="live: mqtt://host:port (default: embedded)")
