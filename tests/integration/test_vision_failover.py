"""Cameras owned by lease, across real processes SIGKILLed.

Two vision worker processes (``tests/integration/vision_proc.py``: the hub's
``VisionWorker`` and camera leases on the real broker and database, with a model that
finds nobody and an analyzer that records each frame it analyses) share four
cameras whose frames are published all along. One is SIGKILLed: its cameras are
analysed by the other within 10 s. A third joins: it takes a fair share, and from
then on every camera is analysed by exactly one worker. The measured times are
printed (``pytest -s``).
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import psycopg
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from hub import protocol
from hub.protocol import FrameMeta, Kind
from hub.services import Broker
from tests.integration.failover_support import log_tail, stop_all, wait_for

REPO = Path(__file__).resolve().parents[2]
CAMS = [f"cam-{i}" for i in range(4)]

pytestmark = pytest.mark.slow


def site_file(tmp: Path, site_id: str) -> Path:
    raw = yaml.safe_load((REPO / "deploy/sites/demo.yaml").read_text(encoding="utf-8"))
    raw["site"]["id"] = site_id
    base = next(d for d in raw["devices"] if d["kind"] == "camera")
    raw["devices"] = [d for d in raw["devices"] if d["kind"] != "camera"]
    for cid in CAMS:
        cam = copy.deepcopy(base)
        cam["id"] = cid
        cam["camera"]["fps"] = 4
        cam["camera"].pop("events", None)
        raw["devices"].append(cam)
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


class Frames:
    """Publishes a frame of every camera four times a second, as camera agents do."""

    def __init__(self, broker: Broker, site_id: str) -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        self.site_id = site_id
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self) -> None:
        rng = np.random.default_rng(1)
        seq = 0
        while not self.stop.wait(0.25):
            seq += 1
            for cid in CAMS:
                img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
                ok, buf = cv2.imencode(".jpg", img)
                meta = FrameMeta(device=cid, seq=seq, ts=datetime.now(UTC), width=160,
                                 height=120)
                self.c.publish(protocol.topic(self.site_id, cid, Kind.FRAME),
                               protocol.encode_frame(meta, buf.tobytes()), qos=0)

    def close(self) -> None:
        self.stop.set()
        self.t.join(5)
        self.c.disconnect()
        self.c.loop_stop()


class Workers:
    def __init__(self, db_url: str, broker: Broker, site_id: str, tmp: Path) -> None:
        self.args = [db_url, broker.url, str(site_file(tmp, site_id))]
        self.db_url, self.site_id, self.tmp = db_url, site_id, tmp
        self.out = tmp / "analysed.txt"
        self.out.touch()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        log = (self.tmp / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.vision_proc", *self.args, name,
             str(self.out), str(self.tmp / f"data-{name}")],
            cwd=REPO, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT)

    def log(self, name: str) -> str:
        return log_tail(self.tmp, name)

    def owners(self) -> dict[str, str]:
        with psycopg.connect(self.db_url, autocommit=True) as c:
            rows = c.execute("SELECT key, owner FROM leases WHERE kind = 'camera' AND scope = %s"
                             " AND expires_at > now()", (self.site_id,)).fetchall()
        return dict(rows)

    def analysed(self, since: float) -> dict[str, set[str]]:
        """camera -> the workers that analysed a frame of it after ``since``."""
        out: dict[str, set[str]] = {}
        for line in self.out.read_text().splitlines():
            worker, cam, t = line.split()
            if float(t) > since:
                out.setdefault(cam, set()).add(worker)
        return out

    def balanced(self, names: list[str]) -> bool:
        held = self.owners()
        counts = {n: sum(1 for o in held.values() if o == n) for n in names}
        share = -(-len(CAMS) // len(names))
        return len(held) == len(CAMS) and set(held.values()) <= set(names) and \
            all(0 < c <= share for c in counts.values())

    def stop(self) -> None:
        stop_all(self.procs.values())


@pytest.fixture
def workers(db_url: str, broker: Broker, site_id: str, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(db_url, broker, site_id, tmp_path)
    frames = Frames(broker, site_id)
    try:
        yield w
    finally:
        frames.close()
        w.stop()


def test_a_killed_workers_cameras_move_within_10_s_and_a_new_one_takes_its_share(
        workers: Workers) -> None:
    w = workers
    w.start("va")
    w.start("vb")
    assert wait_for(lambda: w.balanced(["va", "vb"]), 90, 0.25), w.log("va") + w.log("vb")
    settled = time.time()
    assert wait_for(lambda: len(w.analysed(settled + 1)) == len(CAMS), 30), w.log("va")
    held = w.owners()
    assert w.analysed(settled + 1) == {c: {o} for c, o in held.items()}

    victim_cams = sorted(c for c, o in held.items() if o == "va")
    os.kill(w.procs["va"].pid, signal.SIGKILL)
    w.procs["va"].wait(10)
    killed_wall, killed = time.time(), time.monotonic()

    def moved() -> bool:
        seen = w.analysed(killed_wall)
        return all("vb" in seen.get(c, set()) for c in victim_cams)
    assert wait_for(moved, 20, 0.05), w.log("vb")
    failover_s = time.monotonic() - killed
    print(f"\nvision failover: {len(victim_cams)} cameras of the SIGKILLed worker analysed"
          f" by the other {failover_s:.1f} s after the kill (lease ttl 6 s)")
    assert failover_s <= 10.0

    w.start("vc")
    joined = time.monotonic()
    assert wait_for(lambda: w.balanced(["vb", "vc"]), 90, 0.25), w.log("vc")
    balanced_at = time.time()
    share_s = time.monotonic() - joined
    assert wait_for(lambda: "vc" in set().union(*w.analysed(balanced_at).values()), 20)
    print(f"vision: a new worker held its share ({len(CAMS) // 2} of {len(CAMS)}) {share_s:.1f} s"
          " after its start (including the process start)")
    # From now on each camera is analysed by exactly its owner.
    time.sleep(2.0)
    held = w.owners()
    seen = w.analysed(balanced_at + 1.0)
    assert seen == {c: {o} for c, o in held.items()}
