"""The emergency contact's answer page: ``GET /api/family/{token}`` shows three
buttons (我在路上 / 她没事，误报 / 我去不了, Chinese first), ``POST`` records the answer
through the one-time link (``hub.family``). Public to the session guard, with its
own 1 KiB body cap and a per-address rate limit; the link authenticates."""

from __future__ import annotations

import html
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse

from hub.alerts.notifiers.channels import SecretMissing
from hub.api.auth import client_ip
from hub.api.deps import Ctx
from hub.family import cascade as fc
from hub.family.links import BadLink
from hub.family.worker import REFUSED, FamilyCascades
from hub.ratelimit import TokenBuckets

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/family", tags=["family"])
# 10 requests at once per address, then one every 6 s: a contact taps a button or
# two; a guesser gets nowhere (the links are signed anyway).
LIMIT = TokenBuckets(capacity=10, per_s=1 / 6)
_REFUSED = {"malformed": "链接无效 / This link is not valid",
            "bad_signature": "链接无效 / This link is not valid",
            "expired": "链接已过期 / This link has expired",
            "used": "已回复过，谢谢 / Already answered, thank you"}
# Without the link secret no link can be checked; the contact is told to call instead
# of being shown an error they can do nothing about (the operator has the log line).
_OFF = ("<p>暂时无法在线回复，请直接致电社区。<br><span class=en>Answers cannot be taken"
        " online right now; please call the community.</span></p>")


def _cascades(ctx: Ctx) -> FamilyCascades:
    fam = getattr(ctx.alerts, "family", None) if ctx.alerts is not None else None
    if fam is None:
        fam = ctx.extra.get("family")
        if fam is None:
            from hub.clock import SystemClock

            fam = ctx.extra["family"] = FamilyCascades(ctx.pool, ctx.site, SystemClock())
    return fam


def _limit(request: Request) -> None:
    if not LIMIT.take(client_ip(request), time.time()):
        raise HTTPException(429, "too many requests", headers={"Retry-After": "6"})


def _off(fam: FamilyCascades, e: SecretMissing) -> HTMLResponse:
    fam.cascade_off(e)
    REFUSED.labels("off").inc()
    return _page(_OFF, 503)


def _page(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang=zh><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        "<title>紧急联系人 / Emergency contact</title>"
        "<style>body{font:18px sans-serif;max-width:30em;margin:1em auto;padding:0 1em}"
        "button{display:block;width:100%;font-size:20px;padding:.8em;margin:.6em 0}"
        ".en{color:#555;font-size:15px}</style><body>" + body + "</body></html>",
        status_code=status, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


@router.get("/{token}", response_class=HTMLResponse, summary="An emergency contact's page")
def page(token: str, request: Request, ctx: Ctx) -> HTMLResponse:
    _limit(request)
    fam = _cascades(ctx)
    try:
        name, address, open_ = fam.page(token)
    except SecretMissing as e:
        return _off(fam, e)
    except BadLink as e:
        return _page(f"<p>{_REFUSED[str(e)]}</p>", 410 if str(e) == "expired" else 404)
    if not open_:
        return _page(f"<p>{_REFUSED['used']}</p>")
    buttons = "".join(
        f"<button name=answer value={a}>{zh}<br><span class=en>{en}</span></button>"
        for a, (zh, en) in fc.LABELS.items())
    who = html.escape(f"{name}（{address}）")
    return _page(f"<h1>紧急：{who}</h1><p>社区监测到{who}可能需要帮助，请回复："
                 f"<br><span class=en>The community hub found {html.escape(name)} may need"
                 f" help. Please answer:</span></p><form method=post>{buttons}</form>")


@router.post("/{token}", response_class=HTMLResponse, summary="An emergency contact answers")
def answer(token: str, request: Request, ctx: Ctx,
           value: Annotated[fc.Answer, Form(alias="answer")]) -> HTMLResponse:
    _limit(request)
    fam = _cascades(ctx)
    try:
        incident = fam.answer(token, value)
    except SecretMissing as e:
        return _off(fam, e)
    except BadLink as e:
        return _page(f"<p>{_REFUSED[str(e)]}</p>", 410 if str(e) == "expired" else 409
                     if str(e) == "used" else 404)
    log.info("family answer page", extra={"incident": incident, "answer": value})
    zh, en = fc.LABELS[value]
    return _page(f"<h1>已收到：{zh}</h1><p>谢谢。网格员会继续跟进。<br>"
                 f"<span class=en>Received: {en}. Thank you; the grid worker follows"
                 " up.</span></p>")
