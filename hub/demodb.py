"""Which databases ``hub demo`` may use: its own, or an empty one, never a real one.

The demo creates demo users with well-known passwords and its staff close incidents
on their own; pointed at a production database (a mistyped ``HUB_DATABASE_URL``) it
would reset real accounts and close real cases. So a database the demo uses carries
a marker table, written when the demo creates or first adopts it, and a database
that holds incidents, users, devices or readings without that marker is refused
before the demo writes anything.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

MARKER_TABLE = "hub_demo_marker"
# Tables whose rows are someone's data: any row in one of them, with no marker, means
# the database is not the demo's.
DATA_TABLES = ("incidents", "users", "audit", "readings", "events", "devices")


class NotDemoDatabase(RuntimeError):
    """The database holds data the demo did not write."""


def _exists(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{table}",)).fetchone()
    return bool(row and row[0])


def foreign_data(conn: psycopg.Connection[Any]) -> list[str]:
    """The data tables that hold rows (empty when the database is the demo's: it has
    the marker)."""
    if _exists(conn, MARKER_TABLE):
        return []
    held = []
    for table in DATA_TABLES:
        if not _exists(conn, table):
            continue
        q = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
        row = conn.execute(q).fetchone()
        if row and row[0]:
            held.append(table)
    return held


def claim(url: str, run_id: str) -> None:
    """Make ``url`` the demo's database: refuse one with data the demo did not write
    (``NotDemoDatabase``), else write the marker. In one transaction under a lock, so
    a hub starting on the same empty database at that moment cannot slip data in
    between the check and the marker."""
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (MARKER_TABLE,))
        held = foreign_data(conn)
        if held:
            raise NotDemoDatabase(
                f"the database {_safe(url)} holds data the demo did not create (rows in"
                f" {', '.join(held)}) and has no {MARKER_TABLE} table: hub demo refuses"
                " it, since it would reset passwords and close incidents there. Point"
                " HUB_DATABASE_URL at an empty database, or leave it unset for a fresh one")
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (run_id text NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now())").format(
            sql.Identifier(MARKER_TABLE)))
        conn.execute(sql.SQL("INSERT INTO {} (run_id) VALUES (%s)").format(
            sql.Identifier(MARKER_TABLE)), (run_id,))


def _safe(url: str) -> str:
    """The URL without its password, for the message."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    return f"{info.get('host', '')}:{info.get('port', '5432')}/{info.get('dbname', '')}"
