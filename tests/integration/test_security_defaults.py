"""Issue 11, hole 10 — weak defaults.

- One password policy wherever a password is set (the user API, a password change,
  the create-admin command, the store itself), and the demo's generated passwords
  pass it: long enough, not blank, not all one kind of character, not the username,
  not a well-known password.
- A bearer token (or a session) does not mint more 30-day tokens without the
  password, and those guesses are rate-limited like logins.
- /docs, /redoc and /openapi.json are served only when configured (off by default).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from hub.api.app import create_app
from hub.api.deps import AppContext
from hub.config import Settings, load_site
from hub.grid.tree import GridTree
from hub.store import users
from hub.store.db import open_pool
from tests.conftest import DEMO_SITE

PW = "Sane default 42"
ROOT = "110105"
GRID1 = "11010500100201"

WEAK = [
    " " * 12,  # blank
    "\t \u3000  \n    ",  # blank in other spaces
    "aaaaaaaaaaaa",  # one character
    "abcdefghijkl",  # all lower-case letters
    "ABCDEFGHIJKL",
    "123456789012",  # all digits
    "!!!!????####",
    "abababababAB",  # too few distinct characters
    "1234567890",  # well-known
    "qwertyuiop",
    "Password123!",  # a well-known word with digits and symbols around it
    "P@ssw0rd2024",
    "Welcome#2026",
    "admin1234567",
]


@pytest.fixture
def ctx(db_url: str, tmp_path: Path) -> Iterator[AppContext]:
    pool = open_pool(db_url, 1, 6)
    site = load_site(DEMO_SITE)
    with pool.connection() as conn:
        users.create_user(conn, "admin", PW, "admin", ROOT)
        users.create_user(conn, "op", PW, "operator", ROOT)
    try:
        yield AppContext(pool=pool, site=site, tree=GridTree.from_site(site), data_dir=tmp_path)
    finally:
        pool.close()


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(ctx)) as c:
        yield c


def _bearer(c: TestClient, username: str, password: str = PW) -> dict[str, str]:
    r = c.post("/api/auth/login", json={"username": username, "password": password,
                                        "token": True})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_defaults_password_policy_everywhere_a_password_is_set(client: TestClient,
                                                               db_url: str,
                                                               monkeypatch) -> None:
    admin = _bearer(client, "admin")
    op = _bearer(client, "op")
    uid = next(u["id"] for u in client.get("/api/users", headers=admin).json()
               if u["username"] == "op")
    weak = [*WEAK, "viewer-one-1", "Viewer-One-1x"]  # the last two hold the username
    for pw in weak:
        r = client.post("/api/users", headers=admin, json={
            "username": "viewer-one", "password": pw, "role": "viewer", "scope_code": GRID1})
        assert r.status_code in (400, 422), (pw, r.status_code, r.text)
    for pw in WEAK:
        r = client.patch(f"/api/users/{uid}", headers=admin, json={"password": pw})
        assert r.status_code in (400, 422), (pw, r.status_code, r.text)
    for pw in WEAK[:6]:
        r = client.post("/api/auth/password", headers=op,
                        json={"old_password": PW, "new_password": pw})
        assert r.status_code in (400, 422), (pw, r.status_code, r.text)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for pw in WEAK:
            with pytest.raises(users.UserError):
                users.create_user(conn, "direct", pw, "viewer", ROOT)
        assert users.verify_login(conn, "op", PW) is not None  # nothing above changed it
    for pw in WEAK[:4]:
        monkeypatch.setenv("HUB_ADMIN_PASSWORD", pw)
        assert users.create_admin_main(["root2", "--database-url", db_url,
                                        "--site", str(DEMO_SITE)]) == 1
    # Sane passwords still pass, passphrases of lower-case words and spaces included.
    for i, pw in enumerate(("correct horse battery", "Brand new secret 42", "大风起兮云飞扬 2026")):
        r = client.post("/api/users", headers=admin, json={
            "username": f"ok{i}", "password": pw, "role": "viewer", "scope_code": GRID1})
        assert r.status_code == 201, (pw, r.text)


def test_defaults_demo_passwords_pass_the_policy(monkeypatch) -> None:
    site = load_site(DEMO_SITE)
    # Random passwords are random: one in a great many comes out all lower-case.
    drawn = iter(["abcdefghijkl", "aaaaaaaaaaaa"] + [f"Rand0m-{i:05d}" for i in range(100)])
    monkeypatch.setattr(users.secrets, "token_urlsafe", lambda n=None: next(drawn))
    logins = users.demo_users(site)
    for username, pw, _, _ in logins:
        users.check_password_policy(pw, username)
    assert "abcdefghijkl" not in {pw for _, pw, _, _ in logins}
    for username, pw, _, _ in users.demo_users(site):
        users.check_password_policy(pw, username)


def test_defaults_a_token_mints_no_token_without_the_password(client: TestClient) -> None:
    h = _bearer(client, "op")
    assert client.post("/api/auth/tokens", headers=h).status_code == 422
    r = client.post("/api/auth/tokens", headers=h, json={"password": "not the password"})
    assert r.status_code == 403, r.text
    r = client.post("/api/auth/tokens", headers=h, json={"password": PW})
    assert r.status_code == 200 and r.json()["token"], r.text
    # Password guesses through this route are guesses like any other: limited.
    codes = [client.post("/api/auth/tokens", headers=h,
                         json={"password": f"guess number {i}"}).status_code for i in range(6)]
    assert codes[-1] == 429, codes
    assert client.post("/api/auth/tokens", headers=h, json={"password": PW}).status_code == 429


def test_defaults_api_docs_are_off_unless_configured(ctx: AppContext) -> None:
    assert Settings().api_docs is False
    with TestClient(create_app(ctx)) as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 404, path
    ctx.api_docs = True
    with TestClient(create_app(ctx)) as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        assert "/api/incidents" in c.get("/openapi.json").json()["paths"]
