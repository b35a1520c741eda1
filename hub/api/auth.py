"""Who is calling: cookie sessions for the console, bearer tokens for apps.

``get_principal(request)`` is the one authentication entry point that
:mod:`hub.api.deps` calls for every route. It returns a :class:`UserPrincipal`
(a ``Principal`` that also knows the username and the site person behind it) or
raises 401.

Cookie sessions are HttpOnly and SameSite=Lax. Because a browser sends the cookie
by itself, every unsafe request authenticated by cookie must also carry the
session's CSRF token in ``X-CSRF-Token``; the page reads it from the readable
``hub_csrf`` cookie (double submit) and the server compares it with the token
stored with the session, so a cookie planted by a sibling subdomain cannot forge it.
Bearer tokens are never sent by a browser on its own, so they need no CSRF token.

Access rules by role (every role only inside its grid subtree):
admin: everything, including users; operator: read, and the lifecycle actions
register / cancel / dispatch / close (plus comments); grid_worker: read, accept and
handle incidents in their scope (or dispatched to them); viewer: read only.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import HTTPException, Request, status
from prometheus_client import Counter

from hub.api import identity
from hub.api.deps import Principal
from hub.store import users as store

log = logging.getLogger(__name__)

SESSION_COOKIE = "hub_session"
CSRF_COOKIE = "hub_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

AUTH_FAILURES = Counter("hub_auth_failures_total", "Rejected authentications", ["reason"])

# Lifecycle actions each role may take (the transitions route asks `may_act`).
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"register", "cancel", "dispatch", "accept", "handle", "close",
                        "reopen", "comment", "escalate", "rebaseline", "return", "park",
                        "resume", "supervise", "verify"}),
    "operator": frozenset({"register", "cancel", "dispatch", "close", "reopen", "comment",
                           "escalate", "rebaseline", "park", "resume", "supervise",
                           "verify"}),
    "grid_worker": frozenset({"accept", "handle", "comment", "return"}),
    "viewer": frozenset(),
}


@dataclass(frozen=True, slots=True)
class UserPrincipal(Principal):
    """``user_id`` is the username: it is what the audit trail records as the actor
    (usernames are unique and cannot be renamed); ``uid`` is the row id."""

    uid: int = 0
    username: str = ""
    display_name: str = ""
    via: str = "cookie"  # cookie | bearer


@dataclass
class AuthConfig:
    session_ttl: timedelta = timedelta(hours=12)  # one monitoring-room shift and some
    token_ttl: timedelta = timedelta(days=30)  # apps on a worker's phone
    cookie_secure: bool | None = None  # None: Secure when the request came over https
    limits: store.LoginLimits = store.LoginLimits()
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # An open live stream re-checks its session this often while idle (and before
    # every event), so it ends soon after a logout, a disabled user or a new role.
    stream_recheck_s: float = 5.0


def config(request: Request) -> AuthConfig:
    cfg = getattr(request.app.state, "auth", None)
    if cfg is None:
        cfg = request.app.state.auth = AuthConfig()
    return cfg  # type: ignore[no-any-return]


def pool(request: Request) -> Any:
    return request.app.state.ctx.pool


def client_ip(request: Request) -> str:
    """The connecting peer, or the client a configured proxy names: uvicorn rewrites
    the peer from X-Forwarded-For only for peers in ``HUB_TRUSTED_PROXIES``."""
    return request.client.host if request.client else ""


def verify_password(request: Request, conn: Any, username: str, password: str,
                    what: str = "login") -> store.User | None:
    """Verify a password guess under the login rate limits, or raise 429.

    Every route that takes a password (login, password change, token issue) goes
    through here, so they share one counter per username and per address; the check
    and the count are one atomic step taken before the (slow) verification. The
    attempt is committed as a failure before the password is checked and, when it
    matches, committed as a success at once: what the route does next (and whether
    it succeeds) does not change that the caller knew the password."""
    cfg = config(request)
    ip = client_ip(request)
    attempt, wait = store.reserve_attempt(conn, username, ip, cfg.clock(), cfg.limits)
    if attempt is None:
        assert wait is not None
        AUTH_FAILURES.labels("rate_limited").inc()
        log.warning("password guess rate-limited", extra={"user": username, "ip": ip,
                                                          "what": what})
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            f"too many failed attempts; try again in {int(wait)} s",
                            headers={"Retry-After": str(int(wait + 0.999))})
    user = store.verify_login(conn, username, password)
    if user is None:
        AUTH_FAILURES.labels("bad_password").inc()
        log.info("wrong password", extra={"user": username, "ip": ip, "what": what})
        return None
    store.attempt_succeeded(conn, attempt)
    conn.commit()
    return user


def site_of(request: Request) -> Any:
    ctx = getattr(request.app.state, "ctx", None)
    return getattr(ctx, "site", None)


def principal_of(user: store.User, via: str = "cookie", site: Any = None) -> UserPrincipal:
    """The caller as routes see them. The person link is re-checked against the
    account's scope on every request (:func:`hub.api.identity.bound_person`): a link
    that does not hold grants nothing, so every check that trusts ``person_id``
    (incidents dispatched to the caller, the audit's actor) is scoped too."""
    person = identity.bound_person(site, user.username, user.person_id, user.scope_code)
    return UserPrincipal(
        user_id=identity.audit_name(site, user.username, None) if not person else user.username,
        uid=user.id, role=user.role, scope_code=user.scope_code,
        username=user.username, person_id=person, display_name=user.display_name,
        via=via,
    )


def _deny(reason: str, detail: str) -> HTTPException:
    AUTH_FAILURES.labels(reason).inc()
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail,
                         headers={"WWW-Authenticate": "Bearer"})


def _bearer(request: Request) -> str | None:
    h = request.headers.get("authorization")
    if not h:
        return None
    scheme, _, token = h.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _deny("malformed_header", "Authorization header must be 'Bearer <token>'")
    return token.strip()


def get_principal(request: Request) -> UserPrincipal:
    """The authenticated caller, or 401. Unsafe methods over a cookie session also
    need the CSRF header (403 without it)."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    bearer = _bearer(request)
    token = bearer or request.cookies.get(SESSION_COOKIE)
    if not token:
        raise _deny("missing", "not logged in")
    now = config(request).clock()
    with pool(request).connection() as conn:
        session = store.lookup_session(conn, token, now)
    if session is None:
        raise _deny("invalid", "session expired or unknown; log in again")
    if bearer is None:
        if session.kind != "cookie":
            raise _deny("invalid", "session expired or unknown; log in again")
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not session.csrf_token or not hmac.compare_digest(
                sent.encode(), session.csrf_token.encode()
            ):
                AUTH_FAILURES.labels("csrf").inc()
                raise HTTPException(status.HTTP_403_FORBIDDEN,
                                    f"missing or wrong {CSRF_HEADER} header")
    p = principal_of(session.user, "bearer" if bearer else "cookie", site_of(request))
    request.state.principal = p
    return p


def may_act(p: Principal, action: str) -> bool:
    return action in ROLE_ACTIONS.get(p.role, frozenset())


def check_action(p: Principal, action: str, grid_code: str | None,
                 assignee: str | None = None) -> None:
    """403 unless ``p`` may take ``action`` on an incident of ``grid_code``.

    A grid worker may also act on an incident dispatched to them personally even when
    it lies outside their own grid (an escalation or a neighbour's cover)."""
    if not may_act(p, action):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"role {p.role!r} may not {action} incidents")
    if p.sees(grid_code) or (p.role == "grid_worker" and p.is_assignee(assignee)):
        return
    raise HTTPException(status.HTTP_403_FORBIDDEN,
                        f"incident is outside your grid scope {p.scope_code}")


def set_session_cookies(request: Request, response: Any, token: str, csrf: str,
                        ttl: timedelta) -> None:
    cfg = config(request)
    secure = cfg.cookie_secure if cfg.cookie_secure is not None else (
        request.url.scheme == "https")
    max_age = int(ttl.total_seconds())
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, httponly=True,
                        samesite="lax", secure=secure, path="/")
    # Readable by the page's script on purpose: it echoes it in X-CSRF-Token.
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, httponly=False,
                        samesite="lax", secure=secure, path="/")


def clear_session_cookies(response: Any) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
