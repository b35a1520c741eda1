"""What every route depends on: the application context and the caller.

Every route takes a ``Principal``. Access is scoped to a grid subtree: a principal
with ``scope_code`` "1101050010020101" sees only what lies under that code; the
empty scope is the whole site. Authentication itself lives in ``hub.api.auth``
(``get_principal(request) -> Principal``, raising 401 when nobody is logged in);
when the context says so (tests, single-user demo), a fixed principal is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status

ROLES = ("admin", "operator", "grid_worker", "viewer")
# Who may do what. Reading is open to every role inside its scope.
WRITE_ROLES = ("admin", "operator", "grid_worker")


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    role: str  # admin | operator | grid_worker | viewer
    scope_code: str = ""  # grid subtree; "" = whole site
    person_id: str | None = None  # the person in the site file this login stands for

    def sees(self, code: str | None) -> bool:
        if not self.scope_code:
            return True
        return code is not None and code.startswith(self.scope_code)

    def is_assignee(self, assignee: str | None) -> bool:
        """True when ``assignee`` is this caller's own person."""
        return bool(self.person_id) and assignee == self.person_id


@dataclass
class AppContext:
    """What ``create_app`` needs. ``alerts`` is an ``AlertService`` (None in an
    API-only replica, which then cannot stream or transition)."""

    pool: Any  # psycopg_pool.ConnectionPool
    site: Any  # hub.config.Site
    tree: Any  # hub.grid GridTree
    alerts: Any = None
    data_dir: Path = Path("var")
    # Overrides authentication (tests, single-user demo). None: hub.api.auth.
    principal: Callable[[Request], Principal] | None = None
    # The live stream's hub; the alert service's when there is one.
    broadcaster: Any = None
    # Body sizes and photo pixels the API takes (hub.api.limits.RequestLimits).
    limits: Any = None
    # Serve /openapi.json, /docs and /redoc (Settings.api_docs; off by default).
    api_docs: bool = False
    # The console's reminder while a critical incident stays unregistered
    # (Settings.console_reminder_s).
    console_reminder_s: float = 120.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.limits is None:
            from hub.api.limits import RequestLimits

            self.limits = RequestLimits()
        if self.broadcaster is None:
            if self.alerts is not None:
                self.broadcaster = self.alerts.broadcaster
            else:
                from hub.alerts.notifiers.sse import Broadcaster

                self.broadcaster = Broadcaster()


def ctx(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def _resolver(request: Request) -> Callable[[Request], Principal]:
    c = ctx(request)
    if c.principal is not None:
        return c.principal
    from hub.api import auth  # imports this module

    return auth.get_principal


def current_principal(request: Request) -> Principal:
    return _resolver(request)(request)


def require(*roles: str) -> Callable[..., Principal]:
    """A dependency admitting only ``roles`` (any role when none is given)."""

    def dep(p: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if roles and p.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"role {p.role!r} may not do this; needs one of {list(roles)}")
        return p

    return dep


def check_scope(p: Principal, code: str | None, what: str = "resource") -> None:
    """403 when ``code`` lies outside the caller's subtree."""
    if not p.sees(code):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"{what} is outside your grid scope {p.scope_code}")


def narrow_scope(p: Principal, requested: str | None) -> str:
    """The effective subtree filter for a list: the caller's scope, narrowed by a
    requested prefix; asking for a subtree outside one's scope is refused."""
    if not requested:
        return p.scope_code
    if requested.startswith(p.scope_code):
        return requested
    if p.scope_code.startswith(requested):
        return p.scope_code  # asked for an ancestor: show what is visible under it
    raise HTTPException(status.HTTP_403_FORBIDDEN,
                        f"grid {requested} is outside your grid scope {p.scope_code}")


Reader = Annotated[Principal, Depends(require())]
Writer = Annotated[Principal, Depends(require(*WRITE_ROLES))]
Ctx = Annotated[AppContext, Depends(ctx)]
