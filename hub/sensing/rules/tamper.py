"""Tamper: a sensor's case opened or the sensor pulled off its mount (``tamper``
event, or a ``tamper`` reading of 1) raises a maintenance incident for property
management until ``tamper_clear`` (or a reading of 0). A tampered sensor cannot be
trusted to see the resident: an inactivity alarm of its household says so.

Dedup key: ``tamper:{device}``.
"""

from __future__ import annotations

from hub.categories import CategoryInfo
from hub.domain import Severity
from hub.protocol import EventType
from hub.sensing.rules.latch import LatchRule

TAMPER = "tamper"
CATEGORIES = (
    CategoryInfo(
        code=TAMPER, case_code="0903", name_zh="设备被拆动", name_en="Tamper",
        severity=Severity.MAJOR, accept_s=3600, handle_s=86400, groups=False,
        route="property", icon="🔧", colour="#7c3aed"),
)


class TamperRule(LatchRule):
    name = TAMPER
    category = TAMPER
    on_event = EventType.TAMPER
    off_event = EventType.TAMPER_CLEAR
    metric = "tamper"
    what = "设备被拆动"
    about_household = False
    device_fault = True
