"""Devices with their health (presence), and a device's readings over a time range
bucketed for charts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import AwareDatetime, BaseModel, Field

from hub.api.deps import AppContext, Ctx, Principal, Reader, check_scope, narrow_scope
from hub.clock import SystemClock
from hub.config import DeviceConfigEntry
from hub.sensing.thresholds import reading_thresholds
from hub.store import readings as rstore

router = APIRouter(prefix="/api/devices", tags=["devices"])

Health = Literal["online", "offline", "stale", "unknown"]
MAX_RANGE = timedelta(days=400)
MAX_POINTS = 2000


class DeviceOut(BaseModel):
    id: str
    kind: str
    grid: str
    building: str | None
    subject: str | None
    label: str
    x: float
    y: float
    health: Health = Field(description="online/offline from status messages; stale when "
                           "online but silent for more than 3 heartbeats")
    since: datetime | None
    last_seen: datetime | None
    reason: str | None
    heartbeat_s: float


class DeviceDetail(DeviceOut):
    latest: dict[str, tuple[datetime, float]] = Field(
        description="newest value of each metric: [ts, value]")
    thresholds: dict[str, list[float]] = Field(
        default_factory=dict, description="per metric the device reports, the limits "
        "the sensing rules raise an incident at (vitals ranges, battery low, weak link)")


class BucketOut(BaseModel):
    start: datetime
    count: int
    min: float
    max: float
    avg: float
    last: float


class SeriesOut(BaseModel):
    device_id: str
    since: datetime
    until: datetime
    bucket_s: float
    metrics: dict[str, list[BucketOut]]


def _health(pres: rstore.Presence | None, heartbeat_s: float, now: datetime,
            missed: int) -> Health:
    if pres is None or pres.state == "unknown":
        return "unknown"
    if pres.state == "offline":
        return "offline"
    if pres.last_seen is not None and now - pres.last_seen > timedelta(
            seconds=heartbeat_s * missed):
        return "stale"
    return "online"


def _out(ctx: AppContext, d: DeviceConfigEntry, pres: rstore.Presence | None,
         now: datetime) -> DeviceOut:
    return DeviceOut(
        id=d.id, kind=d.kind, grid=d.grid, building=d.building, subject=d.subject,
        label=d.location.label or d.id, x=d.location.x, y=d.location.y,
        health=_health(pres, d.heartbeat_s, now, ctx.site.rules.offline.missed_heartbeats),
        since=pres.since if pres else None, last_seen=pres.last_seen if pres else None,
        reason=pres.reason if pres else None, heartbeat_s=d.heartbeat_s,
    )


def _now(ctx: AppContext) -> datetime:
    if ctx.alerts is not None:
        return ctx.alerts.clock.now()  # type: ignore[no-any-return]
    return SystemClock().now()


@router.get("", response_model=list[DeviceOut], summary="Devices in my scope with health")
def list_devices(
    ctx: Ctx, p: Reader,
    grid: Annotated[str | None, Query(pattern=r"^\d{6,16}$")] = None,
    kind: Annotated[str | None, Query(max_length=20)] = None,
    health: Health | None = None,
) -> list[DeviceOut]:
    scope = narrow_scope(p, grid)
    devs = [d for d in ctx.site.devices if d.grid.startswith(scope)
            and (kind is None or d.kind == kind)]
    with ctx.pool.connection() as conn:
        pres = rstore.presence(conn, [d.id for d in devs])
    now = _now(ctx)
    out = [_out(ctx, d, pres.get(d.id), now) for d in devs]
    return [o for o in out if health is None or o.health == health]


def _device(ctx: AppContext, p: Principal, device_id: str) -> DeviceConfigEntry:
    d: DeviceConfigEntry | None = ctx.site.device(device_id)
    if d is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown device {device_id!r}")
    check_scope(p, d.grid, "device")
    return d


@router.get("/{device_id}", response_model=DeviceDetail,
            summary="One device: health and the newest value of each metric")
def get_device(device_id: str, ctx: Ctx, p: Reader) -> DeviceDetail:
    d = _device(ctx, p, device_id)
    with ctx.pool.connection() as conn:
        pres = rstore.presence(conn, [device_id]).get(device_id)
        latest = rstore.latest_readings(conn, device_id)
    base = _out(ctx, d, pres, _now(ctx))
    limits = reading_thresholds(ctx.site.rules, d.power)
    return DeviceDetail(**base.model_dump(), latest=latest,
                        thresholds={m: limits[m] for m in latest if m in limits})


@router.get("/{device_id}/readings", response_model=SeriesOut,
            summary="A device's readings over a time range, bucketed for charts",
            description="Each bucket holds count, min, max, avg and last value. Without "
            "`bucket_s` the range is cut into about `points` buckets.")
def readings(
    device_id: str, ctx: Ctx, p: Reader,
    since: AwareDatetime, until: AwareDatetime | None = None,
    metric: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,39}$")] = None,
    bucket_s: Annotated[float | None, Query(ge=1, le=86400 * 31)] = None,
    points: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 200,
) -> SeriesOut:
    _device(ctx, p, device_id)
    until = until or _now(ctx)
    if until <= since:
        raise HTTPException(422, "until must be after since")
    span = (until - since).total_seconds()
    if until - since > MAX_RANGE:
        raise HTTPException(422,
                            f"range longer than {MAX_RANGE.days} days")
    b = bucket_s or max(1.0, float(int(span / points) or 1))
    if span / b > MAX_POINTS * 5:
        raise HTTPException(422,
                            f"bucket_s {b} gives more than {MAX_POINTS * 5} buckets")
    with ctx.pool.connection() as conn:
        rows = rstore.readings_bucketed(conn, device_id, metric, since, until, b)
    series: dict[str, list[BucketOut]] = {}
    for r in rows:
        series.setdefault(r.metric, []).append(BucketOut(
            start=r.start, count=r.count, min=r.min, max=r.max, avg=r.avg, last=r.last))
    return SeriesOut(device_id=device_id, since=since, until=until, bucket_s=b, metrics=series)
