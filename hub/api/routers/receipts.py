"""Delivery receipts from an SMS/voice gateway: ``POST /api/notify/receipts/{channel}
?token=...`` with ``{"reference": <delivery id>, "status": "delivered" | "failed",
"detail": "..."}``. The token is the channel's ``HUB_SECRET_<receipt_env>``; the
receipt becomes a ``notify_receipt`` note in the incident's timeline. Public to the
session guard (``hub.api.guard.PUBLIC_PATTERNS``): the token authenticates."""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, Query
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field

from hub.alerts.notifiers import timeline
from hub.alerts.notifiers.channels import SecretMissing, secret
from hub.api.deps import Ctx

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/notify", tags=["notify"])
RECEIPTS = Counter("hub_notify_receipts_total", "Gateway delivery receipts", ["result"])


class ReceiptIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    reference: int = Field(ge=1, description="the delivery id sent in the body template")
    status: Literal["delivered", "failed"]
    detail: str = Field(default="", max_length=500)


@router.post("/receipts/{channel}", summary="A gateway's delivery receipt")
def receipt(channel: str, body: ReceiptIn, ctx: Ctx,
            token: str = Query(max_length=256)) -> dict[str, str]:
    cfg = next((c for c in ctx.site.channels if c.name == channel and c.kind == "sms"), None)
    want = ""
    if cfg is not None and cfg.receipt_env:
        try:
            want = secret(cfg.receipt_env)
        except SecretMissing:
            want = ""
    if not want or not hmac.compare_digest(want.encode(), token.encode()):
        RECEIPTS.labels("refused").inc()
        raise HTTPException(401, "unknown channel or wrong token")
    with ctx.pool.connection() as conn:
        row = conn.execute("SELECT incident_id FROM outbox WHERE id = %s AND target = %s",
                           (body.reference, channel)).fetchone()
        if row is None or row[0] is None:
            RECEIPTS.labels("unknown_reference").inc()
            raise HTTPException(404, "no such delivery")
        with conn.transaction():
            timeline.note(conn, int(row[0]), datetime.now(UTC), "notify_receipt",
                          actor=f"gateway:{channel}", reason=body.detail or None,
                          data={"channel": channel, "delivery": body.reference,
                                "status": body.status})
    RECEIPTS.labels(body.status).inc()
    log.info("delivery receipt", extra={"channel": channel, "delivery": body.reference,
                                        "incident": row[0], "status": body.status})
    return {"status": "recorded"}
