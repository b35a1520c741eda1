"""Who is on duty at a given moment, in the site's own timezone."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from hub.config import RoleAssignment


def in_hours(hours: tuple[time, time] | None, local: time) -> bool:
    """``hours`` as (start, end); an end at or before the start runs past midnight
    ("20:00"-"08:00" is a night shift). None means always."""
    if hours is None:
        return True
    start, end = hours
    if start == end:
        return True
    if start < end:
        return start <= local < end
    return local >= start or local < end


def on_duty(assignment: RoleAssignment, at: datetime, tz: ZoneInfo) -> bool:
    if at.tzinfo is None:
        raise ValueError("on_duty needs an aware datetime")
    return in_hours(assignment.on_duty, at.astimezone(tz).time())
