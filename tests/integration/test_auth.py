"""Authentication against a real PostgreSQL: passwords, cookie sessions with CSRF,
bearer tokens, login rate limiting, user administration, the create-admin command."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hub.api import auth
from hub.api.deps import AppContext
from hub.api.routers import console
from hub.config import load_site
from hub.store import users
from hub.store.db import open_pool
from tests.conftest import DEMO_SITE

PW = "correct horse battery"
ROOT = "110105"
GRID1 = "11010500100201"
GRID2 = "11010500100202"


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, s: float) -> None:
        self.t += timedelta(seconds=s)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(db_url: str, clock: Clock, tmp_path) -> Iterator[FastAPI]:
    pool = open_pool(db_url, 1, 4)
    a = FastAPI()
    a.state.ctx = AppContext(pool=pool, site=load_site(DEMO_SITE), tree=None, data_dir=tmp_path)
    a.state.auth = auth.AuthConfig(clock=clock)
    console.mount(a)
    with pool.connection() as conn:
        users.create_user(conn, "admin", PW, "admin", ROOT)
        users.create_user(conn, "op", PW, "operator", ROOT)
        users.create_user(conn, "gadmin", PW, "admin", GRID1)
        users.create_user(conn, "wang-wei", PW, "grid_worker", GRID1, person_id="wang-wei")
    yield a
    pool.close()


def client(app: FastAPI, ip: str = "10.0.0.1") -> TestClient:
    return TestClient(app, client=(ip, 50000))


def login(c: TestClient, username: str, password: str = PW, **kw: object):
    return c.post("/api/auth/login", json={"username": username, "password": password, **kw})


# ------------------------------------------------------------------ pure parts


def test_retry_after_is_exact_to_the_second() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    w = timedelta(minutes=15)
    fails = [t0 + timedelta(seconds=i) for i in range(5)]
    assert users.retry_after(fails[:4], 5, w, t0 + timedelta(seconds=10)) is None
    # The oldest of five failures ages out 15 min after it happened.
    assert users.retry_after(fails, 5, w, t0 + timedelta(seconds=10)) == 890
    assert users.retry_after(fails, 5, w, t0 + timedelta(seconds=900)) is None
    # With six failures, two must age out: the wait runs to the second-oldest.
    six = [*fails, t0 + timedelta(seconds=5)]
    assert users.retry_after(six, 5, w, t0 + timedelta(seconds=900)) == 1


def test_demo_users_cover_every_grid_worker_with_random_passwords() -> None:
    site = load_site(DEMO_SITE)
    a = users.demo_users(site)
    b = users.demo_users(site)
    workers = {p.id for p in site.people for r in p.roles if r.role == "grid_worker"}
    assert {u for u, _, role, _ in a if role == "grid_worker"} == workers
    assert {role for _, _, role, _ in a} == {"admin", "operator", "viewer", "grid_worker"}
    assert [p for _, p, _, _ in a] != [p for _, p, _, _ in b]
    assert all(len(p) >= 12 for _, p, _, _ in a)


# ------------------------------------------------------------------ passwords


def test_passwords_are_argon2_hashed_and_policy_enforced(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        u = users.create_user(conn, "alice", PW, "viewer", ROOT)
        (h,) = conn.execute("SELECT password_hash FROM users WHERE id = %s", (u.id,)).fetchone()
        assert h.startswith("$argon2id$") and PW not in h
        assert users.verify_login(conn, "alice", PW) == u
        assert users.verify_login(conn, "alice", PW + "x") is None
        assert users.verify_login(conn, "nobody", PW) is None
        with pytest.raises(users.UserError, match="at least 10"):
            users.create_user(conn, "bob", "short", "viewer", ROOT)
        with pytest.raises(users.UserError, match="taken"):
            users.create_user(conn, "alice", PW, "viewer", ROOT)
        with pytest.raises(users.UserError, match="role"):
            users.create_user(conn, "carol", PW, "root", ROOT)
        with pytest.raises(users.UserError, match="scope_code"):
            users.create_user(conn, "carol", PW, "viewer", "12345")


# ------------------------------------------------------------------ sessions


def test_cookie_session_is_httponly_samesite_and_needs_csrf(app: FastAPI) -> None:
    c = client(app)
    assert c.get("/api/auth/me").status_code == 401
    r = login(c, "op")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"]["role"] == "operator" and body["token"] is None
    cookies = [h for k, h in r.headers.multi_items() if k == "set-cookie"]
    sess = next(h for h in cookies if h.startswith(auth.SESSION_COOKIE + "="))
    csrf = next(h for h in cookies if h.startswith(auth.CSRF_COOKIE + "="))
    assert "HttpOnly" in sess and "samesite=lax" in sess.lower()
    assert "HttpOnly" not in csrf
    me = c.get("/api/auth/me").json()
    assert me["username"] == "op" and "dispatch" in me["actions"] and "accept" not in me["actions"]
    # An unsafe request by cookie without, or with a wrong, CSRF header is refused.
    pw = {"password": PW}  # issuing a token needs the password (test_security_defaults.py)
    assert c.post("/api/auth/tokens", json=pw).status_code == 403
    assert c.post("/api/auth/tokens", json=pw, headers={"X-CSRF-Token": "guess"}).status_code == 403
    ok = c.post("/api/auth/tokens", json=pw, headers={"X-CSRF-Token": body["csrf_token"]})
    assert ok.status_code == 200
    # The CSRF token of another session does not work either.
    other = client(app)
    other_csrf = login(other, "admin").json()["csrf_token"]
    assert c.post("/api/auth/tokens", json=pw,
                  headers={"X-CSRF-Token": other_csrf}).status_code == 403


def test_bearer_token_needs_no_csrf_and_cannot_be_a_cookie(app: FastAPI) -> None:
    c = client(app)
    r = login(c, "wang-wei", token=True)
    token = r.json()["token"]
    assert token and not r.cookies.get(auth.SESSION_COOKIE)
    h = {"Authorization": f"Bearer {token}"}
    me = c.get("/api/auth/me", headers=h).json()
    assert me["person_id"] == "wang-wei" and me["scope_code"] == GRID1
    assert c.post("/api/auth/tokens", headers=h, json={"password": PW}).status_code == 200
    # An app token presented as a cookie is not a cookie session.
    c2 = client(app)
    c2.cookies.set(auth.SESSION_COOKIE, token)
    assert c2.get("/api/auth/me").status_code == 401
    assert c.get("/api/auth/me", headers={"Authorization": "Basic abc"}).status_code == 401
    assert c.get("/api/auth/me", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_tokens_are_stored_only_as_digests(app: FastAPI, db_url: str) -> None:
    token = login(client(app), "op", token=True).json()["token"]
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT token_hash FROM sessions").fetchall()
    assert rows and all(bytes(r[0]) != token.encode() for r in rows)
    assert users.token_digest(token) in {bytes(r[0]) for r in rows}


def test_logout_expiry_disable_and_password_change_end_sessions(
    app: FastAPI, clock: Clock, db_url: str
) -> None:
    c = client(app)
    csrf = login(c, "op").json()["csrf_token"]
    assert c.post("/api/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert c.get("/api/auth/me").status_code == 401

    login(c, "op")
    clock.advance(12 * 3600 - 1)
    assert c.get("/api/auth/me").status_code == 200
    clock.advance(1)
    assert c.get("/api/auth/me").status_code == 401

    csrf = login(c, "op").json()["csrf_token"]
    other = client(app)
    login(other, "op")
    r = c.post("/api/auth/password", headers={"X-CSRF-Token": csrf},
               json={"old_password": PW, "new_password": "another long passphrase"})
    assert r.status_code == 204
    assert other.get("/api/auth/me").status_code == 401
    assert login(client(app), "op").status_code == 401
    assert login(client(app), "op", "another long passphrase").status_code == 200

    b = client(app)
    login(b, "wang-wei")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE users SET disabled = true WHERE username = 'wang-wei'")
    assert b.get("/api/auth/me").status_code == 401
    assert login(client(app), "wang-wei").status_code == 401


# ------------------------------------------------------------------ rate limiting


def test_login_rate_limited_per_user_with_retry_after(app: FastAPI, clock: Clock) -> None:
    c = client(app, "10.0.0.7")
    for _ in range(5):
        assert login(c, "op", "wrong password!").status_code == 401
        clock.advance(1)
    r = login(c, "op")  # even the right password waits now
    assert r.status_code == 429
    assert r.headers["Retry-After"] == str(15 * 60 - 5)
    # Another user from another address is not affected.
    assert login(client(app, "10.0.0.8"), "admin").status_code == 200
    clock.advance(15 * 60 - 5)
    assert login(c, "op").status_code == 200
    # A success resets the per-user count.
    for _ in range(4):
        assert login(c, "op", "wrong password!").status_code == 401
    assert login(c, "op").status_code == 200


def test_login_rate_limited_per_address(app: FastAPI, clock: Clock) -> None:
    c = client(app, "10.9.9.9")
    for i in range(20):
        assert login(c, f"user{i}", "wrong password!").status_code == 401
    r = login(c, "admin")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) == 15 * 60
    assert login(client(app, "10.9.9.10"), "admin").status_code == 200


# ------------------------------------------------------------------ user admin


def test_user_admin_is_scoped_and_admin_only(app: FastAPI) -> None:
    root = client(app)
    hdr = {"X-CSRF-Token": login(root, "admin").json()["csrf_token"]}
    new = {"username": "liu-yang", "password": PW, "role": "grid_worker",
           "scope_code": GRID2, "person_id": "liu-yang"}
    r = root.post("/api/users", json=new, headers=hdr)
    assert r.status_code == 201, r.text
    assert root.post("/api/users", json=new, headers=hdr).status_code == 409
    uid = r.json()["id"]

    g = client(app)
    ghdr = {"X-CSRF-Token": login(g, "gadmin").json()["csrf_token"]}
    names = {u["username"] for u in g.get("/api/users").json()}
    assert names == {"gadmin", "wang-wei"}  # only users inside its grid
    assert g.get(f"/api/users/{uid}").status_code == 403
    assert g.patch(f"/api/users/{uid}", json={"role": "admin"}, headers=ghdr).status_code == 403
    out = {**new, "username": "x1", "scope_code": GRID2}
    assert g.post("/api/users", json=out, headers=ghdr).status_code == 403
    # Inside its grid, but not standing for grid 2's worker (test_security_identity.py).
    assert g.post("/api/users", json={**out, "scope_code": GRID1},
                  headers=ghdr).status_code == 403
    assert g.post("/api/users", json={**out, "scope_code": GRID1, "person_id": None},
                  headers=ghdr).status_code == 201

    op = client(app)
    login(op, "op")
    assert op.get("/api/users").status_code == 403

    # Demoting a user ends their sessions at once.
    w = client(app)
    login(w, "liu-yang")
    assert w.get("/api/auth/me").status_code == 200
    r = root.patch(f"/api/users/{uid}", json={"role": "viewer"}, headers=hdr)
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert w.get("/api/auth/me").status_code == 401
    assert root.delete(f"/api/users/{uid}", headers=hdr).status_code == 204
    assert root.get(f"/api/users/{uid}").status_code == 404


def test_create_admin_command(db_url: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HUB_ADMIN_PASSWORD", PW)
    rc = users.create_admin_main(["root", "--database-url", db_url, "--site", str(DEMO_SITE)])
    assert rc == 0
    assert "created admin root with scope 110105" in capsys.readouterr().out
    with psycopg.connect(db_url) as conn:
        assert users.verify_login(conn, "root", PW) is not None
    monkeypatch.setenv("HUB_ADMIN_PASSWORD", "short")
    assert users.create_admin_main(["root2", "--database-url", db_url,
                                    "--site", str(DEMO_SITE)]) == 1
    # Nothing exists by default: a fresh database has no user at all.
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 1


def test_console_pages_are_served_with_security_headers(app: FastAPI) -> None:
    c = client(app)
    for path in ("/", "/m"):
        r = c.get(path)
        assert r.status_code == 200 and "<html" in r.text
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
    assert c.get("/static/js/console.js").status_code == 200
    assert c.get("/static/../hub/config.py").status_code == 404
