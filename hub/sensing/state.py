"""The sensing engine's memory, as plain data that round-trips through JSON so the
adapter can persist it (``SensingEngine.snapshot()`` / ``restore()``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any


def _enc(v: Any) -> Any:
    if isinstance(v, datetime):
        return {"$dt": v.isoformat()}
    if isinstance(v, list | tuple):
        return [_enc(x) for x in v]
    if isinstance(v, dict):
        return {k: _enc(x) for k, x in v.items()}
    return v


def _dec(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"$dt"}:
            return datetime.fromisoformat(v["$dt"])
        return {k: _dec(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_dec(x) for x in v]
    return v


class _Jsonable:
    def to_json(self) -> dict[str, Any]:
        return {f.name: _enc(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, d: dict[str, Any]):  # noqa: ANN206 - returns cls
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: _dec(v) for k, v in d.items() if k in names})


@dataclass(slots=True)
class DeviceState(_Jsonable):
    last_seen: datetime | None = None  # newest data time from the device
    # When the hub last received anything from it (hub time). Liveness is judged on
    # this: a device replaying hours of spooled data is alive although its data is old.
    last_heard: datetime | None = None
    offline: bool = False
    offline_since: datetime | None = None
    offline_reason: str | None = None  # "heartbeat" | "status"
    # An offline Status (a Will or a clean shutdown) starts a grace of one heartbeat
    # period: a device that reconnects at once (a hub restart, a flapping link, the
    # stale retained status of its previous session) raises no maintenance incident.
    disconnected_since: datetime | None = None
    disconnect_reason: str | None = None
    disconnect_heard: datetime | None = None  # hub time the offline Status arrived
    # (ts, seq) of the latest Status applied: statuses are ordered by it, so a Last
    # Will from an earlier connection delivered late changes nothing.
    status_ts: datetime | None = None
    status_seq: int = -1
    back_online_at: datetime | None = None
    meter_total: float | None = None  # last cumulative water meter reading
    flow_events: bool = False  # sends water_flow events (so meter deltas are not counted twice)
    smoke: bool = False


@dataclass(slots=True)
class SubjectState(_Jsonable):
    baseline: datetime | None = None  # first data from the household: monitoring starts
    last_activity: datetime | None = None
    last_activity_device: str | None = None
    inactive: bool = False  # inactivity alarm firing
    inactive_since: datetime | None = None
    resume_after: datetime | None = None  # grace after an activity sensor came back
    last_water: datetime | None = None
    water_none: bool = False
    water_log: list[list[Any]] = field(default_factory=list)  # [[ts, litres], ...]
    water_excess: bool = False


@dataclass(slots=True)
class VitalsState(_Jsonable):
    out_run: int = 0
    in_run: int = 0
    firing: bool = False
    recent: list[float] = field(default_factory=list)  # the latest out-of-range values
