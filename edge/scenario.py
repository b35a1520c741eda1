"""Scripted scenarios for the simulated sensors (YAML).

Example::

    name: demo
    seed: 7
    start: null              # data time of t=0 (ISO 8601); default: when the agent starts
    duration: 10m            # span replayed by --fast-forward (default: last step + 5m)
    history:                 # published at start, fast-forwarded, ending at t=0
      - household: 3-2-501   # address or care-subject id
        hours: 12
        inactive_for: 11h59m # the resident stopped moving this long before t=0
    steps:
      - {at: +20s, action: sos, household: 2-1-302}
      - {at: +40s, action: smoke, device: smoke-6-3-601, for: 3m}
      - {at: "09:00", action: stop_moving, household: 3-2-501}
      - {at: +30s, action: offline, device: pir-10-2-402}
      - {at: +10s, action: vitals, household: 12-1-203, metric: heart_rate, value: 150, for: 3m}
      - {at: +50s, action: battery, device: door-12-1-203, value: 12}
      - {at: +60s, action: tamper, device: smoke-6-3-601, for: 2m}

``at`` is ``+<duration>`` after t=0, a local clock time ``HH:MM[:SS]`` (its next
occurrence at or after t=0, in the agent's timezone) or an ISO 8601 timestamp.
Durations are ``90``, ``90s``, ``2m``, ``1h30m``, ``1d``.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from edge.config import invalid_message, read_yaml

_DUR_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the bad key."""


def parse_duration(v: object) -> float:
    """Seconds in ``90``, ``"90s"``, ``"2m"``, ``"1h30m"``, ``"1d"``."""
    if isinstance(v, bool):
        raise ValueError(f"{v!r} is not a duration")
    if isinstance(v, int | float):
        if v < 0:
            raise ValueError(f"duration {v} is negative")
        return float(v)
    if not isinstance(v, str):
        raise ValueError(f"{v!r} is not a duration")
    s = v.strip().lower().replace(" ", "")
    try:
        return parse_duration(float(s))
    except ValueError:
        pass
    total, pos = 0.0, 0
    for m in _DUR_RE.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"{v!r} is not a duration like 90s, 2m, 1h30m")
    return total


Duration = Annotated[float, BeforeValidator(parse_duration)]

Action = Literal[
    "sos",          # SOS button pressed
    "smoke",        # smoke detector alarm (clears after ``for``, if given)
    "smoke_clear",
    "stop_moving",  # the resident stops moving (no motion, door or water) until resume
    "resume",
    "no_water",     # the household uses no water (for ``for``, else until resume)
    "offline",      # the device stops: connection dropped, the broker sends its Last Will
    "online",
    "fall",         # the wearable detects a fall
    "vitals",       # the wearable reports ``metric`` = ``value`` (for ``for``)
    "door",         # the door opens and closes
    "water_use",    # ``value`` litres drawn
    "battery",      # the device reports its battery at ``value`` % (from then on)
    "tamper",       # the device's case is opened (closed again after ``for``, if given)
    "tamper_clear",
    "leak",         # the leak sensor is wet (dry again after ``for``, if given)
    "leak_clear",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class HistorySpec(_Strict):
    household: str
    hours: float = Field(default=12.0, gt=0, le=24 * 14)
    inactive_for: Duration | None = None
    no_water_for: Duration | None = None


class Step(_Strict):
    at: str
    action: Action
    device: str | None = None
    household: str | None = None
    for_s: Duration | None = Field(default=None, alias="for")
    metric: str | None = None
    value: float | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _target(self) -> Step:
        if not self.device and not self.household:
            raise ValueError(f"step {self.action!r} at {self.at!r} needs a device or a household")
        if self.action == "vitals" and (self.metric is None or self.value is None):
            raise ValueError("a vitals step needs metric and value")
        if self.action == "water_use" and self.value is None:
            raise ValueError("a water_use step needs value (litres)")
        if self.action == "battery" and (self.value is None or not 0 <= self.value <= 100):
            raise ValueError("a battery step needs value, a percentage 0-100")
        return self


class Scenario(_Strict):
    name: str = ""
    seed: int | None = None
    start: datetime | None = None
    duration: Duration | None = None
    history: list[HistorySpec] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ats(self) -> Scenario:
        for i, s in enumerate(self.steps):
            try:
                _check_at(s.at)
            except ValueError as e:
                raise ValueError(f"steps.{i}.at: {e}") from None
        return self

    def span_s(self, start: datetime, tz: tzinfo) -> float:
        """How long --fast-forward replays: ``duration``, else the last step (and its
        ``for``) plus five minutes."""
        if self.duration is not None:
            return self.duration
        end = 0.0
        for s in self.steps:
            t = (resolve_at(s.at, start, tz) - start).total_seconds() + (s.for_s or 0)
            end = max(end, t)
        return end + 300


def _check_at(at: str) -> None:
    a = at.strip()
    if a.startswith("+"):
        parse_duration(a[1:])
    elif re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", a):
        time.fromisoformat(a if a.count(":") == 2 else a + ":00")
    else:
        d = datetime.fromisoformat(a)
        if d.tzinfo is None:
            raise ValueError(f"timestamp {at!r} needs a timezone")


def resolve_at(at: str, start: datetime, tz: tzinfo) -> datetime:
    a = at.strip()
    if a.startswith("+"):
        return start + timedelta(seconds=parse_duration(a[1:]))
    if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", a):
        clock = time.fromisoformat(a if a.count(":") == 2 else a + ":00")
        local = start.astimezone(tz)
        cand = datetime.combine(local.date(), clock, tzinfo=tz)
        if cand < local:
            cand = datetime.combine(local.date() + timedelta(days=1), clock, tzinfo=tz)
        return cand
    return datetime.fromisoformat(a)


def parse_scenario(raw: object, where: str = "<scenario>") -> Scenario:
    if not isinstance(raw, dict):
        raise ScenarioError(f"scenario {where} must be a mapping with keys steps, history, ...")
    try:
        return Scenario.model_validate(raw)
    except ValidationError as e:
        raise ScenarioError(invalid_message(e, f"scenario {where}")) from None


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    return parse_scenario(read_yaml(path, "scenario", ScenarioError), str(path))


def dump_scenario(sc: Scenario, path: str | Path) -> None:
    raw = sc.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    Path(path).write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True),
                          encoding="utf-8")
