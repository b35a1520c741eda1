"""The sensing rules' host in the alert worker: one sensing engine behind a lock
(the ingest's writer thread and the timers both call it), its state saved in and
restored from the ``sensing_state`` table.

The host only turns messages and time into alarms; applying them is the applier's.
A rule that raises is counted and logged, never allowed to stop the rest."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from hub.alerts.metrics import BAD_ALARMS, SENSING_PROBLEMS
from hub.domain import Alarm
from hub.protocol import Message

log = logging.getLogger(__name__)


def count_sensing_problem(kind: str, _ident: str) -> None:
    """The engine's ``on_problem``. The engine logs the device or household; the
    metric counts by kind only, so that its label set stays bounded."""
    SENSING_PROBLEMS.labels(kind).inc()


class SensingHost:
    """``engine``: the sensing engine (``on_message``/``tick``, and ``snapshot``/
    ``restore`` when it keeps state); ``key``: its row in ``sensing_state``, one per
    site and partition, so alert workers of different sites never overwrite each
    other's."""

    def __init__(self, engine: Any, key: str) -> None:
        self.engine = engine
        self.key = key
        self._lock = threading.Lock()

    def on_messages(self, msgs: Sequence[Message], now: datetime) -> list[Alarm]:
        alarms: list[Alarm] = []
        with self._lock:
            for m in msgs:
                try:
                    alarms.extend(self.engine.on_message(m, received_at=now))
                except Exception:  # noqa: BLE001 - one odd message must not stop the rest
                    BAD_ALARMS.labels("sensing_error").inc()
                    log.exception("sensing rule failed on a message",
                                  extra={"device": getattr(m, "device", None)})
        return alarms

    def tick(self, now: datetime) -> list[Alarm]:
        with self._lock:
            try:
                return list(self.engine.tick(now))
            except Exception:  # noqa: BLE001
                BAD_ALARMS.labels("sensing_error").inc()
                log.exception("sensing tick failed")
                return []

    def save(self, pool: ConnectionPool, now: datetime) -> None:
        snap = getattr(self.engine, "snapshot", None)
        if snap is None:
            return
        try:
            with self._lock:
                doc = snap()
            with pool.connection() as conn:
                conn.execute(
                    "INSERT INTO sensing_state (name, saved_at, snapshot) VALUES (%s, %s, %s)"
                    " ON CONFLICT (name) DO UPDATE SET saved_at = excluded.saved_at,"
                    " snapshot = excluded.snapshot",
                    (self.key, now, Jsonb(doc)))
        except Exception:  # noqa: BLE001 - losing a snapshot only delays inactivity alarms
            log.exception("could not save the sensing state", extra={"key": self.key})

    def restore(self, pool: ConnectionPool) -> None:
        restore = getattr(self.engine, "restore", None)
        if restore is None:
            return
        with pool.connection() as conn:
            row = conn.execute("SELECT snapshot FROM sensing_state WHERE name = %s",
                               (self.key,)).fetchone()
        if row:
            try:
                with self._lock:
                    restore(row[0])
            except Exception:  # noqa: BLE001 - start fresh rather than not at all
                log.exception("could not restore the sensing state; starting fresh",
                              extra={"key": self.key})
