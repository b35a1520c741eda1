"""Water leak: a leak sensor that is wet (``water_leak`` event, or a ``water_leak``
reading of 1) opens an incident for property management (a burst pipe floods the
flats below) until ``water_leak_clear`` (or a reading of 0).

Dedup key: ``water_leak:{device}``.
"""

from __future__ import annotations

from hub.categories import CategoryInfo
from hub.domain import Severity
from hub.protocol import EventType
from hub.sensing.rules.latch import LatchRule

WATER_LEAK = "water_leak"
CATEGORIES = (
    CategoryInfo(
        code=WATER_LEAK, case_code="0905", name_zh="漏水", name_en="Water leak",
        severity=Severity.MAJOR, accept_s=900, handle_s=7200, groups=False,
        route="property", icon="🚰", colour="#0369a1"),
)


class LeakRule(LatchRule):
    name = WATER_LEAK
    category = WATER_LEAK
    on_event = EventType.WATER_LEAK
    off_event = EventType.WATER_LEAK_CLEAR
    metric = "water_leak"
    what = "漏水报警"
    about_household = False
