"""SOS: a pressed emergency button is an immediate, critical alarm.

Dedup key: ``sos:{subject}`` (a device without a care subject uses its device id).
"""

from __future__ import annotations

from typing import Any

from hub.domain import Category
from hub.protocol import EventType
from hub.sensing.base import Incoming
from hub.sensing.rules.immediate import ImmediateEventRule


class SosRule(ImmediateEventRule):
    name = "sos"
    event = EventType.SOS
    category = Category.SOS
    key = "sos"
    what = "紧急呼叫"

    def extra(self, m: Incoming) -> dict[str, Any]:
        return {"pressed_at": m.ts.isoformat(), "device_kind": m.device.kind}
