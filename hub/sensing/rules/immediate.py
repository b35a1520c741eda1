"""An immediate, critical alarm on one event from a care subject's device (an SOS
button, a wearable's own fall detection): every event fires, and the incident
engine folds repeats into the open incident. Each subclass names its event,
category, key prefix, title and the extra fields of its alarm.

Dedup key: ``{key}:{subject}`` (a device without a care subject uses its device id).
"""

from __future__ import annotations

from typing import Any, ClassVar

from hub.domain import Alarm, Category
from hub.protocol import Event, EventType
from hub.sensing.base import Incoming, RuleBase, label, make_alarm, scalars


class ImmediateEventRule(RuleBase):
    event: ClassVar[EventType]
    category: ClassVar[Category]
    key: ClassVar[str]  # the dedup key's prefix
    what: ClassVar[str]  # the title after the place, e.g. "紧急呼叫"

    def extra(self, m: Incoming) -> dict[str, Any]:
        """The alarm's fields besides the event's own data."""
        return {}

    def on_message(self, m: Incoming) -> list[Alarm]:
        if not isinstance(m.msg, Event) or m.msg.type is not self.event:
            return []
        dev, subject = m.device, m.subject
        who = subject.id if subject else dev.id
        return [make_alarm(
            self.ctx.site, self.name, self.category, f"{self.key}:{who}", m.ts,
            f"{label(dev, subject)} {self.what}", dev, subject,
            **self.extra(m), data=scalars(m.msg.data),
        )]
