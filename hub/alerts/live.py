"""The console's live stream as the alert worker feeds it: an incident change goes
to the broadcaster straight after its commit. It is a view of the database, so it
needs no outbox."""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime
from typing import Any

from hub.alerts.model import Incident
from hub.alerts.notifiers.sse import Broadcaster
from hub.domain import Severity

_FIELDS = tuple(f.name for f in dataclasses.fields(Incident))


def incident_view(inc: Incident) -> dict[str, Any]:
    """The JSON shape of an incident in notifications and the live stream (the same
    as ``Incident.to_dict``, without its deep copy: this runs for every change)."""
    d: dict[str, Any] = {}
    for name in _FIELDS:
        v = getattr(inc, name)
        if isinstance(v, datetime):
            v = v.isoformat()
        elif isinstance(v, Severity):
            v = v.name.lower()
        elif isinstance(v, enum.Enum):
            v = v.value
        d[name] = v
    d["evidence_url"] = f"/api/incidents/{inc.id}/evidence" if inc.evidence_image else None
    return d


class LiveFeed:
    def __init__(self, broadcaster: Broadcaster) -> None:
        self.broadcaster = broadcaster

    def publish(self, inc: Incident, reason: str, action: str | None = None) -> None:
        """``reason``: new, update, transition or escalated; ``action`` the lifecycle
        action of a transition."""
        self.broadcaster.publish("incident", {"reason": reason, "action": action,
                                              "incident": incident_view(inc)}, inc.grid_code)
