"""Day and night inactivity windows, in the site's local time.

An inactivity alarm is due at the first instant ``t`` after the last activity where
``t - last >= window(t)``, ``window(t)`` being the day window while ``t`` is in the
day period [day_start, night_start) and the night window otherwise. So a resident
last seen at 09:00 is due at 21:00 (12 h by day), one last seen at 11:00 is not due
at 23:00 (night, 16 h) but at 03:00, and one last seen at 20:00 is due at 08:00 — the
first day-time instant more than 12 h after.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hub.grid.duty import in_hours


def is_day(at: datetime, day_start: time, night_start: time, tz: ZoneInfo) -> bool:
    return in_hours((day_start, night_start), at.astimezone(tz).time())


def _first_at_or_after(x: datetime, boundary: time, tz: ZoneInfo) -> datetime:
    local = x.astimezone(tz)
    cand = datetime.combine(local.date(), boundary, tzinfo=tz)
    if cand < local:
        cand = datetime.combine(local.date() + timedelta(days=1), boundary, tzinfo=tz)
    return cand.astimezone(UTC)


def inactivity_deadline(
    last: datetime,
    day_s: float,
    night_s: float,
    day_start: time,
    night_start: time,
    tz: ZoneInfo,
) -> tuple[datetime, str]:
    """When the inactivity alarm becomes due after activity at ``last``, and which
    window ("day" or "night") applies then."""
    a = last + timedelta(seconds=day_s)
    day_due = a if is_day(a, day_start, night_start, tz) else _first_at_or_after(a, day_start, tz)
    b = last + timedelta(seconds=night_s)
    night_due = (
        b if not is_day(b, day_start, night_start, tz) else _first_at_or_after(b, night_start, tz)
    )
    return (day_due, "day") if day_due <= night_due else (night_due, "night")
