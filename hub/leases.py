"""Who owns which piece of shared work: the pure decision of one lease round.

Work that must have exactly one owner at a time (a partition of the households for
the sensing rules, a camera for the vision workers) is a set of lease rows in
PostgreSQL (``hub.store.leases``). Every few seconds each worker reads the rows and
the live members, and :func:`plan` decides what it renews, takes and releases:

* it keeps (renews) what it holds, up to its fair share;
* it releases what it holds beyond its fair share, so that a worker that just joined
  finds free rows to take;
* it takes free rows (never owned, released, or expired: their owner stopped
  renewing) until it holds its fair share.

The fair share is ``ceil(rows / live members)``, so the shares always cover every
row. Times are the database's (one clock for every host), passed in: no clock is
read here.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Lease:
    key: str
    owner: str | None
    expires_at: datetime | None

    def held(self, now: datetime) -> bool:
        return self.owner is not None and self.expires_at is not None and self.expires_at > now

    def held_by(self, member: str, now: datetime) -> bool:
        return self.owner == member and self.held(now)


@dataclass(frozen=True, slots=True)
class Plan:
    renew: tuple[str, ...] = ()
    take: tuple[str, ...] = ()
    release: tuple[str, ...] = ()


def fair_share(rows: int, members: int) -> int:
    """How many rows one of ``members`` live workers may hold."""
    if rows < 0 or members < 1:
        raise ValueError(f"fair_share needs rows >= 0 and members >= 1, got {rows}, {members}")
    return math.ceil(rows / members)


def plan(leases: Iterable[Lease], me: str, members: Collection[str], now: datetime) -> Plan:
    """The round of worker ``me``. ``members``: the live workers (``me`` counts
    whether or not it is listed). Keys are kept and taken in sorted order, so the
    plan is the same for the same rows."""
    rows = sorted(leases, key=lambda lease: lease.key)
    share = fair_share(len(rows), len(set(members) | {me}))
    mine = [r.key for r in rows if r.held_by(me, now)]
    keep, release = mine[:share], mine[share:]
    free = [r.key for r in rows if not r.held(now)]
    take = free[:max(0, share - len(keep))]
    return Plan(renew=tuple(keep), take=tuple(take), release=tuple(release))
