"""What a household's sensors, taken together, can vouch for (the rules that judge a
resident's silence read these: inactivity, no water)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from hub.sensing.base import SensingContext

# Their silence is the resident's: a household is judged quiet on what these see.
ACTIVITY_SENSORS = frozenset({"pir", "door", "water"})


def data_now(ctx: SensingContext, subject_id: str, now: datetime) -> datetime | None:
    """How far the household's own data vouches for time having passed.

    Deadlines are judged on data time, not on the hub's clock alone: while a spool
    or a recording replays hours of a household's past, its newest data is hours old
    and its deadlines must not fire yet. Heartbeats keep a live household's data
    time within one offline period of now; a household whose sensors fall silent is
    covered by their offline alarms instead.
    """
    newest: datetime | None = None
    slack = timedelta(0)
    for d in ctx.household(subject_id):
        seen = ctx.presence.last_seen(d.id)
        if seen is not None:
            newest = seen if newest is None else max(newest, seen)
        slack = max(slack, ctx.presence.offline_after(d))
    return None if newest is None else min(now, newest + slack)


def down_sensors(ctx: SensingContext, subject_id: str, kinds: Iterable[str]) -> list[str]:
    """The household's sensors of these kinds that are offline or disconnected."""
    kinds = set(kinds)
    return [d.id for d in ctx.household(subject_id)
            if d.kind in kinds and ctx.presence.is_down(d.id)]


def resume_after(ctx: SensingContext, subject_id: str) -> datetime | None:
    """Until when the household is not judged quiet because an activity sensor came
    back: the spool gets time to replay what the sensor saw while it was away."""
    out: datetime | None = None
    for d in ctx.household(subject_id):
        back = ctx.presence.back_online_at(d.id) if d.kind in ACTIVITY_SENSORS else None
        if back is not None:
            grace = back + ctx.presence.replay_grace(d)
            out = grace if out is None else max(out, grace)
    return out


def heard_from(ctx: SensingContext, subject_id: str, kind: str) -> bool:
    """The household has a sensor of this kind that the hub has heard from."""
    return any(d.kind == kind and ctx.presence.known(d.id) for d in ctx.household(subject_id))
