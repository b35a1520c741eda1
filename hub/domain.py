"""Core types shared by every part of the hub.

Pure data: nothing here does I/O or reads the wall clock. Every detector, visual or
not, produces the same :class:`Alarm`; one incident engine turns alarms into
:class:`Incident` records.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class GridLevel(enum.IntEnum):
    """Levels of the grid tree; the value is the length of the code at that level."""

    DISTRICT = 6  # county / district (区县), national statistical code
    STREET = 9  # street / township (街道)
    COMMUNITY = 12  # community (社区)
    GRID = 14  # grid (网格)
    MICRO_GRID = 16  # micro-grid (微网格)

    @classmethod
    def of_code(cls, code: str) -> GridLevel:
        try:
            return cls(len(code))
        except ValueError:
            raise ValueError(
                f"grid code {code!r} has {len(code)} digits; expected 6, 9, 12, 14 or 16"
            ) from None


class Severity(enum.IntEnum):
    INFO = 1
    MINOR = 2
    MAJOR = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, value: str | int | Severity) -> Severity:
        if isinstance(value, Severity):
            return value
        if isinstance(value, int):
            return cls(value)
        return cls[value.upper()]


class AlarmState(enum.StrEnum):
    FIRING = "firing"
    CLEARED = "cleared"


class Category(enum.StrEnum):
    """The built-in incident category codes, as constants for the code that raises
    them. Not the list of categories: that is ``hub.categories`` (the registry),
    where a plug-in adds its own codes and the site file overrides them. A category
    is a plain string everywhere (``Category.FALL == "fall"``)."""

    FIRE_LANE = "fire_lane"  # 消防通道占用
    FALL = "fall"  # 跌倒
    INACTIVITY = "inactivity"  # 长时间无活动
    WATER = "water"  # 用水异常
    SOS = "sos"  # 紧急呼叫
    SMOKE = "smoke"  # 烟感
    VITALS = "vitals"  # 生命体征异常
    DEVICE_OFFLINE = "device_offline"  # 设备离线 (maintenance)


class IncidentState(enum.StrEnum):
    """GB/T 30428-style lifecycle."""

    REPORTED = "reported"  # 上报
    REGISTERED = "registered"  # 立案
    CANCELLED = "cancelled"  # 作废 (false alarm)
    DISPATCHED = "dispatched"  # 派遣
    ACCEPTED = "accepted"  # 签收
    HANDLED = "handled"  # 处置
    CLOSED = "closed"  # 核查结案
    PARKED = "parked"  # 挂账: not solvable now, open until its review date

    @property
    def is_open(self) -> bool:
        return self not in (IncidentState.CANCELLED, IncidentState.CLOSED)


@dataclass(frozen=True, slots=True)
class GridUnit:
    code: str
    name: str
    parent_code: str | None

    @property
    def level(self) -> GridLevel:
        return GridLevel.of_code(self.code)

    def contains(self, code: str) -> bool:
        """A code lies under this unit when this unit's code is its prefix."""
        return code.startswith(self.code)


@dataclass(frozen=True, slots=True)
class Alarm:
    """What one detector says at one instant, in the one shape every detector uses.

    ``dedup_key`` names the thing the alarm is about (rule + place/subject), so a
    repeat of the same alarm updates one incident instead of opening another.
    ``ts`` is the data's own timestamp (from the edge), never the hub's wall clock.
    """

    rule: str  # e.g. "firelane", "fall", "inactivity", "sos"
    category: str  # a registered code (hub.categories), e.g. Category.FALL or "crowding"
    severity: Severity
    state: AlarmState
    dedup_key: str
    ts: datetime
    title: str
    grid_code: str | None = None
    device_id: str | None = None
    subject_id: str | None = None  # care subject, when the alarm is about a person we know
    zone: str | None = None
    confidence: float = 1.0
    evidence: dict[str, Any] = field(default_factory=dict)  # the numbers that made it fire
    evidence_image: str | None = None  # path relative to the data directory

    @property
    def firing(self) -> bool:
        return self.state is AlarmState.FIRING
