"""Connection pool for the hub's PostgreSQL (psycopg 3 + psycopg_pool)."""

from __future__ import annotations

from psycopg_pool import ConnectionPool


def open_pool(
    url: str,
    min_size: int = 2,
    max_size: int = 10,
    *,
    name: str = "hub",
    wait: bool = True,
    timeout: float = 30.0,
) -> ConnectionPool:
    """An open pool. With ``wait`` it returns only once ``min_size`` connections
    are up, so a wrong URL fails at start-up, not at the first query."""
    pool = ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        timeout=timeout,
        # Broken connections after a server restart are found before use, not by
        # the caller's query.
        check=ConnectionPool.check_connection,
        kwargs={"application_name": name},
    )
    pool.open(wait=wait, timeout=timeout)
    return pool
