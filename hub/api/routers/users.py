"""User administration, for admins, inside their own grid subtree."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from hub.api import auth, identity
from hub.store import users as store

router = APIRouter(prefix="/api/users", tags=["users"])

RoleName = Literal["admin", "operator", "grid_worker", "viewer"]
ScopeCode = Annotated[str, Field(pattern=r"^\d{6}(\d{3}(\d{3}(\d{2}(\d{2})?)?)?)?$")]


def admin(p: Annotated[auth.UserPrincipal, Depends(auth.get_principal)]) -> auth.UserPrincipal:
    if p.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only admins manage users")
    return p


Admin = Annotated[auth.UserPrincipal, Depends(admin)]


class UserRecord(BaseModel):
    id: int
    username: str
    role: RoleName
    scope_code: str
    person_id: str | None
    display_name: str
    disabled: bool


class NewUser(BaseModel):
    username: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    password: str = Field(min_length=store.MIN_PASSWORD, max_length=256)
    role: RoleName
    scope_code: ScopeCode
    person_id: str | None = Field(None, max_length=64)
    display_name: str = Field("", max_length=100)


class UserPatch(BaseModel):
    role: RoleName | None = None
    scope_code: ScopeCode | None = None
    person_id: str | None = Field(None, max_length=64,
                                  description='a person of the site; "" removes the link')
    display_name: str | None = Field(None, max_length=100)
    disabled: bool | None = None
    password: str | None = Field(None, min_length=store.MIN_PASSWORD, max_length=256)


def _check_scope(me: auth.UserPrincipal, code: str) -> None:
    if not me.sees(code):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"scope {code} is outside your grid scope {me.scope_code}")


def _load(request: Request, me: auth.UserPrincipal, user_id: int) -> store.User:
    with auth.pool(request).connection() as conn:
        u = store.get_user(conn, user_id)
    if u is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such user")
    _check_scope(me, u.scope_code)
    return u


@router.get("", response_model=list[UserRecord], summary="Users inside my scope")
def list_users(me: Admin, request: Request) -> list[UserRecord]:
    with auth.pool(request).connection() as conn:
        return [UserRecord(**u.public()) for u in store.list_users(conn, me.scope_code)]


def _store_error(e: store.UserError) -> HTTPException:
    if isinstance(e, store.UserConflict):
        return HTTPException(status.HTTP_409_CONFLICT, str(e), headers={"X-Error-Code": e.code})
    if isinstance(e, store.WeakPasswordError):
        return HTTPException(status.HTTP_400_BAD_REQUEST, str(e),
                             headers={"X-Error-Code": "weak_password"})
    return HTTPException(status.HTTP_400_BAD_REQUEST, str(e))


_CONFLICTS = {409: {"description": "username taken (code username_taken) or person linked "
                    "to another account (person_taken)"},
              422: {"description": "unknown scope unit or person, a person outside the "
                    "account's scope, a username that is a person's id"}}


@router.post("", response_model=UserRecord, status_code=201, responses=_CONFLICTS)
def create_user(body: NewUser, me: Admin, request: Request) -> UserRecord:
    person = body.person_id or None
    identity.check_account(auth.site_of(request), me, username=body.username, role=body.role,
                           scope_code=body.scope_code, person_id=person,
                           changing={"username", "role", "scope_code", "person_id"})
    try:
        with auth.pool(request).connection() as conn:
            u = store.create_user(conn, body.username, body.password, body.role,
                                  body.scope_code, person, body.display_name)
    except store.UserError as e:
        raise _store_error(e) from None
    return UserRecord(**u.public())


@router.get("/{user_id}", response_model=UserRecord)
def get_user(user_id: int, me: Admin, request: Request) -> UserRecord:
    return UserRecord(**_load(request, me, user_id).public())


@router.patch("/{user_id}", response_model=UserRecord, responses=_CONFLICTS,
              summary="Change a user; a new role, scope, person or password ends their "
              "sessions")
def patch_user(user_id: int, body: UserPatch, me: Admin, request: Request) -> UserRecord:
    cur = _load(request, me, user_id)
    changes = body.model_dump(exclude_none=True)
    person = cur.person_id if body.person_id is None else (body.person_id or None)
    # Checked against the account as it will be, own account included.
    identity.check_account(auth.site_of(request), me, username=cur.username,
                           role=body.role or cur.role,
                           scope_code=body.scope_code or cur.scope_code, person_id=person,
                           changing=set(changes))
    try:
        with auth.pool(request).connection() as conn:
            u = store.update_user(conn, user_id, **changes)
    except store.UserError as e:
        raise _store_error(e) from None
    if u is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such user")
    return UserRecord(**u.public())


@router.delete("/{user_id}", status_code=204)
def delete_user(user_id: int, me: Admin, request: Request, response: Response) -> Response:
    if user_id == me.uid:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "you cannot delete yourself")
    _load(request, me, user_id)
    with auth.pool(request).connection() as conn:
        store.delete_user(conn, user_id)
    response.status_code = 204
    return response
