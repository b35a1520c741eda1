"""Shared pieces of the sensing engine tests: times in the demo site's zone, to the
second, and the messages and alarm summaries they compare."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hub.domain import Alarm
from hub.protocol import Event, EventType, Reading, Telemetry

TZ = ZoneInfo("Asia/Shanghai")
_seq = itertools.count()


def at(h: int, m: int = 0, s: int = 0, day: int = 2) -> datetime:
    return datetime(2026, 3, day, h, m, s, tzinfo=TZ)


def ev(device: str, type_: EventType, ts: datetime, **data: Any) -> Event:
    return Event(device=device, seq=next(_seq), ts=ts, type=type_, data=data)


def tel(device: str, ts: datetime, **readings: float) -> Telemetry:
    return Telemetry(device=device, seq=next(_seq), ts=ts,
                     readings=[Reading(metric=k, value=v) for k, v in readings.items()])


def brief(alarms: list[Alarm]) -> list[tuple[str, str, datetime]]:
    return [(a.dedup_key, a.state.value, a.ts) for a in alarms]
