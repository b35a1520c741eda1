"""Policy data for the incident engine: silences / maintenance windows and
inhibition rules. Pure: the adapter loads silences from its store and hands them in;
inhibition pairs come from the category registry (``CategoryInfo.inhibits``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub.alerts.model import Incident
from hub.categories import CategoryRegistry
from hub.domain import Alarm


@dataclass(frozen=True, slots=True)
class Silence:
    """Suppress alarms that match every field given (device, zone, subject, category,
    grid subtree) with a data timestamp in [start, end). ``maintenance`` marks a
    planned maintenance window, shown differently in the console."""

    start: datetime
    end: datetime
    reason: str
    device_id: str | None = None
    zone: str | None = None
    subject_id: str | None = None
    category: str | None = None  # a category code
    grid_code: str | None = None  # matches this unit and everything beneath it
    id: str = ""
    created_by: str = ""
    maintenance: bool = False

    def __post_init__(self) -> None:
        if not any((self.device_id, self.zone, self.subject_id, self.category, self.grid_code)):
            raise ValueError(
                "a silence must match something: give device_id, zone, subject_id, "
                "category or grid_code"
            )
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("silence start and end must be aware datetimes")
        if self.end <= self.start:
            raise ValueError(f"silence ends ({self.end}) before it starts ({self.start})")
        if not self.reason.strip():
            raise ValueError("a silence needs a reason")

    def active(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def matches(self, alarm: Alarm, grid_code: str | None = None) -> bool:
        if not self.active(alarm.ts):
            return False
        if self.device_id is not None and alarm.device_id != self.device_id:
            return False
        if self.zone is not None and alarm.zone != self.zone:
            return False
        if self.subject_id is not None and alarm.subject_id != self.subject_id:
            return False
        if self.category is not None and alarm.category != self.category:
            return False
        if self.grid_code is not None:
            code = grid_code or alarm.grid_code
            if code is None or not code.startswith(self.grid_code):
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "reason": self.reason,
            "device_id": self.device_id,
            "zone": self.zone,
            "subject_id": self.subject_id,
            "category": str(self.category) if self.category else None,
            "grid_code": self.grid_code,
            "created_by": self.created_by,
            "maintenance": self.maintenance,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Silence:
        kw = dict(d)
        for k in ("start", "end"):
            if isinstance(kw[k], str):
                kw[k] = datetime.fromisoformat(kw[k])
        return cls(**kw)


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """An open incident of a ``source`` category suppresses new alarms of a ``target``
    category about the same care subject (the same household)."""

    source: frozenset[str]
    target: frozenset[str]
    why: str = ""

    def inhibits(self, alarm: Alarm, other: Incident) -> bool:
        return (
            alarm.category in self.target
            and other.category in self.source
            and other.is_open
            and alarm.subject_id is not None
            and other.subject_id == alarm.subject_id
        )


def inhibit_rules(categories: CategoryRegistry) -> tuple[InhibitRule, ...]:
    """One rule per category that inhibits others, in registry order."""
    return tuple(
        InhibitRule(frozenset({c.code}), frozenset(c.inhibits),
                    c.inhibit_reason or f"an open {c.name_en} incident of the same household")
        for c in categories if c.inhibits
    )


@dataclass(slots=True)
class Policy:
    silences: list[Silence] = field(default_factory=list)
    # None: the site's categories decide (``inhibit_rules``), set by the engine.
    inhibits: tuple[InhibitRule, ...] | None = None

    def silence_for(self, alarm: Alarm, grid_code: str | None) -> Silence | None:
        for s in self.silences:
            if s.matches(alarm, grid_code):
                return s
        return None

    def inhibitor(self, alarm: Alarm, related: list[Incident]) -> tuple[Incident, str] | None:
        for rule in self.inhibits or ():
            for inc in related:
                if rule.inhibits(alarm, inc):
                    return inc, rule.why
        return None
