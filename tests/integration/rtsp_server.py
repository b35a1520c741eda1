"""A real RTSP camera for the tests: GStreamer's RTSP server, and a proxy that breaks it.

Two halves in one file, so the test and the server agree on one set of options:

* run as a script with Debian's ``/usr/bin/python3`` (``python3-gi`` and
  ``gir1.2-gst-rtsp-server-1.0`` belong to it, not to the project's virtual
  environment), it serves an H.264 file over RTSP, RTP interleaved in the RTSP TCP
  connection as most NVR set-ups ask of Hikvision and Dahua cameras. The file is sent as
  it is (demuxed and packetised, not re-encoded), so a stream costs next to no CPU, and
  it is paced by the pipeline clock like a live camera;
* imported by the tests (the project's Python, standard library only here), it makes
  that H.264 file from a clip with ``gst-launch-1.0``, starts and stops the server as a
  subprocess (a camera that reboots), and puts a :class:`FaultyProxy` in front of it
  that can pass the stream, send garbage, accept and say nothing, or cut the stream
  in the middle of a frame and stall.

What is missing on a machine (the GStreamer packages, an H.264 encoder) is said by
:func:`missing`, so the tests skip with that reason; ``./hubw test`` installs them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
MOUNT = "/cam"
ENCODERS = (  # gst-launch encoder descriptions, in order of preference
    ("x264enc", "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate=800"),
    ("openh264enc", "openh264enc gop-size={gop} bitrate=800000"),
)


# ---------------------------------------------------------------- the server (system python)


def serve(clip: str, port: int) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    # One media shared by every client: a camera streams whether or not anyone reads.
    factory.set_shared(True)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    factory.set_launch(
        f'( filesrc location="{clip}" ! qtdemux ! h264parse ! '
        "rtph264pay name=pay0 pt=96 config-interval=1 )")
    user, password = os.environ.get("RTSP_USER"), os.environ.get("RTSP_PASSWORD")
    if user and password:  # a camera with a login, as they all are (HTTP basic)
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role(
            "viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        permissions.add_permission_for_role(
            "viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(MOUNT, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        raise SystemExit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


# ---------------------------------------------------------------- the tests' side


def missing() -> str | None:
    """Why an RTSP server cannot be run here, or None when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found (Debian's python3 with python3-gi)"
    if shutil.which("gst-launch-1.0") is None:
        return "gst-launch-1.0 not found (Debian package gstreamer1.0-tools)"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c",
         "import gi; gi.require_version('GstRtspServer', '1.0');"
         " from gi.repository import GstRtspServer"],
        capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or [""])[-1]
        return (f"GStreamer's RTSP server is not importable from {SYSTEM_PYTHON} (Debian"
                f" packages python3-gi, gir1.2-gst-rtsp-server-1.0): {last}")
    for element in ("qtdemux", "h264parse", "rtph264pay", "avidemux", "jpegdec"):
        if not _has_element(element):
            return (f"GStreamer element {element} missing (Debian packages"
                    " gstreamer1.0-plugins-good, gstreamer1.0-plugins-bad)")
    if _encoder() is None:
        return ("no GStreamer H.264 encoder (x264enc: gstreamer1.0-plugins-ugly;"
                " openh264enc: gstreamer1.0-plugins-bad)")
    return None


def _has_element(name: str) -> bool:
    return subprocess.run(["gst-inspect-1.0", "--exists", name], capture_output=True,
                          timeout=30).returncode == 0


def _encoder() -> str | None:
    for element, description in ENCODERS:
        if _has_element(element):
            return description
    return None


def encode_h264(mjpeg_avi: Path, out: Path, fps: float) -> Path:
    """``out``: the MJPEG AVI ``mjpeg_avi`` (as OpenCV writes it) as H.264 in MP4, a
    keyframe every second, so a client that joins or rejoins has a picture at once."""
    encoder = _encoder()
    if encoder is None:
        raise RuntimeError("no H.264 encoder in GStreamer")
    gop = max(1, round(fps))
    cmd = (f'gst-launch-1.0 -q filesrc location="{mjpeg_avi}" ! avidemux ! jpegdec !'
           f" videoconvert ! video/x-raw,format=I420 ! {encoder.format(gop=gop)} !"
           f' h264parse ! mp4mux ! filesink location="{out}"')
    subprocess.run(cmd, shell=True, check=True, timeout=300, capture_output=True)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RtspServer:
    """GStreamer's RTSP server on ``port`` as a subprocess, serving ``clip`` at
    ``rtsp://127.0.0.1:{port}/cam``, behind a login when ``user`` and ``password`` are
    given; ``stop()`` and ``start()`` again is a camera rebooting (the same port, the
    same URL)."""

    def __init__(self, clip: Path, port: int, user: str | None = None,
                 password: str | None = None) -> None:
        self.clip, self.port = clip, port
        self.user, self.password = user, password
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{MOUNT}"

    def start(self, timeout: float = 20.0) -> None:
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, __file__, str(self.clip), str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": "", "RTSP_USER": self.user or "",
                 "RTSP_PASSWORD": self.password or ""})
        # The port can still be held for a moment by the previous run: retry the bind.
        end = time.monotonic() + timeout
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.proc.wait(5)
            if time.monotonic() < end and "cannot listen" in err:
                time.sleep(0.2)
                return self.start(end - time.monotonic())
            raise RuntimeError(f"RTSP server did not start: {line!r} {err}")

    def stop(self) -> None:
        """Kill it as a power cut would: connections reset, nothing said."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            for f in (self.proc.stdout, self.proc.stderr):
                if f is not None:
                    f.close()
            self.proc = None


class FaultyProxy:
    """A TCP proxy on ``port`` in front of ``upstream``: what a camera on a bad network
    or with bad firmware does to a client. ``mode`` decides for connections accepted
    from then on (and ``cut()`` ends those open now):

    * ``pass``: the real stream;
    * ``garbage``: random bytes, a reply that is not RTSP;
    * ``silent``: accepts the connection and never says anything;
    * ``truncate``: the real stream up to ``truncate_after`` bytes from the server,
      which ends in the middle of a frame, then nothing more, the connection held open.
    """

    MODES = ("pass", "garbage", "silent", "truncate")

    def __init__(self, upstream: tuple[str, int], port: int | None = None,
                 truncate_after: int = 48_000) -> None:
        self.upstream = upstream
        self.truncate_after = truncate_after
        self.mode = "pass"
        self.accepted: dict[str, int] = dict.fromkeys(self.MODES, 0)
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", port or 0), reuse_port=False)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept_loop, name="faulty-proxy",
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{MOUNT}"

    def set_mode(self, mode: str, cut: bool = True) -> None:
        if mode not in self.MODES:
            raise ValueError(mode)
        self.mode = mode
        if cut:
            self.cut()

    def cut(self) -> None:
        with self._lock:
            socks, self._open = self._open, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
        self.cut()

    def _keep(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.extend(socks)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            mode = self.mode
            with self._lock:
                self.accepted[mode] += 1
            self._keep(client)
            if mode == "garbage":
                threading.Thread(target=self._garbage, args=(client,), daemon=True).start()
            elif mode == "silent":
                pass  # held open until cut() or close()
            else:
                try:
                    server = socket.create_connection(self.upstream, timeout=5)
                except OSError:
                    client.close()
                    continue
                self._keep(server)
                limit = self.truncate_after if mode == "truncate" else None
                stalled = threading.Event()
                threading.Thread(target=self._pipe, args=(client, server, None, stalled),
                                 daemon=True).start()
                threading.Thread(target=self._pipe, args=(server, client, limit, stalled),
                                 daemon=True).start()

    def _garbage(self, client: socket.socket) -> None:
        try:
            client.recv(4096)  # the client's OPTIONS
            client.sendall(os.urandom(2048))
            client.recv(4096)  # holds the connection until the client gives up
        except OSError:
            pass

    def _pipe(self, src: socket.socket, dst: socket.socket, limit: int | None,
              stalled: threading.Event) -> None:
        """Copy ``src`` to ``dst``; with ``limit``, stop after that many bytes: the
        server's side is closed (a camera whose stream died; left open, an unread
        connection would stall GStreamer's shared stream for every client) and the
        client's is held open and silent."""
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if stalled.is_set():
                    continue  # the client's requests, into the void
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[: max(0, limit - sent)])
                    stalled.set()
                    _shut(src)
                    return
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        if stalled.is_set():
            _shut(dst)  # dst is the server here: the client stays, silent
            return
        _shut(src)
        _shut(dst)


def _shut(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
