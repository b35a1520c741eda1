"""Access-control matrix over a running hub (real HTTP, real PostgreSQL, real auth):
every API route, enumerated from ``app.routes`` so a new route fails this test until
it is given a row here, x every role x inside / outside the caller's grid subtree,
including evidence images, event clips, photo attachments and the live stream."""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from hub.alerts.notifiers.channels import SECRET_PREFIX
from hub.api.routers import family as family_route
from hub.domain import Alarm, AlarmState, Category, Severity
from hub.family import links
from hub.ratelimit import TokenBuckets
from hub.services import Broker
from hub.store import push, users
from tests.e2e.live import PASSWORD, LiveHub, running_hub

GRID1 = "11010500100201"
GRID2 = "11010500100202"
MICRO_IN = "1101050010020103"  # building 3, grid 1
MICRO_OUT = "1101050010020202"  # building 6, grid 2
DEV_IN, DEV_OUT = "sos-3-2-501", "sos-6-3-601"
CAM_IN, CAM_OUT = "cam-b3-lane", "cam-b7-stair1"  # grid 1 (a fire lane) and grid 2
ROLES = ("admin", "operator", "grid_worker", "viewer")
# A camera's event push authenticates the camera, not a user (its own Basic/Digest
# credentials, tests/integration/test_camera_events.py), so it is public to sessions.
PUBLIC = {"/", "/m", "/static/{path:path}", "/healthz", "/metrics", "/openapi.json", "/docs",
          "/docs/oauth2-redirect", "/redoc", "/api/auth/login", "/api/cameras/{device_id}/events",
          "/live", "/api/intake/tickets", "/m/manifest.webmanifest", "/m/sw.js",
          "/api/family/{token}", "/api/notify/receipts/{channel}"}
# The 12345 intake authenticates the external system by its own token (HUB_INTAKE_TOKEN;
# tests/integration/test_intake.py); a user's session is no such token (below).
# The phone view's PWA files are static, like /m itself. An emergency contact's answer
# page is opened by its one-time signed link (tests/integration/test_family_cascade.py)
# and an SMS gateway's receipt by its channel's token (test_chat_channels.py): a
# session is neither (below).
_seq = itertools.count(1)


def _jpeg() -> bytes:
    img = np.full((60, 80, 3), 127, np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


@dataclass
class World:
    hub: LiveHub
    clients: dict[str, httpx.Client]
    inc: dict[str, int]  # where -> incident id (with evidence image)
    att: dict[str, int]  # where -> attachment id
    user: dict[str, int]  # where -> a user id in that subtree
    failures: list[str] = field(default_factory=list)

    def alarm(self, where: str, state: str = "reported",
              assignee: str | None = None) -> tuple[int, int]:
        """A fresh incident in GRID1 ('in') or GRID2 ('out'), driven to ``state``,
        dispatched (when it gets that far) to that grid's own worker unless told."""
        assignee = assignee or ("wang-wei" if where == "in" else "liu-yang")
        n = next(_seq)
        a = Alarm(rule="sos", category=Category.SOS, severity=Severity.CRITICAL,
                  state=AlarmState.FIRING, dedup_key=f"m{n}:{uuid.uuid4().hex[:6]}",
                  ts=datetime.now(UTC), title=f"matrix {n}",
                  grid_code=MICRO_IN if where == "in" else MICRO_OUT,
                  device_id=DEV_IN if where == "in" else DEV_OUT,
                  evidence_image=f"evidence/{where}.jpg",
                  evidence={"clip": {"path": f"clips/sos/{where}.mp4"}})
        (res,) = self.hub.alerts.apply_now([a])
        iid = res.incident.id
        path = {"registered": ["register"], "dispatched": ["register", "dispatch"],
                "overdue": ["register", "dispatch"],
                "accepted": ["register", "dispatch", "accept"],
                "handled": ["register", "dispatch", "accept", "handle"],
                "verified": ["register", "dispatch", "accept", "handle", "verify"],
                "parked": ["register", "park"]}.get(state, [])
        for act in path:
            # The on-site check is someone else's than the handler's.
            self.hub.alerts.transition(
                iid, act, "checker" if act == "verify" else "test", reason="because",
                assignee=assignee if act == "dispatch" else None,
                review_at=datetime.now(UTC) + timedelta(days=1) if act == "park" else None)
        with self.hub.pool.connection() as conn:
            if state == "overdue":  # a time limit ran out once (without waiting for it)
                conn.execute("UPDATE incidents SET escalations = 1 WHERE id = %s", (iid,))
            (v,) = conn.execute("SELECT version FROM incidents WHERE id = %s", (iid,)).fetchone()
        return iid, v

    def silence(self, where: str) -> int:
        with self.hub.pool.connection() as conn:
            (sid,) = conn.execute(
                "INSERT INTO silences (device_id, grid_code, starts_at, ends_at, created_by,"
                " reason) VALUES (%s, %s, now() + interval '1 day',"
                " now() + interval '2 days', 't', 'r')"
                " RETURNING id", (DEV_IN if where == "in" else DEV_OUT,
                                  MICRO_IN if where == "in" else MICRO_OUT)).fetchone()
        return int(sid)


@pytest.fixture
def world(db_url: str, broker: Broker, site_id: str, tmp_path: Path) -> Iterator[World]:
    with running_hub(db_url, broker, site_id, tmp_path) as hub:
        (tmp_path / "evidence").mkdir()
        (tmp_path / "clips" / "sos").mkdir(parents=True)
        for w in ("in", "out"):
            (tmp_path / "evidence" / f"{w}.jpg").write_bytes(_jpeg())
            (tmp_path / "clips" / "sos" / f"{w}.mp4").write_bytes(b"\0\0\0\x18ftypmp42" * 64)
        with hub.pool.connection() as conn:
            # One account per person: the matrix's worker stands for wang-wei, so the
            # demo's own wang-wei login gives the link up.
            conn.execute("UPDATE users SET person_id = NULL WHERE person_id = 'wang-wei'")
            for role in ROLES:
                users.create_user(conn, f"m-{role}", PASSWORD, role, GRID1,
                                  person_id="wang-wei" if role == "grid_worker" else None)
            u_in = users.create_user(conn, "in-viewer", PASSWORD, "viewer", MICRO_IN).id
            u_out = users.create_user(conn, "out-viewer", PASSWORD, "viewer", GRID2).id
        w = World(hub, {r: hub.session(f"m-{r}") for r in ROLES}, {}, {}, {"in": u_in,
                                                                           "out": u_out})
        for where in ("in", "out"):
            w.inc[where] = w.alarm(where)[0]
            (tmp_path / "attachments").mkdir(exist_ok=True)
            (tmp_path / "attachments" / f"{where}.jpg").write_bytes(_jpeg())
            with hub.pool.connection() as conn:
                (aid,) = conn.execute(
                    "INSERT INTO attachments (incident_id, path, content_type, size_bytes)"
                    " VALUES (%s, %s, 'image/jpeg', 1) RETURNING id",
                    (w.inc[where], f"attachments/{where}.jpg")).fetchone()
            w.att[where] = aid
        yield w
        for c in w.clients.values():
            c.close()


# ------------------------------------------------------------------ the matrix

Req = dict[str, Any]
# A case builder: (world, role, where) -> (request kwargs, expected status when allowed)
Builder = Callable[[World, str, str], tuple[Req, int]]
ALL = set(ROLES)


def _since() -> str:
    return (datetime.now(UTC) - timedelta(hours=1)).isoformat()


def _listing(path: str, params: dict[str, str] | None = None) -> Builder:
    def b(w: World, role: str, where: str) -> tuple[Req, int]:
        p = dict(params or {})
        if where == "out":
            p["grid"] = GRID2
        return {"method": "GET", "url": path, "params": p}, 200
    return b


def _by_incident(suffix: str = "") -> Builder:
    def b(w: World, role: str, where: str) -> tuple[Req, int]:
        return {"method": "GET", "url": f"/api/incidents/{w.inc[where]}{suffix}"}, 200
    return b


def _device(suffix: str = "", params: dict[str, str] | None = None) -> Builder:
    def b(w: World, role: str, where: str) -> tuple[Req, int]:
        dev = DEV_IN if where == "in" else DEV_OUT
        return {"method": "GET", "url": f"/api/devices/{dev}{suffix}", "params": params or {}}, 200
    return b


def _upload(w: World, role: str, where: str) -> tuple[Req, int]:
    return {"method": "POST", "url": f"/api/incidents/{w.inc[where]}/attachments",
            "files": {"file": ("p.jpg", _jpeg(), "image/jpeg")}}, 201


def _attachment(w: World, role: str, where: str) -> tuple[Req, int]:
    return {"method": "GET", "url": f"/api/attachments/{w.att[where]}"}, 200


def _silence_new(w: World, role: str, where: str) -> tuple[Req, int]:
    now = datetime.now(UTC)
    return {"method": "POST", "url": "/api/silences", "json": {
        "device_id": DEV_IN if where == "in" else DEV_OUT, "reason": "maintenance",
        "start": (now + timedelta(days=1)).isoformat(),
        "end": (now + timedelta(days=2)).isoformat()}}, 201


def _silence_del(w: World, role: str, where: str) -> tuple[Req, int]:
    return {"method": "DELETE", "url": f"/api/silences/{w.silence(where)}"}, 204


def _user_new(w: World, role: str, where: str) -> tuple[Req, int]:
    return {"method": "POST", "url": "/api/users", "json": {
        "username": f"u{next(_seq)}", "password": PASSWORD, "role": "viewer",
        "scope_code": MICRO_IN if where == "in" else GRID2}}, 201


def _user(method: str, body: dict[str, Any] | None = None, fresh: bool = False) -> Builder:
    def b(w: World, role: str, where: str) -> tuple[Req, int]:
        uid = w.user[where]
        if fresh:
            with w.hub.pool.connection() as conn:
                uid = users.create_user(conn, f"d{next(_seq)}", PASSWORD, "viewer",
                                        MICRO_IN if where == "in" else GRID2).id
        req: Req = {"method": method, "url": f"/api/users/{uid}"}
        if body is not None:
            req["json"] = body
        return req, 204 if method == "DELETE" else 200
    return b


def _camera(suffix: str = "", method: str = "GET") -> Builder:
    def b(w: World, role: str, where: str) -> tuple[Req, int]:
        cam = CAM_IN if where == "in" else CAM_OUT
        return {"method": method, "url": f"/api/live/{cam}{suffix}"}, 200
    return b


def _reference(w: World, role: str, where: str) -> tuple[Req, int]:
    ref = w.hub.data_dir / "references" / CAM_IN / "lane.png"
    if not ref.exists():
        ref.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(ref), np.full((40, 60), 128, np.uint8))
    cam, zone = (CAM_IN, "lane") if where == "in" else (CAM_OUT, "lawn")
    return {"method": "GET", "url": f"/api/live/{cam}/references/{zone}.png"}, 200


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# A browser's push keys: an uncompressed P-256 point (65 bytes, 0x04 first) and 16 bytes.
P256DH, AUTH = _b64url(b"\x04" + bytes(range(64))), _b64url(bytes(16))


def _subscribe(w: World, role: str, where: str) -> tuple[Req, int]:
    return {"method": "POST", "url": "/api/push/subscriptions", "json": {
        "endpoint": f"https://{role}.push.example/new/{next(_seq)}",
        "keys": {"p256dh": P256DH, "auth": AUTH}}}, 201


def _unsubscribe(w: World, role: str, where: str) -> tuple[Req, int]:
    return {"method": "POST", "url": "/api/push/unsubscribe",
            "json": {"endpoint": f"https://{role}.push.example/seeded"}}, 204


def _plain(method: str, url: str, ok: int = 200, **kw: Any) -> Builder:
    def b(w: World, role: str, where: str) -> tuple[Req, int]:
        return {"method": method, "url": url, **kw}, ok
    return b


# (method, route path) -> (builder, roles allowed inside, has an outside variant)
MATRIX: dict[tuple[str, str], tuple[Builder, set[str], bool]] = {
    ("GET", "/api/incidents"): (_listing("/api/incidents"), ALL, True),
    ("GET", "/api/incidents/{incident_id}"): (_by_incident(), ALL, True),
    ("GET", "/api/incidents/{incident_id}/evidence"): (_by_incident("/evidence"), ALL, True),
    ("GET", "/api/incidents/{incident_id}/clip"): (_by_incident("/clip"), ALL, True),
    ("POST", "/api/incidents/{incident_id}/attachments"): (
        _upload, {"admin", "operator", "grid_worker"}, True),
    ("GET", "/api/attachments/{attachment_id}"): (_attachment, ALL, True),
    ("GET", "/api/grid"): (_listing("/api/grid"), ALL, True),
    ("GET", "/api/people"): (_plain("GET", "/api/people"), ALL, False),
    ("GET", "/api/communities"): (_plain("GET", "/api/communities"), ALL, False),
    ("GET", "/api/devices"): (_listing("/api/devices"), ALL, True),
    ("GET", "/api/devices/{device_id}"): (_device(), ALL, True),
    ("GET", "/api/devices/{device_id}/readings"): (
        _device("/readings", {"since": "2026-01-01T00:00:00+00:00"}), ALL, True),
    ("GET", "/api/stats"): (_listing("/api/stats"), ALL, True),
    ("GET", "/api/stats/trend"): (_listing("/api/stats/trend"), ALL, True),
    ("GET", "/api/stats/export"): (_listing("/api/stats/export"), ALL, True),
    ("GET", "/api/silences"): (_plain("GET", "/api/silences"), ALL, False),
    ("POST", "/api/silences"): (_silence_new, {"admin", "operator"}, True),
    ("DELETE", "/api/silences/{silence_id}"): (_silence_del, {"admin", "operator"}, True),
    ("GET", "/api/site/plan"): (_plain("GET", "/api/site/plan"), ALL, False),
    ("GET", "/api/meta"): (_plain("GET", "/api/meta"), ALL, False),
    ("GET", "/api/auth/me"): (_plain("GET", "/api/auth/me"), ALL, False),
    ("POST", "/api/auth/tokens"): (_plain("POST", "/api/auth/tokens",
                                          json={"password": PASSWORD}), ALL, False),
    # A wrong old password: the route ran for the caller (403 from the check itself).
    ("POST", "/api/auth/password"): (_plain("POST", "/api/auth/password", 403, json={
        "old_password": "not it at all", "new_password": "whatever long"}), ALL, False),
    ("GET", "/api/users"): (_plain("GET", "/api/users"), {"admin"}, False),
    ("POST", "/api/users"): (_user_new, {"admin"}, True),
    ("GET", "/api/users/{user_id}"): (_user("GET"), {"admin"}, True),
    ("PATCH", "/api/users/{user_id}"): (_user("PATCH", {"display_name": "x"}), {"admin"}, True),
    ("DELETE", "/api/users/{user_id}"): (_user("DELETE", fresh=True), {"admin"}, True),
    ("GET", "/api/live/cameras"): (_plain("GET", "/api/live/cameras"), ALL, False),
    ("GET", "/api/live/{camera}/references"): (_camera("/references"), ALL, True),
    ("GET", "/api/live/{camera}/references/{zone}.png"): (_reference, ALL, True),
    ("GET", "/api/live/{camera}/audit"): (_camera("/audit"), ALL, True),
    # No vision worker here: the renewal is sent and audited, not confirmed (200).
    ("POST", "/api/live/{camera}/rebaseline"): (
        _camera("/rebaseline", "POST"), {"admin", "operator"}, True),
    # Web Push is every signed-in user's own: no grid to be outside of, but another
    # user's subscriptions are neither listed nor removed (_check_content, and
    # test_push_subscriptions_are_each_users_own).
    ("GET", "/api/push/key"): (_plain("GET", "/api/push/key"), ALL, False),
    ("GET", "/api/push/subscriptions"): (_plain("GET", "/api/push/subscriptions"), ALL, False),
    ("POST", "/api/push/subscriptions"): (_subscribe, ALL, False),
    ("POST", "/api/push/unsubscribe"): (_unsubscribe, ALL, False),
}
# Checked by their own tests below.
SPECIAL = {("POST", "/api/incidents/{incident_id}/transitions"), ("GET", "/api/stream"),
           ("POST", "/api/auth/logout"), ("GET", "/api/live/{camera}/mjpeg")}

# action -> (state it needs, extra body, roles allowed)
ACTIONS: dict[str, tuple[str, dict[str, Any], set[str]]] = {
    "register": ("reported", {}, {"admin", "operator"}),
    "cancel": ("reported", {"reason": "false alarm"}, {"admin", "operator"}),
    "dispatch": ("registered", {"assignee": "wang-wei"}, {"admin", "operator"}),
    "accept": ("dispatched", {}, {"admin", "grid_worker"}),
    "handle": ("accepted", {"note": "visited, all well"}, {"admin", "grid_worker"}),
    "close": ("verified", {}, {"admin", "operator"}),
    "verify": ("handled", {"reason": "checked on site"}, {"admin", "operator"}),
    "return": ("dispatched", {"reason": "not my grid"}, {"grid_worker"}),
    "park": ("registered", {"reason": "needs the street", "review_at": (
        datetime.now(UTC) + timedelta(days=30)).isoformat()}, {"admin", "operator"}),
    "resume": ("parked", {}, {"admin", "operator"}),
    "supervise": ("overdue", {"reason": "today please"}, {"admin", "operator"}),
    "reopen": ("handled", {"reason": "not fixed"}, {"admin", "operator"}),
    "comment": ("reported", {"reason": "called the family"}, {"admin", "operator",
                                                              "grid_worker"}),
}


def flat_routes(routes: Any) -> Iterator[tuple[str | None, set[str] | None]]:
    """(path, methods) of every route, looking inside included routers (FastAPI
    0.12x+ keeps them as lazily resolved `_IncludedRouter` entries)."""
    for r in routes:
        if hasattr(r, "effective_route_contexts"):
            for c in r.effective_route_contexts():
                yield c.path, getattr(c.original_route, "methods", None)
        elif hasattr(r, "routes") and isinstance(getattr(r, "routes", None), list) and r.routes:
            yield from flat_routes(r.routes)
        else:
            yield getattr(r, "path", None), getattr(r, "methods", None)


def api_routes(w: World) -> set[tuple[str, str]]:
    app = w.hub.node.api_server.config.app
    out = set()
    for path, methods in flat_routes(app.routes):
        if not path:  # a mount of static files at the root
            continue
        for m in methods or {"GET"}:
            if m not in ("HEAD", "OPTIONS"):
                out.add((m, path))
    assert ("GET", "/api/incidents") in out and ("GET", "/api/stream") in out
    return out


def _check_content(w: World, key: tuple[str, str], role: str, body: Any) -> str | None:
    """Lists must hold nothing outside GRID1 (the callers' scope)."""
    if key == ("GET", "/api/live/cameras"):
        cams = {c["id"]: c["grid"] for c in body}
        if CAM_IN not in cams or any(not g.startswith(GRID1) for g in cams.values()):
            return f"camera list leaks or misses: {cams}"
    if key == ("GET", "/api/incidents"):
        codes = [i["grid_code"] for i in body["items"]]
        ids = {i["id"] for i in body["items"]}
        if w.inc["out"] in ids or w.inc["in"] not in ids or any(
                not c.startswith(GRID1) for c in codes):
            return f"incident list leaks or misses: {codes}"
    if key == ("GET", "/api/devices") and any(not d["grid"].startswith(GRID1) for d in body):
        return "device list leaks"
    if key == ("GET", "/api/site/plan") and any(
            not d["grid"].startswith(GRID1) for d in body["devices"]):
        return "site plan leaks devices"
    if key == ("GET", "/api/grid") and body["code"] != GRID1:
        return f"grid tree rooted at {body['code']}"
    if key in (("GET", "/api/stats"), ("GET", "/api/stats/trend")) and body["scope"] != GRID1:
        return f"stats scope {body['scope']}"
    if key == ("GET", "/api/users") and any(
            not u["scope_code"].startswith(GRID1) for u in body):
        return "user list leaks"
    if key == ("GET", "/api/silences") and any(
            s["grid_code"] and not s["grid_code"].startswith(GRID1) for s in body):
        return "silence list leaks"
    if key == ("GET", "/api/communities") and (not body or any(
            not GRID1.startswith(c["code"]) for c in body)):
        return f"community list leaks or misses: {[c['code'] for c in body]}"
    if key == ("GET", "/api/push/key") and not body.get("public_key"):
        return "no VAPID public key"
    if key == ("GET", "/api/push/subscriptions"):
        hosts = {x["host"] for x in body}
        if hosts != {f"{role}.push.example"}:
            return f"push subscriptions of others listed, or mine missing: {sorted(hosts)}"
    if key == ("GET", "/api/people"):
        for p in body:
            for r in p["roles"]:
                if not (r["unit"].startswith(GRID1) or GRID1.startswith(r["unit"])):
                    return f"people list leaks {p['id']} on {r['unit']}"
    return None


def test_every_route_every_role_inside_and_outside(world: World) -> None:
    w = world
    routes = api_routes(w)
    uncovered = {r for r in routes if r[1] not in PUBLIC} - set(MATRIX) - SPECIAL
    assert not uncovered, f"routes missing from the access matrix: {sorted(uncovered)}"
    # the outside user/silence etc. exist so outside calls have a real target
    with w.hub.pool.connection() as conn:
        conn.execute("INSERT INTO silences (device_id, grid_code, starts_at, ends_at,"
                     " created_by, reason) VALUES (%s, %s, now() + interval '1 day',"
                     " now() + interval '2 days', 't', 'r')", (DEV_OUT, MICRO_OUT))
    _seed_push(w)
    calls = 0
    for key in sorted(routes & set(MATRIX)):
        build, allowed, has_outside = MATRIX[key]
        for role in ROLES:
            for where in ("in", "out") if has_outside else ("in",):
                req, ok = build(w, role, where)
                r = w.clients[role].request(**req)
                calls += 1
                want = ok if (where == "in" and role in allowed) else 403
                if r.status_code != want:
                    w.failures.append(f"{key} {role} {where}: {r.status_code} != {want} "
                                      f"{r.text[:160]}")
                elif want == 200 and where == "in" and "json" in r.headers.get(
                        "content-type", ""):
                    bad = _check_content(w, key, role, r.json())
                    if bad:
                        w.failures.append(f"{key} {role}: {bad}")
                elif want == 200 and key[1].endswith(("/evidence", "{attachment_id}")):
                    if r.headers["content-type"] != "image/jpeg" or not r.content:
                        w.failures.append(f"{key} {role}: not an image")
    assert not w.failures, "\n".join(w.failures)
    assert calls > 100


def _seed_push(w: World) -> dict[str, int]:
    """One push subscription for each role's user (host <role>.push.example) and one
    for a user outside them; returns user name -> user id."""
    with w.hub.pool.connection() as conn:
        ids = dict(conn.execute("SELECT username, id FROM users WHERE username = ANY(%s)",
                                ([f"m-{r}" for r in ROLES] + ["out-viewer"],)).fetchall())
        for name, uid in ids.items():
            host = name.removeprefix("m-") if name != "out-viewer" else "other"
            push.save(conn, uid, None, f"https://{host}.push.example/seeded", P256DH, AUTH)
    return ids


def test_push_subscriptions_are_each_users_own(world: World) -> None:
    w = world
    ids = _seed_push(w)
    other = "https://other.push.example/seeded"
    for role in ROLES:
        c = w.clients[role]
        assert [s["host"] for s in c.get("/api/push/subscriptions").json()] == [
            f"{role}.push.example"], role
        # Answered like one's own (nothing told about others'), but nothing removed.
        assert c.post("/api/push/unsubscribe", json={"endpoint": other}).status_code == 204
    with w.hub.pool.connection() as conn:
        assert [s.endpoint for s in push.for_user(conn, ids["out-viewer"])] == [other]
    viewer = w.clients["viewer"]
    assert viewer.post("/api/push/unsubscribe", json={
        "endpoint": "https://viewer.push.example/seeded"}).status_code == 204
    assert viewer.get("/api/push/subscriptions").json() == []


def test_no_login_answers_for_a_family_or_posts_a_receipt(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    # Room for this test's requests from one address (the page's own limit is tested
    # in test_family_cascade.py).
    monkeypatch.setattr(family_route, "LIMIT", TokenBuckets(100, 1 / 6))
    monkeypatch.delenv(SECRET_PREFIX + "FAMILY_LINK", raising=False)
    anon = httpx.Client(base_url=w.hub.url, timeout=10)
    callers = {**w.clients, "anonymous": anon}
    forged = links.make("not the hub's secret", w.inc["in"], 0,
                        datetime.now(UTC) + timedelta(hours=1), b"n" * 12)
    for who, c in callers.items():
        # Without HUB_SECRET_FAMILY_LINK no link can be checked: 503 telling the
        # contact to call, not a 500.
        for r in (c.get(f"/api/family/{forged}"),
                  c.post(f"/api/family/{forged}", data={"answer": "on_my_way"})):
            assert r.status_code == 503 and "please call the community" in r.text, (who, r.text)
    monkeypatch.setenv(SECRET_PREFIX + "FAMILY_LINK", "access-test-key")
    for who, c in callers.items():
        # A session is no link: a link signed by anyone else is not valid.
        for r in (c.get(f"/api/family/{forged}"),
                  c.post(f"/api/family/{forged}", data={"answer": "false_alarm"})):
            assert r.status_code == 404 and "not valid" in r.text, (who, r.status_code, r.text)
        # The demo's gateway channel has no receipt token: no session posts a receipt.
        r = c.post("/api/notify/receipts/family-sms", params={"token": "a session"},
                   json={"reference": 1, "status": "delivered"})
        assert r.status_code == 401, (who, r.text)
    with w.hub.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM audit WHERE action IN"
                            " ('family_answer', 'notify_receipt')").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM family_links").fetchone() == (0,)


def test_transitions_by_role_and_scope(world: World) -> None:
    w = world
    for action, (state, extra, allowed) in ACTIONS.items():
        for role in ROLES:
            for where in ("in", "out"):
                iid, v = w.alarm(where, state)
                r = w.clients[role].post(f"/api/incidents/{iid}/transitions",
                                         json={"action": action, "expected_version": v,
                                               **extra})
                want = 200 if (where == "in" and role in allowed) else 403
                if r.status_code != want:
                    w.failures.append(f"{action} {role} {where}: {r.status_code} != {want} "
                                      f"{r.text[:160]}")
                with w.hub.pool.connection() as conn:
                    (st, ver) = conn.execute("SELECT state, version FROM incidents"
                                             " WHERE id = %s", (iid,)).fetchone()
                if want == 403 and ver != v:
                    w.failures.append(f"{action} {role} {where}: denied but changed ({st})")
    assert not w.failures, "\n".join(w.failures)


def test_worker_may_act_on_an_incident_dispatched_to_them_outside_their_grid(
        world: World) -> None:
    w = world
    iid, v = w.alarm("out", "dispatched", assignee="wang-wei")  # grid 1's worker, in grid 2
    worker, viewer = w.clients["grid_worker"], w.clients["viewer"]
    assert worker.get(f"/api/incidents/{iid}").status_code == 200
    assert worker.get(f"/api/incidents/{iid}/evidence").status_code == 200
    assert viewer.get(f"/api/incidents/{iid}").status_code == 403
    r = worker.post(f"/api/incidents/{iid}/transitions",
                    json={"action": "accept", "expected_version": v})
    assert r.status_code == 200, r.text
    # ...but not on someone else's incident there.
    other, v2 = w.alarm("out", "dispatched")  # to liu-yang
    r = worker.post(f"/api/incidents/{other}/transitions",
                    json={"action": "accept", "expected_version": v2})
    assert r.status_code == 403


def test_no_login_creates_intake_tickets(world: World) -> None:
    w = world
    body = {"ticket_id": "12345-x", "category": "water", "grid_code": MICRO_IN, "title": "t"}
    for role in ROLES:
        r = w.clients[role].post("/api/intake/tickets", json=body)
        # No HUB_INTAKE_TOKEN here: intake is off (503); with one, a session is 401.
        assert r.status_code == 503 and "HUB_INTAKE_TOKEN" in r.text, (role, r.text)
    with w.hub.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM intake_tickets").fetchone() == (0,)


def test_unauthenticated_and_csrf_less_calls_are_refused_on_every_route(world: World) -> None:
    w = world
    anon = httpx.Client(base_url=w.hub.url, timeout=10)
    # A logged-in browser session whose page forgot (or a forged form lacks) the CSRF header.
    nocsrf = httpx.Client(base_url=w.hub.url, timeout=10)
    nocsrf.post("/api/auth/login", json={"username": "m-admin", "password": PASSWORD})
    failures = []
    for method, path in sorted(api_routes(w)):
        if path in PUBLIC:
            continue
        url = (path.replace("{incident_id}", str(w.inc["in"]))
               .replace("{attachment_id}", str(w.att["in"])).replace("{device_id}", DEV_IN)
               .replace("{user_id}", str(w.user["in"])).replace("{silence_id}", "1"))
        r = anon.request(method, url)
        if r.status_code != 401:
            failures.append(f"anonymous {method} {path}: {r.status_code}")
        if method not in ("GET", "HEAD"):
            r = nocsrf.request(method, url, json={})
            if r.status_code != 403 or "CSRF" not in r.text:
                failures.append(f"no-CSRF {method} {path}: {r.status_code} {r.text[:80]}")
    r = anon.get("/api/incidents", headers={"Authorization": "Bearer hb_forged"})
    assert r.status_code == 401
    assert not failures, "\n".join(failures)
    # Logging out needs the header too, then ends the session.
    s = w.hub.session("m-viewer")
    assert s.post("/api/auth/logout").status_code == 204
    assert s.get("/api/auth/me").status_code == 401


def _read_events(client: httpx.Client, params: dict[str, str], out: list[dict[str, Any]],
                 ready: threading.Event, stop: threading.Event) -> None:
    with client.stream("GET", "/api/stream", params=params, timeout=None) as r:
        out.append({"status": r.status_code})
        ready.set()
        if r.status_code != 200:
            return
        for line in r.iter_lines():
            if line.startswith("data:"):
                out.append(json.loads(line[5:]))
            if stop.is_set():
                return


def test_live_stream_is_cut_to_the_subtree(world: World) -> None:
    w = world
    assert w.clients["viewer"].get("/api/stream", params={"grid": GRID2}).status_code == 403
    streams = {}
    stop = threading.Event()
    for role in ("viewer", "grid_worker"):
        got: list[dict[str, Any]] = []
        ready = threading.Event()
        c = w.hub.session(f"m-{role}")
        t = threading.Thread(target=_read_events, args=(c, {}, got, ready, stop), daemon=True)
        t.start()
        assert ready.wait(10)
        streams[role] = got
    out_id, _ = w.alarm("out")
    in_id, _ = w.alarm("in")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(
            any(e.get("incident", {}).get("id") == in_id for e in g) for g in streams.values()):
        time.sleep(0.05)
    stop.set()
    w.alarm("in")  # wakes the readers so they see the stop flag
    for role, got in streams.items():
        assert got[0] == {"status": 200}
        ids = {e["incident"]["id"] for e in got[1:] if "incident" in e}
        assert in_id in ids, f"{role} did not get its own grid's incident"
        assert out_id not in ids, f"{role} got an incident from outside its grid"
        assert all(e["incident"]["grid_code"].startswith(GRID1) for e in got[1:]
                   if "incident" in e)
    anon = httpx.Client(base_url=w.hub.url, timeout=5)
    assert anon.get("/api/stream").status_code == 401


def test_photo_upload_is_reencoded_and_linked_in_the_audit(world: World) -> None:
    w = world
    c = w.clients["grid_worker"]
    iid = w.inc["in"]
    r = c.post(f"/api/incidents/{iid}/attachments",
               files={"file": ("p.jpg", _jpeg(), "image/jpeg")})
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    img = c.get(r.json()["url"])
    assert img.status_code == 200 and img.content[:2] == b"\xff\xd8"
    tl = c.get(f"/api/incidents/{iid}").json()["timeline"]
    assert any(e["action"] == "comment" and aid in e["data"].get("attachments", [])
               for e in tl)
    bad = c.post(f"/api/incidents/{iid}/attachments",
                 files={"file": ("x.jpg", b"not an image at all", "image/jpeg")})
    assert bad.status_code == 400 and "not a" in bad.json()["detail"]
    assert c.post(f"/api/incidents/{iid}/attachments",
                  files={"file": ("x.jpg", b"", "image/jpeg")}).status_code == 400
    assert c.post("/api/incidents/999999/attachments",
                  files={"file": ("p.jpg", _jpeg(), "image/jpeg")}).status_code == 404


def test_a_clip_is_served_in_byte_ranges_and_says_why_when_there_is_none(world: World) -> None:
    w = world
    viewer = w.clients["viewer"]
    size = (w.hub.data_dir / "clips/sos/in.mp4").stat().st_size
    r = viewer.get(f"/api/incidents/{w.inc['in']}/clip", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206, r.text
    assert r.headers["content-range"] == f"bytes 100-199/{size}"
    assert r.headers["content-type"] == "video/mp4" and len(r.content) == 100
    assert viewer.get(f"/api/incidents/{w.inc['out']}/clip",
                      headers={"Range": "bytes=0-9"}).status_code == 403
    now = datetime.now(UTC)

    def incident(clip: dict[str, str] | None) -> int:
        a = Alarm(rule="fall", category=Category.FALL, severity=Severity.MAJOR,
                  state=AlarmState.FIRING, dedup_key=f"clip:{uuid.uuid4().hex[:8]}", ts=now,
                  title="clip", grid_code=MICRO_IN, device_id=DEV_IN,
                  evidence={"clip": clip} if clip else {})
        (res,) = w.hub.alerts.apply_now([a])
        return int(res.incident.id)

    cases = [
        ("no_clip", incident(None)),
        # Its window ends in 20 s: the encoder has not written it yet.
        ("clip_pending", incident({"path": "clips/fall/cam/x.mp4",
                                   "to": (now + timedelta(seconds=20)).isoformat()})),
        # Ended an hour ago and no file: purged (or never written).
        ("clip_missing", incident({"path": "clips/fall/cam/y.mp4",
                                   "to": (now - timedelta(hours=1)).isoformat()})),
        # A path outside the clips folder is never served.
        ("no_clip", incident({"path": "evidence/in.jpg"})),
    ]
    for code, iid in cases:
        r = viewer.get(f"/api/incidents/{iid}/clip")
        assert r.status_code == 404 and r.json()["code"] == code, (code, r.text)
        if code == "clip_pending":
            assert r.headers["retry-after"] == "5"


def test_live_view_by_role_and_scope(world: World) -> None:
    """Every role watches a camera of its grid; nobody watches one outside it (403
    before a frame is sent), and an anonymous caller gets 401."""
    w = world
    for role in ROLES:
        for where, cam in (("in", CAM_IN), ("out", CAM_OUT)):
            with w.clients[role].stream("GET", f"/api/live/{cam}/mjpeg") as r:
                want = 200 if where == "in" else 403
                assert r.status_code == want, (role, where, r.status_code)
                if want == 200:
                    assert r.headers["content-type"].startswith("multipart/x-mixed-replace")
                else:
                    r.read()
                    assert "outside your grid scope" in r.text
    anon = httpx.Client(base_url=w.hub.url, timeout=5)
    assert anon.get(f"/api/live/{CAM_IN}/mjpeg").status_code == 401
