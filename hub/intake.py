"""12345 hotline intake: an external system's ticket as an incident, and the status
it is told back on each lifecycle step.

A ticket becomes an alarm of rule ``intake`` whose dedup key is ``intake:<ticket
id>``; the status rows recognise an intake incident by that key, so the incident needs
no column of its own. Idempotency lives in the ``intake_tickets`` table (one row per
ticket id, hub.api.routers.intake)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from hub.alerts.model import AuditEntry, Incident
from hub.domain import Alarm, AlarmState, Severity
from hub.store.outbox import OutboxRow

RULE = "intake"
PREFIX = "intake:"
TICKET_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"


class TicketIn(BaseModel):
    """One 12345 ticket. Bounded: ids and codes by pattern, text by length."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    ticket_id: str = Field(pattern=TICKET_ID, description="the external system's ticket id")
    category: str = Field(pattern=r"^[a-z][a-z0-9_]{1,39}$",
                          description="a registered category code (GET /api/meta)")
    grid_code: str = Field(pattern=r"^\d{6,16}$", description="a unit of the site's grid tree")
    title: str = Field(min_length=1, max_length=120)
    description: str = Field(default="", max_length=2000)
    address: str = Field(default="", max_length=200)
    reported_at: AwareDatetime | None = Field(
        default=None, description="when the caller rang (default: when it arrived)")


def ticket_of(inc: Incident) -> str | None:
    """The external ticket id of an intake incident; None for any other."""
    return inc.dedup_key[len(PREFIX):] if inc.dedup_key.startswith(PREFIX) else None


def to_alarm(t: TicketIn, severity: Severity, now: datetime) -> Alarm:
    return Alarm(
        rule=RULE, category=t.category, severity=severity, state=AlarmState.FIRING,
        dedup_key=PREFIX + t.ticket_id, ts=t.reported_at or now, title=t.title[:120],
        grid_code=t.grid_code,
        evidence={"source": "12345", "ticket_id": t.ticket_id,
                  "description": t.description, "address": t.address})


class StatusRows:
    """Outbox rows telling the external system each step of its tickets' incidents
    (webhook channel: signed, retried, at least once)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, inc: Incident, audit: AuditEntry) -> list[OutboxRow]:
        ticket = ticket_of(inc)
        if ticket is None or not self.url:
            return []
        payload: dict[str, Any] = {
            "type": "intake_status", "ticket_id": ticket, "incident_id": inc.id,
            "action": audit.action.value, "state": inc.state.value,
            "at": audit.at.isoformat(), "reason": audit.reason,
        }
        return [OutboxRow("webhook", PREFIX + ticket, payload, incident_id=inc.id,
                          target=self.url)]
