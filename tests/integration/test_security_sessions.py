"""Issue 11, hole 6 — the live stream outlives its session.

An open ``/api/stream`` was authenticated once, when it opened. It must end when the
session or token behind it is revoked (logout, a disabled user, expiry) or when the
user's role or scope changes: checked before each event is delivered and every few
seconds while the stream is idle.

A real server (uvicorn on loopback), real auth and PostgreSQL; events are published
straight into the app's broadcaster.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.api import auth
from hub.api.app import create_app
from hub.api.deps import AppContext
from hub.config import load_site
from hub.grid.tree import GridTree
from hub.store import users
from hub.store.db import open_pool
from tests.conftest import DEMO_SITE
from tests.integration.security_support import serve

PW = "Stream session 42"
ROOT = "110105"
GRID1 = "11010500100201"
MICRO1 = "1101050010020103"
RECHECK_S = 0.5  # the test's idle re-check interval (the default is a few seconds)


@dataclass
class Reader:
    """Reads one stream in a thread: the incident ids delivered and whether it ended."""

    client: httpx.Client
    ids: list[int] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    status: int | None = None
    open: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            with self.client.stream("GET", "/api/stream", timeout=httpx.Timeout(5, read=30)
                                    ) as r:
                self.status = r.status_code
                self.open.set()
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        self.events.append(line[6:].strip())
                    if line.startswith("data:"):
                        data = json.loads(line[5:])
                        if "incident" in data:
                            self.ids.append(data["incident"]["id"])
        except httpx.HTTPError:
            pass
        finally:
            self.open.set()
            self.ended.set()

    def start(self) -> Reader:
        threading.Thread(target=self.run, daemon=True).start()
        assert self.open.wait(10) and self.status == 200
        return self


class Env:
    def __init__(self, url: str, ctx: AppContext, pool: Any) -> None:
        self.url, self.ctx, self.pool = url, ctx, pool
        self._n = 0

    def cookie(self, username: str) -> httpx.Client:
        c = httpx.Client(base_url=self.url, timeout=10)
        r = c.post("/api/auth/login", json={"username": username, "password": PW})
        assert r.status_code == 200, r.text
        c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return c

    def bearer(self, username: str) -> httpx.Client:
        r = httpx.post(self.url + "/api/auth/login",
                       json={"username": username, "password": PW, "token": True})
        assert r.status_code == 200, r.text
        return httpx.Client(base_url=self.url, timeout=10,
                            headers={"Authorization": f"Bearer {r.json()['token']}"})

    def publish(self) -> int:
        self._n += 1
        self.ctx.broadcaster.publish("incident", {"reason": "new", "action": None, "incident": {
            "id": self._n, "grid_code": MICRO1}}, MICRO1)
        return self._n

    def wait_subscribed(self, n: int) -> None:
        deadline = time.monotonic() + 5
        while self.ctx.broadcaster.clients < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.ctx.broadcaster.clients >= n


def _env(db_url: str, tmp_path: Path, recheck_s: float) -> Iterator[Env]:
    pool = open_pool(db_url, 1, 6)
    site = load_site(DEMO_SITE)
    with pool.connection() as conn:
        users.create_user(conn, "admin", PW, "admin", ROOT)
        users.create_user(conn, "op", PW, "operator", ROOT)
        users.create_user(conn, "view1", PW, "viewer", GRID1)
    ctx = AppContext(pool=pool, site=site, tree=GridTree.from_site(site), data_dir=tmp_path)
    app = create_app(ctx)
    cfg = auth.AuthConfig()
    cfg.stream_recheck_s = recheck_s  # type: ignore[attr-defined]
    app.state.auth = cfg
    try:
        with serve(app) as url:
            yield Env(url, ctx, pool)
    finally:
        pool.close()


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[Env]:
    yield from _env(db_url, tmp_path, RECHECK_S)


@pytest.fixture
def slow_env(db_url: str, tmp_path: Path) -> Iterator[Env]:
    """Idle re-checks far apart: only the check before each event can end a stream."""
    yield from _env(db_url, tmp_path, 600)


def _not_delivered(r: Reader, iid: int, within: float = 5) -> None:
    assert r.ended.wait(within), f"the stream is still open; delivered {r.ids}"
    assert iid not in r.ids, f"event {iid} was delivered after the session ended"


def test_session_stream_delivers_nothing_after_logout(slow_env: Env) -> None:
    e = slow_env
    c = e.cookie("op")
    r = Reader(c).start()
    e.wait_subscribed(1)
    first = e.publish()
    deadline = time.monotonic() + 5
    while first not in r.ids and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r.ids == [first]
    assert c.post("/api/auth/logout").status_code == 204
    _not_delivered(r, e.publish())
    assert e.ctx.broadcaster.clients == 0


def test_session_stream_ends_when_idle_after_the_user_is_disabled(env: Env) -> None:
    b = env.bearer("op")
    r = Reader(b).start()
    env.wait_subscribed(1)
    # Disabled directly in the database, as another API replica (or an admin's SQL)
    # would: no event, no request on this process to notice it.
    with env.pool.connection() as conn:
        conn.execute("UPDATE users SET disabled = true WHERE username = 'op'")
    assert r.ended.wait(RECHECK_S + 3), "an idle stream stayed open for a disabled user"
    assert "end" in r.events


def test_session_stream_ends_when_role_or_scope_changes(env: Env) -> None:
    readers = {name: Reader(env.cookie(name)).start() for name in ("op", "view1")}
    env.wait_subscribed(2)
    with env.pool.connection() as conn:
        # Changed without ending the sessions, so only the stream's own check can see it.
        conn.execute("UPDATE users SET role = 'viewer' WHERE username = 'op'")
        conn.execute("UPDATE users SET scope_code = %s WHERE username = 'view1'", (ROOT,))
    iid = env.publish()
    for name, r in readers.items():
        assert r.ended.wait(RECHECK_S + 3), f"{name}'s stream survived the change"
        assert iid not in r.ids, f"{name} got an event under the old role or scope"


def test_session_stream_ends_when_an_admin_revokes_the_user(env: Env) -> None:
    admin = env.cookie("admin")
    r = Reader(env.bearer("view1")).start()
    env.wait_subscribed(1)
    uid = next(u["id"] for u in admin.get("/api/users").json() if u["username"] == "view1")
    assert admin.patch(f"/api/users/{uid}", json={"disabled": True}).status_code == 200
    _not_delivered(r, env.publish(), RECHECK_S + 3)
