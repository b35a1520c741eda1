"""Store-and-forward spool: every outgoing message is written here first and removed
only when the broker has acknowledged it (PUBACK), so nothing is lost while the broker
is unreachable or the agent restarts.

One SQLite file in WAL mode. Messages are replayed per device in the order they were
spooled (the row id). The spool also keeps each device's sequence counter, allocated in
the same transaction as the message that carries it, so a restart never reuses a seq.

Bounded: beyond ``max_messages`` the oldest telemetry and heartbeats are dropped first
(a later reading supersedes them); events (SOS, smoke, door, ...) are never dropped, so
the bound is soft when the spool holds nothing but events. Drops are counted and logged.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Message classes that may be dropped under pressure (a later one supersedes them);
# everything else (events) is kept.
DROPPABLE = ("telemetry", "heartbeat")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    device  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    topic   TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos     INTEGER NOT NULL,
    retain  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS spool_device_id ON spool (device, id);
CREATE INDEX IF NOT EXISTS spool_kind_id ON spool (kind, id);
CREATE TABLE IF NOT EXISTS seqs (
    device TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Spooled:
    id: int
    device: str
    seq: int
    kind: str
    topic: str
    payload: bytes
    qos: int
    retain: bool


def _wall_us() -> int:
    return time.time_ns() // 1000


class Spool:
    """Thread-safe: each thread gets its own SQLite connection.

    ``first_seq`` gives the first sequence number of a device the spool has never
    seen: by default the wall clock in microseconds, so that a device whose spool file
    was lost still counts upwards from where it was (the store drops a (device, seq)
    it already holds)."""

    def __init__(self, path: str | Path, *, max_messages: int = 100_000,
                 first_seq: Callable[[], int] = _wall_us) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_messages = max_messages
        self._first_seq = first_seq
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        c = self._conn()
        c.executescript(_SCHEMA)
        self._count = int(c.execute("SELECT count(*) FROM spool").fetchone()[0])

    # ------------------------------------------------------------ connections

    def _conn(self) -> sqlite3.Connection:
        c: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if c is None:
            if self._closed:
                raise RuntimeError(f"spool {self.path} is closed")
            c = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                check_same_thread=False)
            c.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash; only an OS crash may lose
            # the last transactions, which is the usual trade for edge flash storage.
            c.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = c
            with self._lock:
                self._conns.append(c)
        return c

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for c in self._conns:
                try:
                    c.close()
                except sqlite3.ProgrammingError:
                    pass  # made in another thread that already finished
            self._conns.clear()

    # ------------------------------------------------------------ writing

    def put(self, device: str, kind: str, topic: str, build: Callable[[int], bytes], *,
            qos: int = 1, retain: bool = False) -> tuple[int, int]:
        """Allocate the device's next seq, build the payload with it and spool the
        message, atomically. Returns (row id, seq)."""
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            seq = self._next_seq(c, device)
            cur = c.execute(
                "INSERT INTO spool (device, seq, kind, topic, payload, qos, retain)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (device, seq, kind, topic, build(seq), qos, int(retain)),
            )
            row_id = int(cur.lastrowid or 0)
            dropped = 0
            with self._lock:
                self._count += 1
                over = self._count - self.max_messages
            if over > 0:
                dropped = self._drop_oldest_telemetry(c, over)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            with self._lock:
                self._count = int(c.execute("SELECT count(*) FROM spool").fetchone()[0])
            raise
        if dropped:
            log.warning("spool full: dropped oldest telemetry",
                        extra={"device": device, "dropped": dropped, "spool": str(self.path)})
        return row_id, seq

    def next_seq(self, device: str) -> int:
        """Allocate a seq for a message that is not spooled (presence status)."""
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            seq = self._next_seq(c, device)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return seq

    def _next_seq(self, c: sqlite3.Connection, device: str) -> int:
        row = c.execute("SELECT seq FROM seqs WHERE device = ?", (device,)).fetchone()
        seq = int(row[0]) + 1 if row else self._first_seq()
        c.execute("INSERT INTO seqs (device, seq) VALUES (?, ?)"
                  " ON CONFLICT (device) DO UPDATE SET seq = excluded.seq", (device, seq))
        return seq

    def _drop_oldest_telemetry(self, c: sqlite3.Connection, n: int) -> int:
        cur = c.execute(
            "DELETE FROM spool WHERE id IN"
            " (SELECT id FROM spool WHERE kind IN (?, ?) ORDER BY id LIMIT ?)", (*DROPPABLE, n))
        dropped = cur.rowcount
        if dropped:
            c.execute("INSERT INTO counters (name, value) VALUES ('dropped_telemetry', ?)"
                      " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                      (dropped,))
            with self._lock:
                self._count -= dropped
        return dropped

    # ------------------------------------------------------------ reading / acking

    def pending(self, device: str, after_id: int = 0, limit: int = 100) -> list[Spooled]:
        """The device's spooled messages with id > ``after_id``, oldest first."""
        rows = self._conn().execute(
            "SELECT id, device, seq, kind, topic, payload, qos, retain FROM spool"
            " WHERE device = ? AND id > ? ORDER BY id LIMIT ?", (device, after_id, limit),
        ).fetchall()
        return [Spooled(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6], bool(r[7]))
                for r in rows]

    def ack(self, ids: Iterable[int]) -> int:
        """Remove acknowledged messages; returns how many were still there."""
        ids = list(ids)
        if not ids:
            return 0
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            n = 0
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                cur = c.execute(f"DELETE FROM spool WHERE id IN ({','.join('?' * len(chunk))})",
                                chunk)
                n += cur.rowcount
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        with self._lock:
            self._count -= n
        return n

    # ------------------------------------------------------------ introspection

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def count(self, device: str | None = None) -> int:
        if device is None:
            return int(self._conn().execute("SELECT count(*) FROM spool").fetchone()[0])
        return int(self._conn().execute(
            "SELECT count(*) FROM spool WHERE device = ?", (device,)).fetchone()[0])

    def last_seq(self, device: str) -> int | None:
        row = self._conn().execute("SELECT seq FROM seqs WHERE device = ?", (device,)).fetchone()
        return int(row[0]) if row else None

    def counter(self, name: str) -> int:
        row = self._conn().execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0
