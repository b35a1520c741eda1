"""A wearable's own fall detection: an immediate, critical alarm (the camera fall
rule is ``hub.vision.fall``; both open incidents of the one fall category).

Dedup key: ``fall:{subject}`` (a device without a care subject uses its device id).
"""

from __future__ import annotations

from typing import Any

from hub.domain import Category
from hub.protocol import EventType
from hub.sensing.base import Incoming
from hub.sensing.rules.immediate import ImmediateEventRule


class WearableFallRule(ImmediateEventRule):
    name = "wearable_fall"
    event = EventType.FALL
    category = Category.FALL
    key = "fall"
    what = "手环检测到跌倒"

    def extra(self, m: Incoming) -> dict[str, Any]:
        return {"source": "wearable"}
