"""The live relay: incident changes committed by other hub processes (alert
workers, API replicas) reach this process's live-stream clients, through
PostgreSQL's LISTEN/NOTIFY. Changes this process committed itself were streamed
straight after the commit and are skipped by their origin."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import psycopg

from hub.alerts.live import LiveFeed
from hub.store import incidents as incidents_store

log = logging.getLogger(__name__)


class ChangeRelay:
    """``origin``: the origin of this process's own change notices (its incident
    store's)."""

    def __init__(self, conninfo: str, origin: str, live: LiveFeed) -> None:
        self.conninfo = conninfo
        self.origin = origin
        self.live = live
        self.ready = threading.Event()  # set while LISTENing

    def run(self, stop: threading.Event) -> None:
        """The relay thread, until ``stop``: LISTEN, reconnecting after a lost
        connection (the stream is best effort)."""
        while not stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {incidents_store.CHANGES_CHANNEL}")
                    self.ready.set()
                    while not stop.is_set():
                        # Collect first: the connection is busy while notifies() runs.
                        notes = list(conn.notifies(timeout=0.5, stop_after=1))
                        for n in notes:
                            self.relay(conn, n.payload)
            except Exception:  # noqa: BLE001 - reconnect; the stream is best effort
                self.ready.clear()
                log.warning("change relay lost its connection; reconnecting", exc_info=True)
                stop.wait(1.0)

    def relay(self, conn: psycopg.Connection[Any], payload: str) -> None:
        try:
            doc = json.loads(payload)
            if doc.get("o") == self.origin:
                return  # published directly after our own commit
            changes = {int(c[0]): (str(c[1]), c[2]) for c in doc["c"]}
        except (ValueError, KeyError, TypeError, IndexError):
            log.warning("unreadable change notice", extra={"payload": payload[:200]})
            return
        for inc in incidents_store.get_many(conn, list(changes)):
            reason, action = changes[inc.id]  # type: ignore[index]
            self.live.publish(inc, reason, action)
