"""`hub demo` never touches a real database's data: a database holding users or
incidents without the demo's marker is refused (exit 2) before anything is written;
an empty one becomes the demo's (the marker), and the demo's own is used again."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from hub import demodb
from hub.services import Broker, free_port

REPO = Path(__file__).resolve().parents[2]


def _real_data(db_url: str) -> None:
    with psycopg.connect(db_url) as c:
        c.execute("INSERT INTO users (username, password_hash, role, scope_code)"
                  " VALUES ('admin', 'argon2-real-hash', 'admin', '410102')")
        now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        c.execute("INSERT INTO incidents (dedup_key, category, severity, state, title,"
                  " opened_at, updated_at) VALUES ('real:1', 'sos', 4, 'dispatched',"
                  " 'real case', %s, %s)", (now, now))


def _marker(db_url: str) -> list[tuple[str]]:
    with psycopg.connect(db_url) as c:
        exists = c.execute("SELECT to_regclass('public.hub_demo_marker')").fetchone()
        if exists is None or exists[0] is None:
            return []
        return c.execute("SELECT run_id FROM hub_demo_marker").fetchall()


def test_a_database_with_real_data_is_refused_and_left_as_it_was(
        db_url: str, broker: Broker, tmp_path: Path) -> None:
    _real_data(db_url)
    env = {**os.environ, "HUB_DATABASE_URL": db_url, "HUB_MQTT_URL": broker.url,
           "HUB_DATA_DIR": str(tmp_path), "HUB_HTTP_PORT": str(free_port())}
    out = subprocess.run(
        [sys.executable, "-m", "hub.cli", "demo", "--duration", "5", "--json", "--no-video"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "holds data the demo did not create" in out.stderr
    assert "incidents, users" in out.stderr
    with psycopg.connect(db_url) as c:
        assert c.execute("SELECT username, password_hash FROM users").fetchall() == [
            ("admin", "argon2-real-hash")]
        assert c.execute("SELECT state FROM incidents").fetchall() == [("dispatched",)]
        assert c.execute("SELECT count(*) FROM audit").fetchone() == (0,)
    assert _marker(db_url) == []


def test_an_empty_database_becomes_the_demos_and_stays_usable(db_url: str) -> None:
    demodb.claim(db_url, "run1")
    assert _marker(db_url) == [("run1",)]
    _real_data(db_url)  # what a demo run writes
    demodb.claim(db_url, "run2")  # the demo's own database: used again
    assert sorted(_marker(db_url)) == [("run1",), ("run2",)]


def test_the_grid_tree_alone_is_not_data_but_one_user_is(db_url: str) -> None:
    with psycopg.connect(db_url) as c:
        c.execute("INSERT INTO grid_units (code, name, level) VALUES ('410102', 'd', 6)")
    with psycopg.connect(db_url) as c:
            held = demodb.foreign_data(c)
    assert held == []  # the grid tree alone: what any migrated, unused database may hold
    with psycopg.connect(db_url) as c:
        c.execute("INSERT INTO users (username, password_hash, role, scope_code)"
                  " VALUES ('op', 'h', 'operator', '410102')")
    with pytest.raises(demodb.NotDemoDatabase, match=r"rows in users"):
        demodb.claim(db_url, "run1")
    assert _marker(db_url) == []
