"""Retention: delivered notifications and alarm records older than the retention
time are dropped (incidents and their audit trail are kept); event clips past their
category's days, then the oldest over the site's total size, are removed
(hub/vision/clipstore.py)."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from psycopg_pool import ConnectionPool

from hub.clock import Clock
from hub.config import ClipsConfig
from hub.store import incidents as incidents_store
from hub.store import outbox
from hub.vision import clipstore

log = logging.getLogger(__name__)


class Retention:
    def __init__(self, pool: ConnectionPool, clock: Clock, days: float,
                 data_dir: Path | None = None, clips: ClipsConfig | None = None) -> None:
        """``data_dir`` and ``clips``: where the event clips are and how long they stay;
        without a data directory no clip is touched."""
        self.pool = pool
        self.clock = clock
        self.keep = timedelta(days=days)
        self.data_dir = data_dir
        self.clips = clips or ClipsConfig()

    def purge(self) -> dict[str, int]:
        """Drop delivered notifications and alarm records past the retention time, and
        the clips past theirs."""
        now = self.clock.now()
        before = now - self.keep
        with self.pool.connection() as conn:
            n = {"outbox": outbox.purge(conn, before),
                 "alarms": incidents_store.purge_alarms(conn, before)}
        if self.data_dir is not None:
            c = self.clips
            n.update(clipstore.purge(self.data_dir, now, c.retention_days,
                                     c.retention_days_by_category,
                                     int(c.max_total_gb * 1024**3)))
        if any(n.values()):
            log.info("purged old records", extra=n)
        return n
