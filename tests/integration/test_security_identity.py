"""Issue 11, hole 1 — identity fields trusted without scope.

An account's ``person_id`` says which person of the site a login stands for: it
decides who may read, accept and handle an incident dispatched to that person and
whom the audit trail names. So it must name a person of the site, inside the acting
admin's scope and the account's own, and belong to one account only; every check
that trusts it re-checks it against the account's scope. The same holds for the
other identity fields: a username that is a person's id, a scope that is no unit of
the site, a role above the acting admin's.

Real auth (cookie and bearer), a real alert service and PostgreSQL, through the app.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from hub.api.app import create_app
from hub.api.deps import AppContext
from hub.clock import ManualClock
from hub.store import users
from tests.integration.alerting import T0, alarm, pool_for, service

PW = "Identity check 42"
ROOT = "110105"
GRID1 = "11010500100201"  # wang-wei is its worker, zhao-min its leader
GRID2 = "11010500100202"  # liu-yang is its worker, chen-jing its leader
MICRO1 = "1101050010020103"
MICRO2 = "1101050010020202"


class Env:
    def __init__(self, client: TestClient, svc: Any, pool: Any) -> None:
        self.client, self.svc, self.pool = client, svc, pool

    def token(self, username: str) -> dict[str, str]:
        r = self.client.post("/api/auth/login",
                             json={"username": username, "password": PW, "token": True})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def dispatched(self, grid_code: str, assignee: str, key: str) -> int:
        (res,) = self.svc.apply_now([alarm(key, grid_code=grid_code)])
        iid = res.incident.id
        self.svc.transition(iid, "register", "test")
        self.svc.transition(iid, "dispatch", "test", assignee=assignee)
        return int(iid)

    def version(self, iid: int) -> int:
        return int(self.client.get(f"/api/incidents/{iid}",
                                   headers=self.token("root")).json()["incident"]["version"])


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[Env]:
    with pool_for(db_url, 6) as pool:
        svc = service(pool, ManualClock(T0), data_dir=tmp_path)
        with pool.connection() as conn:
            users.create_user(conn, "root", PW, "admin", ROOT)
            users.create_user(conn, "gadmin2", PW, "admin", GRID2)
            users.create_user(conn, "wang-wei", PW, "grid_worker", GRID1, person_id="wang-wei")
        ctx = AppContext(pool=pool, site=svc.site, tree=svc.tree, alerts=svc, data_dir=tmp_path)
        with TestClient(create_app(ctx)) as c:
            yield Env(c, svc, pool)


def _new(username: str, scope: str, person: str | None, role: str = "grid_worker"
         ) -> dict[str, Any]:
    return {"username": username, "password": PW, "role": role, "scope_code": scope,
            "person_id": person}


def test_identity_person_must_be_a_site_person_inside_the_admins_scope(env: Env) -> None:
    g2 = env.token("gadmin2")
    # The probe: a grid-2 admin makes a worker login standing for grid 1's worker.
    r = env.client.post("/api/users", json=_new("mole", GRID2, "wang-wei"), headers=g2)
    assert r.status_code == 403, r.text
    assert "wang-wei" in r.json()["detail"]
    r = env.client.post("/api/users", json=_new("ghost", GRID2, "no-such-person"), headers=g2)
    assert r.status_code == 422 and r.json()["code"] == "unknown_person", r.text
    # A person of its own grid is fine.
    r = env.client.post("/api/users", json=_new("liu", GRID2, "liu-yang"), headers=g2)
    assert r.status_code == 201, r.text
    with env.pool.connection() as conn:
        names = {u.username: u.person_id for u in users.list_users(conn)}
    assert "mole" not in names and "ghost" not in names and names["liu"] == "liu-yang"


def test_identity_admin_cannot_link_their_own_account_outside_their_scope(env: Env) -> None:
    g2 = env.token("gadmin2")
    me = env.client.get("/api/auth/me", headers=g2).json()
    iid = env.dispatched(MICRO1, "zhao-min", "sos:own")  # grid 1's leader, unlinked
    r = env.client.patch(f"/api/users/{me['id']}", json={"person_id": "zhao-min"}, headers=g2)
    assert r.status_code == 403, r.text
    # ...and so it still may not read or act on grid 1's incident dispatched to her.
    assert env.client.get(f"/api/incidents/{iid}", headers=g2).status_code == 403
    r = env.client.post(f"/api/incidents/{iid}/transitions", headers=g2,
                        json={"action": "accept", "expected_version": env.version(iid)})
    assert r.status_code == 403
    # Linking herself to a person of her own grid works.
    r = env.client.patch(f"/api/users/{me['id']}", json={"person_id": "chen-jing"}, headers=g2)
    assert r.status_code == 200 and r.json()["person_id"] == "chen-jing", r.text


def test_identity_person_is_linked_to_one_account_only(env: Env, db_url: str) -> None:
    root = env.token("root")
    r = env.client.post("/api/users", json=_new("wang2", GRID1, "wang-wei"), headers=root)
    assert r.status_code == 409 and r.json()["code"] == "person_taken", r.text
    r = env.client.post("/api/users", json=_new("liu", GRID2, "liu-yang"), headers=root)
    assert r.status_code == 201
    other = env.client.post("/api/users", json=_new("liu2", GRID2, None), headers=root).json()
    r = env.client.patch(f"/api/users/{other['id']}", json={"person_id": "liu-yang"},
                         headers=root)
    assert r.status_code == 409 and r.json()["code"] == "person_taken", r.text
    # The database holds the line too, for whatever writes without the API.
    with psycopg.connect(db_url, autocommit=True) as conn:
        with pytest.raises(users.UserError, match="already linked"):
            users.create_user(conn, "liu3", PW, "grid_worker", GRID2, person_id="liu-yang")
        with pytest.raises(users.UserError, match="already linked"):
            users.update_user(conn, other["id"], person_id="liu-yang")
    # Unlinking (empty string) frees the person for another account.
    wang = next(u for u in env.client.get("/api/users", headers=root).json()
                if u["username"] == "wang-wei")
    r = env.client.patch(f"/api/users/{wang['id']}", json={"person_id": ""}, headers=root)
    assert r.status_code == 200 and r.json()["person_id"] is None
    r = env.client.post("/api/users", json=_new("wang2", GRID1, "wang-wei"), headers=root)
    assert r.status_code == 201, r.text


def test_identity_person_must_lie_inside_the_accounts_own_scope(env: Env) -> None:
    root = env.token("root")
    # Even a whole-site admin may not make a grid-2 login that stands for grid 1's worker.
    r = env.client.post("/api/users", json=_new("x", GRID2, "zhao-min"), headers=root)
    assert r.status_code == 422 and r.json()["code"] == "person_out_of_scope", r.text
    wang = next(u for u in env.client.get("/api/users", headers=root).json()
                if u["username"] == "wang-wei")
    # Moving the account away from its person is refused the same way.
    r = env.client.patch(f"/api/users/{wang['id']}", json={"scope_code": GRID2}, headers=root)
    assert r.status_code == 422 and r.json()["code"] == "person_out_of_scope", r.text


def test_identity_a_link_outside_the_accounts_scope_grants_nothing(env: Env) -> None:
    """A row written before these checks (or a site file that moved the person): the
    login neither stands for the person nor acts as them."""
    with env.pool.connection() as conn:
        conn.execute("UPDATE users SET person_id = NULL WHERE username = 'wang-wei'")
        conn.execute("INSERT INTO users (username, password_hash, role, scope_code, person_id)"
                     " VALUES ('mole', %s, 'grid_worker', %s, 'wang-wei')",
                     (users.hash_password(PW), GRID2))
    mole = env.token("mole")
    assert env.client.get("/api/auth/me", headers=mole).json()["person_id"] is None
    iid = env.dispatched(MICRO1, "wang-wei", "sos:stale")
    assert env.client.get(f"/api/incidents/{iid}", headers=mole).status_code == 403
    r = env.client.post(f"/api/incidents/{iid}/transitions", headers=mole,
                        json={"action": "accept", "expected_version": env.version(iid)})
    assert r.status_code == 403
    r = env.client.get("/api/incidents", params={"assignee": "me"}, headers=mole)
    assert r.status_code == 422
    # In its own grid it acts under its own name; the audit does not name wang-wei.
    own = env.dispatched(MICRO2, "liu-yang", "sos:own2")
    r = env.client.post(f"/api/incidents/{own}/transitions", headers=mole,
                        json={"action": "comment", "reason": "on my way"})
    assert r.status_code == 200, r.text
    actors = {e["actor"] for e in r.json()["timeline"] if e["action"] == "comment"}
    assert actors == {"mole"}


def test_identity_username_of_a_site_person_is_reserved_for_that_person(env: Env) -> None:
    """The audit names a login by its person, else by its username: a username that
    is someone's person id would make the trail (and an accept's assignee) name them."""
    root = env.token("root")
    r = env.client.post("/api/users", json=_new("chen-jing", GRID2, None, "operator"),
                        headers=root)
    assert r.status_code == 422 and r.json()["code"] == "username_is_a_person", r.text
    r = env.client.post("/api/users", json=_new("chen-jing", GRID2, "chen-jing", "operator"),
                        headers=root)
    assert r.status_code == 201, r.text


def test_identity_scope_and_role_stay_inside_the_admins_own(env: Env) -> None:
    root, g2 = env.token("root"), env.token("gadmin2")
    assert env.client.post("/api/users", json=_new("wide", ROOT, None, "admin"),
                           headers=g2).status_code == 403
    me = env.client.get("/api/auth/me", headers=g2).json()
    assert env.client.patch(f"/api/users/{me['id']}", json={"scope_code": ROOT},
                            headers=g2).status_code == 403
    # A scope must be a unit of the site, not any string of digits.
    r = env.client.post("/api/users", json=_new("nowhere", "110105999", None, "viewer"),
                        headers=root)
    assert r.status_code == 422 and r.json()["code"] == "unknown_unit", r.text
    r = env.client.post("/api/users", json=_new("deep", GRID2 + "99", None, "viewer"),
                        headers=g2)
    assert r.status_code == 422 and r.json()["code"] == "unknown_unit", r.text


def test_identity_an_unlinked_login_named_like_a_person_is_not_taken_for_them(env: Env
                                                                             ) -> None:
    """A row from before the reservation: its actions are recorded as a login's."""
    with env.pool.connection() as conn:
        conn.execute("INSERT INTO users (username, password_hash, role, scope_code)"
                     " VALUES ('zhao-min', %s, 'grid_worker', %s)",
                     (users.hash_password(PW), GRID1))
    h = env.token("zhao-min")
    iid = env.dispatched(MICRO1, "wang-wei", "sos:name")
    r = env.client.post(f"/api/incidents/{iid}/transitions", headers=h,
                        json={"action": "comment", "reason": "seen"})
    assert r.status_code == 200, r.text
    assert [e["actor"] for e in r.json()["timeline"] if e["action"] == "comment"] == [
        "user:zhao-min"]
