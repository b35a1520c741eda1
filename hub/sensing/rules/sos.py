"""SOS: a pressed emergency button is an immediate, critical alarm.

Dedup key: ``sos:{subject}`` (a device without a care subject uses its device id).
"""

from __future__ import annotations

from hub.domain import Alarm, Category
from hub.protocol import Event, EventType
from hub.sensing.base import Incoming, RuleBase, label, make_alarm, scalars


class SosRule(RuleBase):
    name = "sos"

    def on_message(self, m: Incoming) -> list[Alarm]:
        if not isinstance(m.msg, Event) or m.msg.type is not EventType.SOS:
            return []
        dev, subject = m.device, m.subject
        who = subject.id if subject else dev.id
        return [make_alarm(
            self.ctx.site, "sos", Category.SOS, f"sos:{who}", m.ts,
            f"{label(dev, subject)} 紧急呼叫", dev, subject,
            pressed_at=m.ts.isoformat(), device_kind=dev.kind, data=scalars(m.msg.data),
        )]
