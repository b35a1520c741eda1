"""Cameras owned by lease: each camera is analysed by exactly one vision worker.

Every vision worker of a site takes part in the ``camera`` leases of
``hub.store.leases`` (one row per camera, scope = site): every ``renew_s`` it renews
the cameras it holds, gives back those beyond its fair share (so a worker that joins
gets cameras within a round or two) and takes free or expired ones. A worker that
dies stops renewing; within the lease's time-to-live plus one round its cameras are
analysed by the others. The worker starts a fresh pipeline for a camera it takes
(``VisionWorker.own``) and drops its subscriptions when it loses it (``disown``).

For a moment around a move two workers may both receive a camera's frames (the old
owner's round has not yet seen the loss); the alarms they could both raise carry the
same dedup key, so the incident engine keeps one incident.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from prometheus_client import Gauge
from psycopg_pool import ConnectionPool

from hub.store.leases import LeaseTable

log = logging.getLogger(__name__)

HELD = Gauge("hub_vision_cameras_held", "Cameras whose lease this vision worker holds")


class CameraLeases:
    """The lease loop of one vision worker (``worker``: a ``VisionWorker`` made with
    ``leased=True``, already started)."""

    def __init__(self, pool: ConnectionPool, worker: Any, me: str, ttl_s: float = 6.0,
                 renew_s: float | None = None) -> None:
        self.worker = worker
        self.cameras = sorted(worker.cameras)
        self.table = LeaseTable(pool, "camera", worker.site.site.id, me, ttl_s)
        self.renew_s = renew_s if renew_s is not None else ttl_s / 3
        self.ttl_s = ttl_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewed = time.monotonic()

    def round(self) -> None:
        r = self.table.round(self.cameras)
        self._renewed = time.monotonic()
        for cid in sorted(r.lost):
            self.worker.disown(cid)
        for cid in sorted(r.gained):
            self.worker.own(cid)
        HELD.set(len(r.held))

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.round()
            except Exception:  # noqa: BLE001 - database away: retry
                log.exception("camera lease round failed")
                if time.monotonic() - self._renewed > self.ttl_s:
                    self._expire()
            self._stop.wait(self.renew_s)

    def _expire(self) -> None:
        """Unrenewed for the time-to-live: the leases are the others' to take now, so
        stop analysing; the next round that reaches the database takes cameras anew."""
        held = self.worker.owned_cameras
        if held:
            log.warning("camera leases expired unrenewed; cameras given up",
                        extra={"cameras": held})
        for cid in held:
            self.worker.disown(cid)
        self.table.held = frozenset()
        HELD.set(0)

    def start(self) -> CameraLeases:
        self.table.ensure(self.cameras)
        self._thread = threading.Thread(target=self.run, name="vision-leases", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Give the cameras back at once (a clean stop), so the others need not wait
        for the leases to expire."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for cid in self.worker.owned_cameras:
            self.worker.disown(cid)
        try:
            self.table.leave()
        except Exception:  # noqa: BLE001 - they expire on their own
            log.exception("could not give the camera leases back")
        HELD.set(0)
