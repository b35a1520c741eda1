"""A running hub for tests that talk to it over real HTTP: the real composition
(``hub.node.HubNode``: ingest, alert service, API under uvicorn) on the test's own
database, broker and site id, with the demo users created at a known password."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from hub.config import Settings, Site, load_site
from hub.node import HubNode
from hub.services import Broker, free_port
from hub.store import users

REPO = Path(__file__).resolve().parents[2]
DEMO_SITE = REPO / "deploy" / "sites" / "demo.yaml"
PASSWORD = "demo-password-123"  # tests only


def demo_site(site_id: str) -> Site:
    site = load_site(DEMO_SITE)
    return site.model_copy(update={"site": site.site.model_copy(update={"id": site_id})})


@dataclass
class LiveHub:
    url: str
    node: HubNode
    site: Site
    data_dir: Path
    logins: list[tuple[str, str, str, str]]

    @property
    def pool(self) -> Any:
        return self.node.pool

    @property
    def alerts(self) -> Any:
        return self.node.alerts

    def session(self, username: str, password: str = PASSWORD) -> httpx.Client:
        """A logged-in HTTP client (cookie session, CSRF header preset)."""
        c = httpx.Client(base_url=self.url, timeout=10)
        r = c.post("/api/auth/login", json={"username": username, "password": password})
        r.raise_for_status()
        c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return c


@contextmanager
def running_hub(db_url: str, broker: Broker, site_id: str, data_dir: Path,
                roles: frozenset[str] = frozenset({"ingest", "alerts", "api"})
                ) -> Iterator[LiveHub]:
    site = demo_site(site_id)
    port = free_port()
    settings = Settings(http_host="127.0.0.1", http_port=port, data_dir=data_dir,
                        database_url=db_url, mqtt_client_id=f"hub-{site_id}",
                        shared_group=f"g{site_id}", db_pool_min=2, db_pool_max=12)
    node = HubNode(settings=settings, site=site, broker=broker, database_url=db_url,
                   roles=roles)
    node.start()
    try:
        assert node.pool is not None
        with node.pool.connection() as conn:
            logins = users.create_demo_users(conn, site, fixed_password=PASSWORD)
        if node.ingest is not None:
            node.ingest.wait_connected(10)
        yield LiveHub(f"http://127.0.0.1:{port}", node, site, data_dir, logins)
    finally:
        node.stop()
