"""The best storage path for readings: a TimescaleDB hypertable when the server
offers the extension, a plain indexed table otherwise.

The decision is a pure function of what the server reports (:func:`plan`), so both
paths are testable without a TimescaleDB server; :func:`ensure` asks the server and
applies the plan. Applying is idempotent: a database that is already a hypertable
plans nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

log = logging.getLogger(__name__)

EXTENSION = "timescaledb"


@dataclass(frozen=True, slots=True)
class Policy:
    chunk_interval: str = "1 day"
    compress_after: str = "7 days"
    retain_for: str = "365 days"  # readings older than this are dropped


@dataclass(frozen=True, slots=True)
class ServerState:
    available: frozenset[str]  # pg_available_extensions
    installed: frozenset[str]  # pg_extension
    readings_is_hypertable: bool
    # TimescaleDB only loads from shared_preload_libraries; a package installed but
    # not preloaded cannot be created.
    preloaded: bool = True


@dataclass(frozen=True, slots=True)
class Plan:
    path: str  # "timescale" or "plain"
    statements: tuple[str, ...]
    reason: str


def plan(state: ServerState, policy: Policy = Policy()) -> Plan:
    """What to run to put ``readings`` on the best path for this server."""
    if EXTENSION not in state.available:
        return Plan("plain", (), "timescaledb is not available on this server")
    if state.readings_is_hypertable:
        return Plan("timescale", (), "readings is already a hypertable")
    if EXTENSION not in state.installed and not state.preloaded:
        return Plan("plain", (), "timescaledb is available but not in shared_preload_libraries")
    stmts: list[str] = []
    if EXTENSION not in state.installed:
        stmts.append(f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}")
    stmts += [
        # A hypertable's unique keys must hold the time column. A redelivered
        # message carries its original ts, so idempotency is unchanged. Chunks are
        # by time, and a (device_id, ts) b-tree serves range queries inside them.
        "ALTER TABLE readings DROP CONSTRAINT readings_pkey",
        "ALTER TABLE readings ADD CONSTRAINT readings_pkey PRIMARY KEY (device_id, seq, idx, ts)",
        "DROP INDEX IF EXISTS readings_ts_brin",
        "CREATE INDEX IF NOT EXISTS readings_device_ts ON readings (device_id, ts DESC)",
        "SELECT create_hypertable('readings', 'ts',"
        f" chunk_time_interval => INTERVAL '{policy.chunk_interval}',"
        " migrate_data => true, if_not_exists => true)",
        "ALTER TABLE readings SET (timescaledb.compress,"
        " timescaledb.compress_segmentby = 'device_id',"
        " timescaledb.compress_orderby = 'ts DESC, seq, idx')",
        f"SELECT add_compression_policy('readings', INTERVAL '{policy.compress_after}',"
        " if_not_exists => true)",
        f"SELECT add_retention_policy('readings', INTERVAL '{policy.retain_for}',"
        " if_not_exists => true)",
    ]
    return Plan("timescale", tuple(stmts), "timescaledb is available")


def server_state(conn: psycopg.Connection) -> ServerState:
    available = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions")}
    installed = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
    row = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
    preloaded = EXTENSION in (row[0] if row else "")
    is_hyper = False
    if EXTENSION in installed:
        row = conn.execute(
            "SELECT count(*) FROM timescaledb_information.hypertables"
            " WHERE hypertable_name = 'readings'"
        ).fetchone()
        is_hyper = bool(row and row[0])
    return ServerState(frozenset(available), frozenset(installed), is_hyper, preloaded)


def ensure(conn: psycopg.Connection, policy: Policy = Policy()) -> list[str]:
    """Apply the plan in one transaction; returns labels of the steps taken."""
    p = plan(server_state(conn), policy)
    if not p.statements:
        log.info("readings storage path", extra={"path": p.path, "reason": p.reason})
        return []
    try:
        with conn.transaction():
            for s in p.statements:
                conn.execute(s)  # type: ignore[arg-type]
    except psycopg.Error as e:
        # The plain table works; a server that offers the extension but refuses it
        # (version, permissions) must not stop the hub from starting.
        log.warning("timescaledb setup failed; readings stay a plain table",
                    extra={"path": "plain", "error": str(e)[:300]})
        return []
    log.info("readings storage path", extra={"path": p.path, "reason": p.reason})
    return [f"timescale:{p.path}"]


def storage_path(conn: psycopg.Connection) -> str:
    """``timescale`` when readings is a hypertable, else ``plain``."""
    return "timescale" if server_state(conn).readings_is_hypertable else "plain"
