"""What one notification becomes in the outbox, inside the incident's transaction:
one MQTT message per grid unit whose people are told (the topic their app listens
on), one webhook call per person and URL, and what the site's chat and SMS channels
of those units carry (``hub.alerts.notifiers.plan``)."""

from __future__ import annotations

from collections.abc import Sequence

from hub.alerts.live import incident_view
from hub.alerts.model import Incident, Notification
from hub.alerts.notifiers.plan import ChannelPlan
from hub.alerts.notifiers.webpush import WebPushPlan
from hub.domain import Severity
from hub.store.outbox import OutboxRow


class OutboxRows:
    """``mqtt``: whether this worker publishes to grid workers' apps at all (it has a
    broker); ``public_url``: the base of the incident links in notifications."""

    def __init__(self, *, mqtt: bool, webhook_urls: Sequence[str] = (),
                 public_url: str = "", channels: ChannelPlan | None = None) -> None:
        self.mqtt = mqtt
        # Web Push rows, one per person told (hub.alerts.notifiers.webpush.attach).
        self.push: WebPushPlan | None = None
        self.channels = channels
        self.webhook_urls = list(webhook_urls)
        self.public_url = public_url.rstrip("/")

    def __call__(self, n: Notification, inc: Incident) -> list[OutboxRow]:
        rows: list[OutboxRow] = []
        urgent = n.reason == "new" and n.severity >= Severity.CRITICAL
        units = sorted({r.unit_code for r in n.recipients if r.unit_code}) or (
            [n.grid_code] if n.grid_code else [])
        note = {
            "incident_id": n.incident_id, "grid_code": n.grid_code or "",
            "category": str(n.category), "severity": n.severity.name.lower(),
            "state": n.state.value, "title": n.title, "ts": n.at.isoformat(),
            "level": n.level, "reason": n.reason,
            "url": f"{self.public_url}/api/incidents/{n.incident_id}" if self.public_url
            else f"/api/incidents/{n.incident_id}",
        }
        if self.mqtt:
            for u in units:
                rows.append(OutboxRow("mqtt", u, {**note, "urgent": urgent},
                                      incident_id=n.incident_id))
        for url in self.webhook_urls:
            for r in n.recipients:
                rows.append(OutboxRow(
                    "webhook", r.person_id,
                    {"type": "incident", "urgent": urgent, "notification": note,
                     "recipient": r.to_dict(), "incident": incident_view(inc)},
                    incident_id=n.incident_id, target=url))
        if self.channels is not None:
            rows.extend(self.channels.rows(n, units))
        if self.push is not None:
            rows.extend(self.push.rows(n))
        return rows
