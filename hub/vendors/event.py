"""What a camera's push says, in one shape whichever vendor sent it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# The longest a vendor's name, description or address is kept: the vendors' own
# limits are 32-128 bytes; anything longer is cut, never stored whole.
TEXT_MAX = 128


class PushError(ValueError):
    """A push that cannot be read; ``reason`` is a stable counter label
    (``malformed``, ``unsupported``, ``too_many_parts``), ``detail`` says what is
    wrong for the 400's message."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class CameraEvent:
    """One event of the camera's own AI.

    ``active``: the event is going on (Hikvision ``eventState`` active, Dahua
    ``Start``/``Pulse``), False when it ended (``inactive``, ``Stop``). ``ts``: the
    camera's own time of the event, None when the push carries none. ``post_count``:
    Hikvision's ``activePostCount`` (1 on the first push of an event)."""

    vendor: str
    event_type: str
    active: bool
    ts: datetime | None
    channel: int | None = None
    post_count: int | None = None
    description: str = ""
    ip: str = ""
    mac: str = ""
    # The few other facts worth showing an operator (target, region, rule name).
    details: dict[str, Any] = field(default_factory=dict)


def clip(value: object) -> str:
    """A vendor's text, bounded and without control characters."""
    text = "" if value is None else str(value)
    return "".join(c for c in text[:TEXT_MAX] if c.isprintable())


def whole(value: object, name: str) -> int | None:
    """A vendor's non-negative whole number (a channel, a post count); None when
    absent. Raises :class:`PushError` naming the field."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise PushError("malformed", f"{name} {value!r} is not a whole number")
    try:
        n = int(str(value).strip()[:12])
    except ValueError:
        raise PushError("malformed", f"{name} {str(value)[:40]!r} is not a whole number"
                        ) from None
    if not 0 <= n < 2**31:
        raise PushError("malformed", f"{name} {n} is out of range")
    return n
