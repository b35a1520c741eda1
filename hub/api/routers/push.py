"""Web Push subscriptions of the phone view: the VAPID public key the page
subscribes with, and the subscription it made (stored per user, bound to this
session: logging out removes it). Delivery is the outbox's
(``hub.alerts.notifiers.webpush``)."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.alerts.notifiers.webpush import VapidKeys, load_keys
from hub.api.auth import SESSION_COOKIE
from hub.api.deps import Ctx, Principal, current_principal
from hub.config import Settings
from hub.store import push

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/push", tags=["push"])
# The installable PWA's own files: the service worker must come from under /m to
# control /m (Service-Worker-Allowed widens its scope from /m/ to /m).
pwa = APIRouter()
STATIC = Path(__file__).resolve().parents[1] / "static"
Caller = Annotated[Principal, Depends(current_principal)]
MAX_PER_USER = 10  # phones and browsers of one login


def _b64url(v: str, size: int, what: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(v + "=" * (-len(v) % 4))
    except ValueError:
        raise ValueError(f"{what} is not base64url") from None
    if len(raw) != size:
        raise ValueError(f"{what} must be {size} bytes, not {len(raw)}")
    return v


class Keys(BaseModel):
    model_config = ConfigDict(extra="ignore")

    p256dh: str = Field(max_length=200)
    auth: str = Field(max_length=100)

    @field_validator("p256dh")
    @classmethod
    def _point(cls, v: str) -> str:
        _b64url(v, 65, "p256dh")
        if base64.urlsafe_b64decode(v + "=" * (-len(v) % 4))[0] != 4:
            raise ValueError("p256dh must be an uncompressed P-256 point")
        return v

    @field_validator("auth")
    @classmethod
    def _auth(cls, v: str) -> str:
        return _b64url(v, 16, "auth")


class SubscriptionIn(BaseModel):
    """``PushSubscription.toJSON()`` as the browser gives it."""

    model_config = ConfigDict(extra="ignore")

    endpoint: str = Field(max_length=2048)
    keys: Keys
    expirationTime: float | None = None  # noqa: N815 - the browser's name

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        u = urlsplit(v)
        if u.scheme not in ("https", "http") or not u.netloc:
            raise ValueError("endpoint must be an http(s) URL")
        return v


class Unsubscribe(BaseModel):
    model_config = ConfigDict(extra="ignore")

    endpoint: str = Field(max_length=2048)


def keys_of(ctx: Any) -> VapidKeys:
    k = ctx.extra.get("vapid")
    if k is None:
        k = ctx.extra["vapid"] = load_keys(ctx.data_dir, Settings().vapid_private_key)
    return k  # type: ignore[no-any-return]


def _uid(p: Principal) -> int:
    uid = getattr(p, "uid", 0)
    if not uid:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "push needs a user login")
    return int(uid)


@router.get("/key", summary="The VAPID public key to subscribe with (applicationServerKey)")
def public_key(ctx: Ctx, me: Caller) -> dict[str, str]:
    return {"public_key": keys_of(ctx).public_key}


@router.post("/subscriptions", status_code=201,
             summary="Store this browser's push subscription for me (until I log out)")
def subscribe(body: SubscriptionIn, ctx: Ctx, me: Caller, request: Request) -> dict[str, Any]:
    uid = _uid(me)
    token = request.cookies.get(SESSION_COOKIE)
    h = request.headers.get("authorization", "")
    if h.lower().startswith("bearer "):
        token = h[7:].strip()
    with ctx.pool.connection() as conn:
        mine = push.for_user(conn, uid)
        if len(mine) >= MAX_PER_USER and body.endpoint not in {s.endpoint for s in mine}:
            raise HTTPException(status.HTTP_409_CONFLICT,
                                f"at most {MAX_PER_USER} push subscriptions a user")
        sid = push.save(conn, uid, token, body.endpoint, body.keys.p256dh, body.keys.auth,
                        request.headers.get("user-agent", ""))
    log.info("push subscription stored", extra={"user": me.user_id, "subscription": sid,
                                                "push_host": urlsplit(body.endpoint).netloc})
    return {"id": sid}


@router.get("/subscriptions", summary="My push subscriptions (hosts only)")
def mine(ctx: Ctx, me: Caller) -> list[dict[str, Any]]:
    with ctx.pool.connection() as conn:
        subs = push.for_user(conn, _uid(me))
    return [{"id": s.id, "host": urlsplit(s.endpoint).netloc} for s in subs]


@router.post("/unsubscribe", status_code=204, summary="Forget this browser's subscription")
def unsubscribe(body: Unsubscribe, ctx: Ctx, me: Caller) -> Response:
    with ctx.pool.connection() as conn:
        push.remove(conn, _uid(me), body.endpoint)
    return Response(status_code=204)


@pwa.get("/m/sw.js", include_in_schema=False)
def service_worker() -> FileResponse:
    return FileResponse(STATIC / "js" / "sw.js", media_type="text/javascript", headers={
        "Service-Worker-Allowed": "/m", "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff"})


@pwa.get("/m/manifest.webmanifest", include_in_schema=False)
def manifest() -> FileResponse:
    return FileResponse(STATIC / "m.webmanifest", media_type="application/manifest+json",
                        headers={"Cache-Control": "no-cache"})
