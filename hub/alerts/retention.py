"""Retention: delivered notifications and alarm records older than the retention
time are dropped (incidents and their audit trail are kept)."""

from __future__ import annotations

import logging
from datetime import timedelta

from psycopg_pool import ConnectionPool

from hub.clock import Clock
from hub.store import incidents as incidents_store
from hub.store import outbox

log = logging.getLogger(__name__)


class Retention:
    def __init__(self, pool: ConnectionPool, clock: Clock, days: float) -> None:
        self.pool = pool
        self.clock = clock
        self.keep = timedelta(days=days)

    def purge(self) -> dict[str, int]:
        """Drop delivered notifications and alarm records past the retention time."""
        before = self.clock.now() - self.keep
        with self.pool.connection() as conn:
            n = {"outbox": outbox.purge(conn, before),
                 "alarms": incidents_store.purge_alarms(conn, before)}
        if any(n.values()):
            log.info("purged old records", extra=n)
        return n
