"""Vendors' event times as aware datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from hub.vendors.event import PushError


def iso_time(value: object, local: tzinfo, field: str) -> datetime | None:
    """An ISO 8601 time (``2017-07-19T10:06:41+08:00``, ``2009-11-14T15:27Z``); one
    without an offset is the camera's local time, ``local``. None when absent."""
    if value is None or value == "":
        return None
    text = str(value).strip()[:40]
    try:
        ts = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise PushError("malformed", f"{field} {text!r} is not an ISO 8601 time") from None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=local)


def epoch_time(value: object, field: str) -> datetime | None:
    """Seconds since 1970 (UTC); None when absent."""
    if value is None or value == "":
        return None
    try:
        seconds = float(str(value)[:20])
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        raise PushError("malformed", f"{field} {str(value)[:40]!r} is not a time in seconds"
                        " since 1970") from None
