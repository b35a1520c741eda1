"""``POST /api/cameras/{device_id}/events``: event pushes of cameras with their own AI.

A Hikvision camera's HTTP host (alarm server) or a Dahua camera's event push is
pointed here, one URL per camera. The route is public to the session guard
(``hub.api.guard.PUBLIC_PATTERNS``) and does its own authentication, per camera
(:mod:`hub.vendors.auth`), before it reads the body; the guard bounds the body
(``HUB_CAMERA_PUSH_MAX_BYTES``). Then:

1. the body is split into metadata and pictures and read in the camera's vendor's
   format (:mod:`hub.vendors`); what cannot be read is a 400 saying why;
2. each event of a type the site file maps (``camera.events``) is placed in its
   episode from the camera's open incidents (:mod:`hub.vendors.episodes`), and the
   first picture, once its header shows a size within ``HUB_PHOTO_MAX_PIXELS``, is
   saved as the evidence next to the camera's other snapshots;
3. the alarms are applied through the alert service's ``apply_now``: the incident
   transaction has committed before the camera gets its 200. A database that cannot
   be reached is a 503, so the camera sends again; nothing is held in memory.

Unknown cameras, unknown event types and refused pushes are counted
(``hub_camera_pushes_total{vendor, outcome}``) and logged, at most a few lines per
camera and reason a minute.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from datetime import UTC, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import cv2
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from starlette.concurrency import run_in_threadpool

from hub.api.files import storage_of
from hub.config import CameraEvents, DeviceConfigEntry, Settings
from hub.domain import Alarm, AlarmState
from hub.imaging import ImageRejected, decode_image
from hub.ingest.ratelog import RateLimitedLog
from hub.protocol import ID_PATTERN
from hub.store.incidents import Filters, list_incidents
from hub.vendors import PARSERS, auth, episodes
from hub.vendors.alarms import alarm, event_time, mapping_for
from hub.vendors.event import CameraEvent, PushError
from hub.vendors.push import split

log = logging.getLogger(__name__)
rlog = RateLimitedLog(log)

router = APIRouter(prefix="/api/cameras", tags=["camera events"])

PUSHES = Counter("hub_camera_pushes_total",
                 "Camera AI pushes and their events, by vendor and what became of them",
                 ["vendor", "outcome"])

OPEN_LOOKUP_LIMIT = 200  # open incidents of one camera read to find its episodes
_ID = re.compile(ID_PATTERN)


@cache
def _max_skew_s() -> float:
    # The same device-time bound as the ingest's (HUB_MAX_CLOCK_SKEW_S).
    return Settings().max_clock_skew_s


def _answer(status: int, detail: str, code: str,
            headers: list[tuple[str, str]] | None = None) -> JSONResponse:
    resp = JSONResponse({"detail": detail, "code": code}, status_code=status)
    for k, v in headers or ():
        resp.headers.append(k, v)
    return resp


def _note(device: str, vendor: str, outcome: str, msg: str, *, known: bool = True,
          **extra: Any) -> None:
    PUSHES.labels(vendor, outcome).inc()
    # One log window per camera of the site and outcome; unknown ids share one, so
    # requests naming made-up cameras cannot grow the limiter's table.
    key = f"{device}:{outcome}" if known else outcome
    rlog.warning(key, msg, extra={"device": device, "vendor": vendor, "outcome": outcome,
                                  **extra})


@router.post(
    "/{device_id}/events", summary="A camera's own AI event (Hikvision ISAPI, Dahua)",
    responses={400: {"description": "the push cannot be read"},
               401: {"description": "unknown camera or wrong credentials"},
               413: {"description": "the body is over HUB_CAMERA_PUSH_MAX_BYTES"},
               503: {"description": "the database is away; the camera should send again"}})
async def camera_push(device_id: str, request: Request) -> JSONResponse:
    ctx = request.app.state.ctx
    dev = ctx.site.device(device_id) if _ID.fullmatch(device_id) else None
    cfg: CameraEvents | None = dev.camera.events if dev and dev.camera else None
    if dev is None or cfg is None:
        _note(device_id[:64], "unknown", "unknown_camera",
              "push for a camera that takes no event pushes (not in the site file, or no"
              " camera.events)", known=False,
              ip=request.client.host if request.client else "")
        return _answer(401, "no camera of this site takes event pushes at this URL",
                       "unknown_camera")
    secret = auth.camera_secret(dev.id, os.environ)
    if secret is None:
        _note(dev.id, cfg.vendor, "no_secret",
              f"camera push refused: {auth.secret_variable(dev.id)} is not set")
        return _answer(401, "this camera has no push password configured on the hub",
                       "not_authenticated")
    # The digest's uri is the request target as sent, before any decoding.
    raw = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    target = (raw + (b"?" + query if query else b"")).decode("latin-1")
    verdict = auth.verify(request.headers.get("authorization"), scheme=cfg.auth,
                          username=cfg.username, secret=secret, device_id=dev.id,
                          method=request.method, target=target, now=time.time())
    if not verdict.ok:
        if verdict.reason == "no_credentials":
            # The first leg of every digest exchange: counted, not logged.
            PUSHES.labels(cfg.vendor, "challenged").inc()
        else:
            _note(dev.id, cfg.vendor, f"auth_{verdict.reason}", "camera push refused",
                  detail=verdict.detail,
                  ip=request.client.host if request.client else "")
        return _answer(401, verdict.detail, "not_authenticated",
                       [("WWW-Authenticate", c) for c in verdict.challenge])
    body = await request.body()
    received = ctx.alerts.clock.now() if ctx.alerts is not None else datetime.now(UTC)
    try:
        return await run_in_threadpool(_handle, ctx, dev, cfg, request.headers.get(
            "content-type", ""), body, received)
    except PushError as e:
        _note(dev.id, cfg.vendor, e.reason, "camera push cannot be read", detail=e.detail)
        return _answer(400, f"the push cannot be read: {e.detail}", f"push_{e.reason}")


def _handle(ctx: Any, dev: DeviceConfigEntry, cfg: CameraEvents, content_type: str,
            body: bytes, received: datetime) -> JSONResponse:
    local = ZoneInfo(ctx.site.site.timezone)
    push = split(content_type, body)
    events = PARSERS[cfg.vendor](push.metadata, local)
    if ctx.alerts is None:
        return _answer(503, "this hub process does not apply alarms", "unavailable")
    registry = ctx.site.registry
    skew = _max_skew_s()
    alarms: list[Alarm] = []
    ignored: list[dict[str, str]] = []
    image: str | None = None
    image_done = False
    try:
        with ctx.pool.connection() as conn:
            rows, _ = list_incidents(conn, Filters(state=["open"], device_id=dev.id),
                                     limit=OPEN_LOOKUP_LIMIT)
    except Exception:  # noqa: BLE001 - the database is away: the camera sends again
        log.warning("camera push not taken: database unavailable", extra={"device": dev.id})
        return _answer(503, "the hub's database is unavailable; send again", "unavailable")
    open_eps = [episodes.OpenEpisode(i.dedup_key, i.firing, i.last_alarm_ts or i.opened_at)
                for i in rows]
    for ev in events:
        why = _skip(dev, cfg, ev, registry)
        if why is not None:
            ignored.append({"event_type": ev.event_type[:64], "reason": why})
            continue
        mapping = mapping_for(cfg, ev.event_type)
        assert mapping is not None
        when = event_time(ev, received, skew)
        steps = episodes.decide(episodes.prefix(ev.vendor, dev.id, ev.channel, ev.event_type),
                                ev.active, when.ts, open_eps, cfg.quiet_s)
        if not steps:
            PUSHES.labels(cfg.vendor, "ended_nothing_open").inc()
            ignored.append({"event_type": ev.event_type[:64], "reason": "nothing going on"})
            continue
        if ev.active and not image_done:
            image_done = True
            image = _save_snapshot(ctx, dev.id, push.images, when.ts)
        for s in steps:
            alarms.append(alarm(s, ev, mapping, dev, registry, when, image))
            open_eps = [e for e in open_eps if e.dedup_key != s.dedup_key]
            open_eps.append(episodes.OpenEpisode(s.dedup_key, s.state is AlarmState.FIRING, s.ts))
    incidents: list[int] = []
    duplicates = 0
    if alarms:
        try:
            results = ctx.alerts.apply_now(alarms)
        except Exception:  # noqa: BLE001 - nothing committed: the camera sends again
            log.warning("camera push not taken: database unavailable",
                        extra={"device": dev.id, "alarms": len(alarms)})
            return _answer(503, "the hub's database is unavailable; send again", "unavailable")
        errors = 0
        for r in results:
            if r.duplicate:
                duplicates += 1
            elif r.error is not None:
                errors += 1  # the store logged it with the alarm's key
            if r.incident is not None and r.incident.id is not None:
                incidents.append(int(r.incident.id))
        for outcome, n in (("applied", len(results) - duplicates - errors),
                           ("duplicate", duplicates), ("apply_error", errors)):
            if n:
                PUSHES.labels(cfg.vendor, outcome).inc(n)
        log.info("camera event applied", extra={
            "device": dev.id, "vendor": cfg.vendor, "alarms": len(alarms),
            "duplicates": duplicates, "incidents": incidents,
            "event_types": sorted({e.event_type[:64] for e in events})})
    return JSONResponse({"alarms": len(alarms), "duplicates": duplicates,
                         "incidents": sorted(set(incidents)), "ignored": ignored})


def _skip(dev: DeviceConfigEntry, cfg: CameraEvents, ev: CameraEvent, registry: Any) -> str | None:
    """Why an event becomes no alarm (counted and, where it is news, logged), or None."""
    if cfg.channel is not None and ev.channel is not None and ev.channel != cfg.channel:
        _note(dev.id, cfg.vendor, "other_channel", "camera event of another channel ignored",
              event_type=ev.event_type[:64], channel=ev.channel)
        return f"channel {ev.channel} is not this camera's ({cfg.channel})"
    mapping = mapping_for(cfg, ev.event_type)
    if mapping is None:
        if not ev.active:
            # Hikvision sends "videoloss inactive" as its heartbeat: an unmapped end is
            # counted, not logged.
            PUSHES.labels(cfg.vendor, "unmapped_inactive").inc()
        else:
            _note(dev.id, cfg.vendor, "unknown_event_type",
                  "camera event type not mapped in the site file (camera.events)",
                  event_type=ev.event_type[:64])
        return "event type not mapped in the site file"
    if mapping.category not in registry:
        _note(dev.id, cfg.vendor, "unknown_category",
              "camera event mapped to a category that is not registered",
              event_type=ev.event_type[:64], category=mapping.category)
        return f"category {mapping.category} is not registered"
    return None


def _save_snapshot(ctx: Any, device_id: str, images: list[bytes], ts: datetime) -> str | None:
    """The push's first picture as evidence (its header checked before any decode), as
    a path relative to the data directory; None when there is none or it is refused."""
    if not images:
        return None
    data = images[0]
    try:
        img, hdr = decode_image(data, source="camera_push",
                                max_pixels=ctx.limits.photo_max_pixels, reduce_to=640)
    except ImageRejected as e:
        rlog.warning(f"{device_id}:snapshot", "camera snapshot refused", extra={
            "device": device_id, "reason": e.reason, "detail": e.detail})
        return None
    if hdr.format != "jpeg":
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            return None
        data = enc.tobytes()
    digest = hashlib.sha256(data).hexdigest()[:12]
    name = f"camera-ai-{ts.astimezone(UTC):%Y%m%dT%H%M%S}-{digest}.jpg"
    rel = f"evidence/{device_id}/{name}"
    store = storage_of(ctx.data_dir)
    # Named by its content: a push repeated with the same picture keeps the one file.
    if store.size(rel) is None:
        store.put(rel, data)
    return rel
