"""A vision worker process for tests/integration/test_vision_failover.py (not a test
module): the hub's ``VisionWorker`` with camera leases (``hub.vision.ownership``) on
the real broker and database, as ``hub run --roles vision`` wires them, but with a
model that finds nobody and an analyzer that appends every frame it analyses to a
file ("worker camera unix-time"), so the test sees who analyses which camera.

    python -m tests.integration.vision_proc DB_URL MQTT_URL SITE_FILE NAME OUT DATA_DIR
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from hub.config import load_site
from hub.domain import Alarm
from hub.services import parse_mqtt_url
from hub.store.db import open_pool
from hub.vision.ownership import CameraLeases
from hub.vision.worker import VisionWorker


class NoPose:
    def detect(self, frame: np.ndarray) -> list[Any]:
        return []


class Recorder:
    def __init__(self, worker: str, camera: str, out: Path) -> None:
        self.worker, self.camera, self.out = worker, camera, out

    def process(self, ts: datetime, frame: np.ndarray, people: Any) -> list[Alarm]:
        with self.out.open("a", encoding="utf-8") as f:
            f.write(f"{self.worker} {self.camera} {time.time():.3f}\n")
        return []

    def rebaseline(self, ts: datetime) -> None:
        return None

    def needs_still_frames(self, ts: datetime) -> bool:
        return True  # every frame analysed, moving or not

    def needs_every_frame(self, ts: datetime) -> bool:
        return False


def main(db_url: str, mqtt_url: str, site_file: str, name: str, out: str,
         data_dir: str) -> None:
    site = load_site(site_file)
    pool = open_pool(db_url, 1, 4, name=name)
    worker = VisionWorker(site, parse_mqtt_url(mqtt_url), Path(data_dir), lambda a: None,
                          client_id=name, leased=True, analysis_threads=1,
                          pose_factory=NoPose,
                          analyzer_factory=lambda d: Recorder(name, d.id, Path(out)))
    worker.start()
    leases = CameraLeases(pool, worker, name).start()
    print("vision worker ready", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    leases.stop()
    worker.stop()
    pool.close()


if __name__ == "__main__":
    main(*sys.argv[1:7])
