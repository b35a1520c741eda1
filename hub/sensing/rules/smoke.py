"""Smoke: a detector's alarm is immediate and critical; ``smoke_clear`` (or a
``smoke`` reading of 0) clears it.

Dedup key: ``smoke:{device}``.
"""

from __future__ import annotations

from hub.domain import Category
from hub.protocol import EventType
from hub.sensing.rules.latch import LatchRule


class SmokeRule(LatchRule):
    name = "smoke"
    category = Category.SMOKE
    on_event = EventType.SMOKE
    off_event = EventType.SMOKE_CLEAR
    metric = "smoke"
    what = "烟感报警"
