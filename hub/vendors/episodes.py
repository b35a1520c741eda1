"""Which episode a camera's push belongs to, so a repeat never opens a second incident.

A camera repeats an event while it lasts (Hikvision pushes an active event again and
again, ``activePostCount`` counting up) and may send the same push twice. An
*episode* is one stretch of an event type on one camera channel: it starts with an
active push when none is going on, goes on while active pushes come at most
``quiet_s`` apart, and ends with an inactive push (Hikvision ``inactive``, Dahua
``Stop``) or when the camera has been quiet for ``quiet_s``. Its dedup key names the
camera, channel, event type and the episode's first time, so every push of the
episode updates one incident and a new episode opens a new one.

What is going on is read from the open incidents (the database), not from memory: a
restarted API process, or another replica, carries on the same episode. Pure: the
open incidents and the push's time in, the alarms to raise out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hub.domain import AlarmState


@dataclass(frozen=True, slots=True)
class OpenEpisode:
    """An open incident of this camera's event type: its dedup key, whether its
    alarm is firing, and the data time of its latest alarm."""

    dedup_key: str
    firing: bool
    last_ts: datetime


@dataclass(frozen=True, slots=True)
class Step:
    """One alarm to raise: its dedup key, state and data time."""

    dedup_key: str
    state: AlarmState
    ts: datetime


def prefix(vendor: str, device_id: str, channel: int | None, event_type: str) -> str:
    """The dedup key of every episode of one event type on one camera channel,
    without the episode."""
    return f"{vendor}:{device_id}:{channel if channel is not None else 0}:{event_type.lower()}"


def episode_key(key_prefix: str, start: datetime) -> str:
    return f"{key_prefix}:{start.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def decide(key_prefix: str, active: bool, ts: datetime, open_episodes: Sequence[OpenEpisode],
           quiet_s: float) -> list[Step]:
    """The alarms one push raises. ``open_episodes``: the open incidents whose key
    starts with ``key_prefix`` (others are ignored)."""
    mine = [e for e in open_episodes if e.dedup_key.startswith(key_prefix + ":")]
    current = max(mine, key=lambda e: e.last_ts, default=None)
    quiet = timedelta(seconds=quiet_s)
    if not active:
        # An end with nothing going on says nothing (Hikvision's "videoloss inactive"
        # is its heartbeat).
        if current is None or not current.firing:
            return []
        return [Step(current.dedup_key, AlarmState.CLEARED, ts)]
    if current is not None and current.firing and ts - current.last_ts <= quiet:
        return [Step(current.dedup_key, AlarmState.FIRING, ts)]
    steps = []
    if current is not None and current.firing:
        # It went quiet without an end: it ended quiet_s after its last push.
        steps.append(Step(current.dedup_key, AlarmState.CLEARED, current.last_ts + quiet))
    steps.append(Step(episode_key(key_prefix, ts), AlarmState.FIRING, ts))
    return steps
