"""12345 hotline intake: ``POST /api/intake/tickets`` for an external system.

It authenticates itself (hub.api.guard lists it in PUBLIC): a bearer token of its
own, ``HUB_INTAKE_TOKEN``, which can do nothing but create intake tickets — it is no
login and reaches no other route. Idempotent on the external ticket id: the same
ticket again answers 200 with the incident it made the first time (``created``
false), under an advisory lock so two deliveries at once make one incident. The
status goes back by webhook on each lifecycle step (hub.intake.StatusRows, through
the outbox)."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from hub.api.deps import Ctx
from hub.config import Settings
from hub.grid.tree import UnknownUnit
from hub.intake import PREFIX, TicketIn, to_alarm

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/intake", tags=["intake"])

INTAKE = Counter("hub_intake_tickets_total", "12345 tickets by outcome", ["outcome"])


class TicketOut(BaseModel):
    incident_id: int
    created: bool = Field(description="false: this ticket id was taken in before; the "
                          "incident is the one it made then")
    state: str
    url: str = Field(description="the incident in the hub's API")


def _token(ctx: Any) -> str:
    return str(ctx.extra.get("intake_token") or Settings().intake_token)


def _check_token(request: Request, ctx: Any) -> None:
    want = _token(ctx)
    if not want:
        INTAKE.labels("disabled").inc()
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "intake is off: HUB_INTAKE_TOKEN is not set")
    scheme, _, got = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(got.strip().encode(),
                                                             want.encode()):
        INTAKE.labels("unauthorized").inc()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong intake token",
                            headers={"WWW-Authenticate": "Bearer"})


def _refuse(msg: str) -> HTTPException:
    INTAKE.labels("invalid").inc()
    return HTTPException(422, msg)


@router.post("/tickets", response_model=TicketOut, status_code=201,
             responses={200: {"model": TicketOut, "description": "the ticket was taken in "
                              "before (idempotent)"}},
             summary="Take in a 12345 hotline ticket as an incident")
def take_ticket(body: TicketIn, request: Request, ctx: Ctx) -> Any:
    _check_token(request, ctx)
    if body.category not in ctx.site.registry:
        raise _refuse(f"unknown category {body.category!r} (GET /api/meta lists them)")
    try:
        ctx.tree.unit(body.grid_code)
    except (UnknownUnit, KeyError):
        raise _refuse(f"unknown grid unit {body.grid_code!r}: not in this site's grid "
                      "tree") from None
    if ctx.alerts is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "this API process runs no alert service")
    with ctx.pool.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (PREFIX + body.ticket_id,))
        row = conn.execute("SELECT t.incident_id, i.state FROM intake_tickets t JOIN"
                           " incidents i ON i.id = t.incident_id WHERE t.ticket_id = %s",
                           (body.ticket_id,)).fetchone()
        if row is not None:
            INTAKE.labels("duplicate").inc()
            return JSONResponse(TicketOut(incident_id=row[0], created=False, state=row[1],
                                          url=f"/api/incidents/{row[0]}").model_dump())
        severity = ctx.site.registry.resolve(body.category).severity
        now = ctx.alerts.clock.now()
        (res,) = ctx.alerts.apply_now([to_alarm(body, severity, now)])
        inc = res.incident
        if inc is None or inc.id is None:
            INTAKE.labels("suppressed").inc()
            kind = res.decision.kind.value if res.decision else "none"
            raise HTTPException(status.HTTP_409_CONFLICT, "the ticket opened no incident "
                                f"({kind}: silenced or suppressed here)")
        conn.execute("INSERT INTO intake_tickets (ticket_id, incident_id, ticket) VALUES"
                     " (%s, %s, %s)", (body.ticket_id, inc.id,
                                       Jsonb(body.model_dump(mode="json"))))
    INTAKE.labels("created").inc()
    log.info("12345 ticket taken in", extra={"ticket": body.ticket_id, "incident": inc.id,
                                             "category": body.category})
    return TicketOut(incident_id=inc.id, created=True, state=inc.state.value,
                     url=f"/api/incidents/{inc.id}")
