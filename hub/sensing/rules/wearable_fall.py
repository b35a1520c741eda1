"""A wearable's own fall detection: an immediate, critical alarm (the camera fall
rule is ``hub.vision.fall``; both open incidents of the one fall category).

Dedup key: ``fall:{subject}`` (a device without a care subject uses its device id).
"""

from __future__ import annotations

from hub.domain import Alarm, Category
from hub.protocol import Event, EventType
from hub.sensing.base import Incoming, RuleBase, label, make_alarm, scalars


class WearableFallRule(RuleBase):
    name = "wearable_fall"

    def on_message(self, m: Incoming) -> list[Alarm]:
        if not isinstance(m.msg, Event) or m.msg.type is not EventType.FALL:
            return []
        dev, subject = m.device, m.subject
        who = subject.id if subject else dev.id
        return [make_alarm(
            self.ctx.site, "wearable_fall", Category.FALL, f"fall:{who}", m.ts,
            f"{label(dev, subject)} 手环检测到跌倒", dev, subject, source="wearable",
            data=scalars(m.msg.data),
        )]
