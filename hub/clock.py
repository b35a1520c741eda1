"""Time as an injected dependency.

The pure core never reads the wall clock: it is handed a ``Clock`` (or plain
timestamps), so tests run to the second and recordings replay exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware datetime in UTC."""
        ...


class SystemClock:
    """The wall clock; used only by adapters (ingest, API, the demo)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def _aware(dt: datetime) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt!r}: give a timezone")
    return dt.astimezone(UTC)


class ManualClock:
    """A clock that moves only when told to, for tests and replays."""

    def __init__(self, start: datetime) -> None:
        self._now = _aware(start)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("a clock does not run backwards")
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, dt: datetime) -> datetime:
        self._now = _aware(dt)
        return self._now
