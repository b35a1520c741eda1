"""Log in and out, who am I, change my password, issue an app token."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from hub.api import auth
from hub.store import users as store

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/auth", tags=["auth"])

Me = Annotated[auth.UserPrincipal, Depends(auth.get_principal)]


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    # True: return a bearer token for an app instead of setting the session cookie.
    token: bool = False


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    scope_code: str
    person_id: str | None
    display_name: str
    actions: list[str] = Field(description="lifecycle actions this user may take")


class LoginResponse(BaseModel):
    user: UserOut
    expires_at: datetime
    csrf_token: str | None = Field(None, description="echo in X-CSRF-Token (cookie sessions)")
    token: str | None = Field(None, description="bearer token (when token=true)")


class PasswordChange(BaseModel):
    old_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class TokenRequest(BaseModel):
    # The password again: whoever holds a session or a token must not turn it into
    # more long-lived tokens without it.
    password: str = Field(min_length=1, max_length=256)


class TokenResponse(BaseModel):
    token: str
    expires_at: datetime


def _user_out(p: auth.UserPrincipal) -> UserOut:
    return UserOut(id=p.uid, username=p.username, role=p.role, scope_code=p.scope_code,
                   person_id=p.person_id, display_name=p.display_name,
                   actions=sorted(auth.ROLE_ACTIONS.get(p.role, ())))


@router.post(
    "/login", response_model=LoginResponse,
    responses={401: {"description": "wrong username or password"},
               429: {"description": "too many failed attempts; see Retry-After"}},
    summary="Log in with username and password",
)
def login(body: LoginRequest, request: Request, response: Response) -> LoginResponse:
    cfg = auth.config(request)
    now = cfg.clock()
    ip = auth.client_ip(request)
    with auth.pool(request).connection() as conn:
        user = auth.verify_password(request, conn, body.username, body.password)
        if user is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password")
        kind = "bearer" if body.token else "cookie"
        ttl = cfg.token_ttl if body.token else cfg.session_ttl
        token, csrf = store.create_session(
            conn, user, kind=kind, now=now, ttl=ttl, ip=ip,
            user_agent=request.headers.get("user-agent", ""))
    log.info("login", extra={"user": user.username, "role": user.role, "ip": ip})
    p = auth.principal_of(user, kind, auth.site_of(request))
    if body.token:
        return LoginResponse(user=_user_out(p), expires_at=now + ttl, token=token)
    assert csrf is not None
    auth.set_session_cookies(request, response, token, csrf, ttl)
    return LoginResponse(user=_user_out(p), expires_at=now + ttl, csrf_token=csrf)


@router.post("/logout", status_code=204, summary="End this session (or revoke this token)")
def logout(me: Me, request: Request, response: Response) -> Response:
    token = None
    h = request.headers.get("authorization", "")
    if h.lower().startswith("bearer "):
        token = h[7:].strip()
    token = token or request.cookies.get(auth.SESSION_COOKIE)
    if token:
        with auth.pool(request).connection() as conn:
            store.delete_session(conn, token)
    response.status_code = 204
    auth.clear_session_cookies(response)
    return response


@router.get("/me", response_model=UserOut, summary="The logged-in user and what they may do")
def me(me: Me) -> UserOut:
    return _user_out(me)


@router.post("/password", status_code=204,
             responses={400: {"description": "new password too weak"},
                        403: {"description": "old password wrong"},
                        429: {"description": "too many wrong passwords; see Retry-After"}},
             summary="Change my password (ends my other sessions)")
def change_password(body: PasswordChange, me: Me, request: Request,
                    response: Response) -> Response:
    with auth.pool(request).connection() as conn:
        # Limited like logins: a stolen session must not be a free password oracle.
        if auth.verify_password(request, conn, me.username, body.old_password,
                                "password change") is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "old password is wrong")
        try:
            store.update_user(conn, me.uid, password=body.new_password)
        except store.UserError as e:
            code = "weak_password" if isinstance(e, store.WeakPasswordError) else "invalid"
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(e),
                                headers={"X-Error-Code": code}) from None
    response.status_code = 204
    auth.clear_session_cookies(response)
    return response


@router.post("/tokens", response_model=TokenResponse,
             responses={403: {"description": "password wrong"},
                        429: {"description": "too many wrong passwords; see Retry-After"}},
             summary="Issue a bearer token for an app, acting as me (needs my password)")
def issue_token(body: TokenRequest, me: Me, request: Request) -> TokenResponse:
    cfg = auth.config(request)
    now = cfg.clock()
    with auth.pool(request).connection() as conn:
        user = auth.verify_password(request, conn, me.username, body.password, "token")
        if user is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "password is wrong")
        token, _ = store.create_session(conn, user, kind="bearer", now=now, ttl=cfg.token_ttl,
                                        ip=auth.client_ip(request))
    return TokenResponse(token=token, expires_at=now + cfg.token_ttl)
