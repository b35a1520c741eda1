"""Versioned schema migrations.

Files ``hub/store/migrations/NNNN_name.sql`` are applied in order, each inside its own
transaction together with its row in ``schema_migrations``, so a failing migration
leaves nothing half-done. A session advisory lock serialises concurrent runs (two hub
processes starting at once), and running again applies only what is new.

After the SQL files, the readings table takes the best storage path the server
offers (TimescaleDB hypertable or plain table, see :mod:`hub.store.timescale`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from hub.store import timescale

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Arbitrary but fixed: every hub process must take the same lock.
LOCK_KEY = 0x5C_0001_4D16


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: dict[int, Migration] = {}
    for p in sorted(directory.glob("*.sql")):
        m = _NAME_RE.match(p.name)
        if not m:
            raise MigrationError(f"migration file {p.name!r} is not named NNNN_name.sql")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(
                f"two migrations share version {version:04d}: {found[version].path.name}, {p.name}"
            )
        found[version] = Migration(version, m.group(2), p)
    return [found[v] for v in sorted(found)]


_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def migrate(
    url: str,
    *,
    directory: Path = MIGRATIONS_DIR,
    timescale_policy: timescale.Policy | None = None,
) -> list[str]:
    """Bring the database at ``url`` up to date; returns the labels of the
    migrations applied by this call (empty when it was already current)."""
    migrations = discover(directory)
    applied_now: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute(_BOOKKEEPING)
            done = {
                int(v): (n, c)
                for v, n, c in conn.execute(
                    "SELECT version, name, checksum FROM schema_migrations"
                ).fetchall()
            }
            for m in migrations:
                if m.version in done:
                    if done[m.version][1] != m.checksum():
                        # Not fatal: a deployed database must keep starting; the
                        # operator needs to know the file no longer matches it.
                        log.warning(
                            "migration file changed after it was applied",
                            extra={"migration": m.label},
                        )
                    continue
                try:
                    with conn.transaction():
                        conn.execute(m.sql())  # type: ignore[arg-type]
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum)"
                            " VALUES (%s, %s, %s)",
                            (m.version, m.name, m.checksum()),
                        )
                except psycopg.Error as e:
                    raise MigrationError(f"migration {m.label} failed: {e}") from e
                log.info("applied migration", extra={"migration": m.label})
                applied_now.append(m.label)
            steps = timescale.ensure(conn, timescale_policy or timescale.Policy())
            applied_now.extend(steps)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied_now


def applied(url: str) -> list[str]:
    """Labels of the migrations recorded in the database, in order."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT version, name FROM schema_migrations ORDER BY version"
        ).fetchall()
    return [f"{v:04d}_{n}" for v, n in rows]
