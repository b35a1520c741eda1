"""Shared helpers for the alerting integration tests (not a test module)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from hub.alerts.service import AlertService
from hub.clock import ManualClock
from hub.config import Site, load_site
from hub.domain import Alarm, AlarmState, Category, Severity
from hub.grid.tree import GridTree
from hub.store.db import open_pool

REPO = Path(__file__).resolve().parents[2]
DEMO_SITE = REPO / "deploy" / "sites" / "demo.yaml"
T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
GRID1 = "11010500100201"  # 第一网格, worker wang-wei, leader zhao-min
MICRO = "1101050010020103"  # building 3's micro-grid in grid 1


def demo_site() -> Site:
    return load_site(DEMO_SITE)


def alarm(key: str = "sos:s1", *, ts: datetime = T0, category: Category = Category.SOS,
          severity: Severity = Severity.CRITICAL, firing: bool = True,
          grid_code: str | None = MICRO, subject: str | None = None,
          device: str | None = None, rule: str | None = None) -> Alarm:
    return Alarm(
        rule=rule or category.value, category=category, severity=severity,
        state=AlarmState.FIRING if firing else AlarmState.CLEARED, dedup_key=key, ts=ts,
        title=f"{category.value} {key}", grid_code=grid_code, device_id=device,
        subject_id=subject,
    )


@contextmanager
def pool_for(db_url: str, size: int = 4) -> Iterator[ConnectionPool]:
    pool = open_pool(db_url, 1, size, name="alerts-test")
    try:
        yield pool
    finally:
        pool.close()


def service(pool: ConnectionPool, clock: ManualClock | None = None, **kw: Any) -> AlertService:
    site = kw.pop("site", None) or demo_site()
    return AlertService(pool, site, GridTree.from_site(site), clock or ManualClock(T0), **kw)


def count(pool: ConnectionPool, sql: str, *args: Any) -> int:
    with pool.connection() as c:
        row = c.execute(sql, args).fetchone()
    return int(row[0]) if row else 0
