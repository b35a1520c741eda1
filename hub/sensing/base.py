"""The boundary between the sensing host and its rules.

A sensing rule is one family of non-visual rules (SOS, smoke, inactivity, ...). It
takes the validated wire messages of the devices it cares about, each with the
data's own timestamp, and a ``tick(now)`` for deadlines; it returns
:class:`~hub.domain.Alarm` s; and it keeps its memory as plain JSON so the host can
save and restore it. Rules do no I/O and read no wall clock.

The host (:class:`hub.sensing.engine.SensingEngine`) owns what every rule shares:
which device is whose (the site file), device presence (when a device was last seen
and heard, whether it is offline: :class:`Presence`), the bound on device times, and
containment, so one rule, device or household that raises cannot stop the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar, runtime_checkable
from zoneinfo import ZoneInfo

from hub.config import CareSubject, DeviceConfigEntry, Rules, Site
from hub.domain import Alarm, AlarmState, Category, Severity
from hub.protocol import TS_FLOOR, Message

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message for the rules: the message, its device and the device's care
    subject from the site file, and when the hub received it (hub time; the
    message's own ``ts`` for a replay)."""

    msg: Message
    device: DeviceConfigEntry
    subject: CareSubject | None
    heard: datetime

    @property
    def ts(self) -> datetime:
        return self.msg.ts


@dataclass(frozen=True, slots=True)
class Repair:
    """Fields of a rule's state that held an impossible time and were dropped."""

    scope: str  # "device" or "subject"
    ident: str
    fields: tuple[str, ...]


class Presence(Protocol):
    """What the rules may ask about a device's liveness (the offline rule keeps it)."""

    def known(self, device_id: str) -> bool:
        """The hub has heard from the device (or watches it although unseen)."""
        ...

    def last_seen(self, device_id: str) -> datetime | None:
        """The newest data time from the device."""
        ...

    def is_down(self, device_id: str) -> bool:
        """Offline, or disconnected and inside the grace before offline."""
        ...

    def back_online_at(self, device_id: str) -> datetime | None: ...

    def offline_after(self, dev: DeviceConfigEntry) -> timedelta:
        """How long a silent device may stay silent before it is offline."""
        ...

    def replay_grace(self, dev: DeviceConfigEntry) -> timedelta:
        """How long after coming back a device may replay what it saw while away."""
        ...


class SensingContext(Protocol):
    """What the host gives its rules."""

    site: Site
    tz: ZoneInfo
    watch_unseen: bool
    started: datetime | None  # the earliest data time the host has seen

    @property
    def presence(self) -> Presence: ...

    @property
    def rules(self) -> Rules: ...

    def household(self, subject_id: str) -> Sequence[DeviceConfigEntry]: ...

    def contained(self, scope: str, ident: str, now: datetime,
                  check: Callable[..., list[_T]], *args: Any) -> list[_T]:
        """``check(*args)``, or nothing when it raises: the failure is logged naming
        the device or household, counted, and the others' checks still run."""
        ...

    def report(self, kind: str, device_id: str, msg: str, **extra: Any) -> None:
        """Bad input from a device that a rule ignores (a battery of 250 %): logged
        with the device (rate-limited), counted by ``kind``."""
        ...

    def device_problems(self, device_id: str) -> list[str]:
        """The device-health categories open for the device now (every rule that
        is a :class:`DeviceProblems` is asked)."""
        ...


@runtime_checkable
class SensingRule(Protocol):
    """One family of sensor rules, hosted by the sensing engine.

    ``name`` names the rule's section of the saved state. ``on_message`` sees every
    message of a device the site file knows, Status included, after the host has
    checked its time; ``tick(now)`` runs the rule's deadlines; ``snapshot`` and
    ``restore`` round-trip the rule's memory through JSON; ``repair(limit)`` drops
    every time in it that is later than ``limit`` or before ``TS_FLOOR`` (no device
    can have sent it) and says what it dropped."""

    name: str

    def on_message(self, m: Incoming) -> list[Alarm]: ...

    def tick(self, now: datetime) -> list[Alarm]: ...

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...

    def repair(self, limit: datetime, now: datetime) -> list[Repair]: ...


@runtime_checkable
class DeviceProblems(Protocol):
    """A rule that knows when a device itself is faulty (a low battery, a weak link,
    an opened case): the care rules qualify what such a device did not see."""

    def device_problems(self, device_id: str) -> list[str]:
        """The categories of this rule's problems open for the device now."""
        ...


class RuleBase:
    """Defaults for a rule that needs no deadline or no memory."""

    name = ""

    def __init__(self, ctx: SensingContext) -> None:
        self.ctx = ctx

    def on_message(self, m: Incoming) -> list[Alarm]:
        return []

    def tick(self, now: datetime) -> list[Alarm]:
        return []

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        return None

    def repair(self, limit: datetime, now: datetime) -> list[Repair]:
        return []


# ------------------------------------------------------------------ shared helpers


def label(dev: DeviceConfigEntry | None, subject: CareSubject | None) -> str:
    """How a title names the place: the household, else the device's location."""
    if subject is not None:
        return f"{subject.address} {subject.name}"
    if dev is not None:
        return dev.location.label or dev.id
    return "?"


def make_alarm(
    site: Site,
    rule: str,
    cat: Category,
    key: str,
    ts: datetime,
    title: str,
    dev: DeviceConfigEntry | None,
    subject: CareSubject | None,
    firing: bool = True,
    severity: Severity | None = None,
    **evidence: Any,
) -> Alarm:
    grid = subject.grid if subject is not None else (dev.grid if dev else None)
    return Alarm(
        rule=rule,
        category=cat,
        severity=severity or site.category(cat).severity,
        state=AlarmState.FIRING if firing else AlarmState.CLEARED,
        dedup_key=key,
        ts=ts,
        title=title,
        grid_code=grid,
        device_id=dev.id if dev else None,
        subject_id=subject.id if subject else None,
        evidence=evidence,
    )


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def scalars(data: dict[str, Any]) -> dict[str, Any]:
    """Event data worth keeping as evidence (small scalars only)."""
    return {
        k: v for k, v in list(data.items())[:10]
        if isinstance(v, str | int | float | bool) and (not isinstance(v, str) or len(v) <= 200)
    }


def drop_impossible(state: Any, limit: datetime) -> list[str]:
    """Set each datetime field of the dataclass ``state`` later than ``limit`` or
    before the floor to None; returns the names of those fields."""
    dropped = []
    for f in fields(state):
        v = getattr(state, f.name)
        if isinstance(v, datetime) and not TS_FLOOR <= v <= limit:
            setattr(state, f.name, None)
            dropped.append(f.name)
    return dropped


def repair_states(scope: str, states: dict[str, Any], limit: datetime) -> list[Repair]:
    """:func:`drop_impossible` over a rule's per-device or per-household states."""
    out = []
    for ident, st in states.items():
        dropped = drop_impossible(st, limit)
        if dropped:
            out.append(Repair(scope, ident, tuple(dropped)))
    return out
