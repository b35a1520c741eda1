"""Issue 11, hole 7 — rate limits race and have gaps.

Every place a password is guessed is limited by one counter per username and one per
client address, and the check and the count are one atomic step in PostgreSQL taken
before the password is verified, so parallel guesses cannot all slip under the limit.
The client address is the connecting peer's unless that peer is a configured proxy:
``X-Forwarded-For`` from anyone else is ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from hub.api.app import create_app
from hub.api.deps import AppContext
from hub.config import Settings, load_site
from hub.grid.tree import GridTree
from hub.node import HubNode
from hub.services import Broker, free_port
from hub.store import users
from hub.store.db import open_pool
from tests.conftest import DEMO_SITE
from tests.integration.security_support import serve

PW = "Rate limit check 42"
ROOT = "110105"
LIMIT = users.LoginLimits().per_user


@pytest.fixture
def url(db_url: str, tmp_path: Path) -> Iterator[str]:
    pool = open_pool(db_url, 1, 12)
    site = load_site(DEMO_SITE)
    with pool.connection() as conn:
        users.create_user(conn, "op", PW, "operator", ROOT)
        users.create_user(conn, "admin", PW, "admin", ROOT)
    ctx = AppContext(pool=pool, site=site, tree=GridTree.from_site(site), data_dir=tmp_path)
    try:
        with serve(create_app(ctx)) as u:
            yield u
    finally:
        pool.close()


def _login(url: str, username: str, password: str, **headers: str) -> httpx.Response:
    return httpx.post(url + "/api/auth/login", json={"username": username, "password": password},
                      headers=headers, timeout=60)


def test_ratelimit_parallel_wrong_logins_are_counted_before_any_is_verified(url: str) -> None:
    with ThreadPoolExecutor(30) as ex:
        codes = list(ex.map(lambda _: _login(url, "op", "wrong password!").status_code,
                            range(30)))
    assert set(codes) <= {401, 429}, codes
    assert codes.count(401) <= LIMIT, f"{codes.count(401)} guesses were evaluated: {codes}"
    assert _login(url, "op", PW).status_code == 429  # the right one waits too


def test_ratelimit_old_password_guesses_are_limited_like_logins(url: str) -> None:
    c = httpx.Client(base_url=url, timeout=60)
    r = c.post("/api/auth/login", json={"username": "op", "password": PW})
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    guess = {"old_password": "not it at all", "new_password": "Brand new secret 42"}
    codes = [c.post("/api/auth/password", json=guess).status_code for _ in range(LIMIT)]
    assert codes == [403] * LIMIT
    r = c.post("/api/auth/password", json={**guess, "old_password": PW})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0, r.text
    # The guesses were guesses at the same secret: logging in waits as well.
    assert _login(url, "op", PW).status_code == 429
    # Parallel guesses cannot slip past it either (another user, fresh counters).
    a = httpx.Client(base_url=url, timeout=60)
    a.headers["X-CSRF-Token"] = a.post("/api/auth/login", json={
        "username": "admin", "password": PW}).json()["csrf_token"]
    with ThreadPoolExecutor(20) as ex:
        codes = list(ex.map(lambda _: a.post("/api/auth/password", json=guess).status_code,
                            range(20)))
    assert codes.count(403) <= LIMIT and set(codes) <= {403, 429}, codes


def _hub(db_url: str, broker: Broker, tmp_path: Path, **settings: str) -> HubNode:
    port = free_port()
    s = Settings(http_host="127.0.0.1", http_port=port, data_dir=tmp_path,
                 database_url=db_url, db_pool_min=1, db_pool_max=6, **settings)
    node = HubNode(settings=s, site=load_site(DEMO_SITE), broker=broker, database_url=db_url,
                   roles=frozenset({"api"}))
    return node.start()


def _attempt_ips(db_url: str) -> list[str]:
    with psycopg.connect(db_url) as conn:
        return [r[0] for r in conn.execute("SELECT ip FROM login_attempts ORDER BY id")]


def test_ratelimit_forwarded_for_is_ignored_unless_the_peer_is_a_configured_proxy(
        db_url: str, broker: Broker, tmp_path: Path) -> None:
    node = _hub(db_url, broker, tmp_path)
    url = f"http://127.0.0.1:{node.settings.http_port}"
    try:
        # A local process rotating X-Forwarded-For does not get a fresh address per
        # guess: the per-address limit (20) still stops it.
        codes = [_login(url, f"nobody{i}", "wrong password!",
                        **{"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                 for i in range(users.LoginLimits().per_ip + 2)]
        assert codes[-1] == 429, codes
        assert set(_attempt_ips(db_url)) == {"127.0.0.1"}
    finally:
        node.stop()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM login_attempts")
    node = _hub(db_url, broker, tmp_path, trusted_proxies="127.0.0.1")
    url = f"http://127.0.0.1:{node.settings.http_port}"
    try:
        assert _login(url, "nobody", "wrong password!",
                      **{"X-Forwarded-For": "198.51.100.7"}).status_code == 401
        assert _attempt_ips(db_url) == ["198.51.100.7"]
    finally:
        node.stop()


def test_ratelimit_trusted_proxies_must_be_addresses_or_networks() -> None:
    assert Settings(trusted_proxies="10.0.0.1, 10.1.0.0/16").trusted_proxy_list == [
        "10.0.0.1", "10.1.0.0/16"]
    assert Settings().trusted_proxy_list == []
    for bad in ("*", "proxy.local", "10.0.0.300"):
        with pytest.raises(ValueError, match="trusted_proxies"):
            Settings(trusted_proxies=bad)
