"""Lease rows in PostgreSQL: one round of :func:`hub.leases.plan` against the table.

A round is one transaction on the database's clock: the worker renews its membership,
reads the rows and the live members, and carries out its plan. Renewing and
releasing touch only rows it still owns; taking locks the free rows it chose with
``FOR UPDATE SKIP LOCKED`` and takes only those still free, so two workers racing for
one row never both get it, and neither waits on the other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from psycopg_pool import ConnectionPool

from hub.leases import Lease, plan

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Round:
    """What a round left this worker with: ``held`` (all it owns now), ``gained`` and
    ``lost`` (since the previous round: taken, or released / taken from it)."""

    held: frozenset[str] = field(default_factory=frozenset)
    gained: frozenset[str] = field(default_factory=frozenset)
    lost: frozenset[str] = field(default_factory=frozenset)


class LeaseTable:
    """The leases of one ``kind`` and ``scope`` as seen by worker ``me``. ``ttl_s``:
    how long a lease and a membership last unrenewed; renew well within it."""

    def __init__(self, pool: ConnectionPool, kind: str, scope: str, me: str,
                 ttl_s: float = 6.0) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        self.pool = pool
        self.kind = kind
        self.scope = scope
        self.me = me
        self.ttl = timedelta(seconds=ttl_s)
        self.held: frozenset[str] = frozenset()

    def ensure(self, keys: Iterable[str]) -> None:
        """Create the rows of ``keys`` that do not exist yet (free)."""
        keys = sorted(set(keys))
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO leases (kind, scope, key) SELECT %s, %s, k FROM unnest(%s::text[]) k"
                " ON CONFLICT DO NOTHING", (self.kind, self.scope, keys))

    def round(self, keys: Iterable[str]) -> Round:
        """One round over the rows of ``keys`` (rows of other keys are not touched)."""
        keys = sorted(set(keys))
        k, s, me = self.kind, self.scope, self.me
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute("SELECT now()").fetchone()
            assert row is not None
            now = row[0]
            until = now + self.ttl
            conn.execute(
                "INSERT INTO lease_members (kind, scope, member, expires_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (kind, scope, member)"
                " DO UPDATE SET expires_at = excluded.expires_at", (k, s, me, until))
            members = [r[0] for r in conn.execute(
                "SELECT member FROM lease_members WHERE kind = %s AND scope = %s"
                " AND expires_at > %s", (k, s, now))]
            rows = [Lease(*r) for r in conn.execute(
                "SELECT key, owner, expires_at FROM leases WHERE kind = %s AND scope = %s"
                " AND key = ANY(%s)", (k, s, keys))]
            p = plan(rows, me, members, now)
            renewed = {r[0] for r in conn.execute(
                "UPDATE leases SET expires_at = %s WHERE kind = %s AND scope = %s"
                " AND key = ANY(%s) AND owner = %s RETURNING key",
                (until, k, s, list(p.renew), me))}
            if p.release:
                conn.execute(
                    "UPDATE leases SET owner = NULL, expires_at = NULL WHERE kind = %s"
                    " AND scope = %s AND key = ANY(%s) AND owner = %s",
                    (k, s, list(p.release), me))
            taken: set[str] = set()
            if p.take:
                free = [r[0] for r in conn.execute(
                    "SELECT key FROM leases WHERE kind = %s AND scope = %s AND key = ANY(%s)"
                    " AND (owner IS NULL OR expires_at IS NULL OR expires_at <= %s)"
                    " ORDER BY key FOR UPDATE SKIP LOCKED", (k, s, list(p.take), now))]
                if free:
                    taken = {r[0] for r in conn.execute(
                        "UPDATE leases SET owner = %s, expires_at = %s, taken_at = %s"
                        " WHERE kind = %s AND scope = %s AND key = ANY(%s) RETURNING key",
                        (me, until, now, k, s, free))}
        held = frozenset(renewed | taken)
        out = Round(held=held, gained=held - self.held, lost=self.held - held)
        self.held = held
        for key in sorted(out.gained):
            log.info("lease taken", extra={"lease": f"{k}/{s}/{key}", "owner": me})
        for key in sorted(out.lost):
            log.info("lease given up", extra={"lease": f"{k}/{s}/{key}", "owner": me})
        return out

    def holds(self, conn: object, key: str) -> bool:
        """Whether this worker still owns ``key`` now, locking its row until the end
        of ``conn``'s transaction (a save fenced by the lease)."""
        row = conn.execute(  # type: ignore[attr-defined]
            "SELECT 1 FROM leases WHERE kind = %s AND scope = %s AND key = %s AND owner = %s"
            " AND expires_at > now() FOR UPDATE", (self.kind, self.scope, key, self.me),
        ).fetchone()
        return row is not None

    def leave(self) -> None:
        """Give every lease back and leave the members (a clean stop): the others
        take the rows on their next round instead of after the time-to-live."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("UPDATE leases SET owner = NULL, expires_at = NULL"
                         " WHERE kind = %s AND scope = %s AND owner = %s",
                         (self.kind, self.scope, self.me))
            conn.execute("DELETE FROM lease_members WHERE kind = %s AND scope = %s"
                         " AND member = %s", (self.kind, self.scope, self.me))
        self.held = frozenset()
