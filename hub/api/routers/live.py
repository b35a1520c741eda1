"""Live view, the video wall and the fire lane's empty-lane reference.

* ``GET /live``: the video-wall page (``static/live.html``); ``/live#cam=ID`` opens
  one camera.
* ``GET /api/live/cameras``: the cameras the caller may watch, with their zones, how
  many watch them, and their open incidents (``firing``: an alarm of the camera is
  firing now), for the wall's red frames.
* ``GET /api/live/{camera}/mjpeg``: the camera's live picture as MJPEG
  (``multipart/x-mixed-replace``), at most ``fps`` frames a second, bounded viewers
  per camera and per user (429 ``camera_full`` / ``user_full``).
* ``GET /api/live/{camera}/references`` and ``.../references/{zone}.png``: the
  empty-lane reference of each fire-lane zone (the grey image the detector compares
  with) and when it was taken.
* ``POST /api/live/{camera}/rebaseline`` (operators and admins): "this is the empty
  lane now". The request goes to the vision worker that owns the camera over MQTT
  (:class:`hub.protocol.RebaselineRequest`); the route waits up to ``CONFIRM_S`` for
  the renewed reference to appear in the data directory (the worker and the API share
  it, as for evidence), records the action in the device audit trail and says whether
  the worker confirmed it.

Access is the evidence image's: the camera's grid inside the caller's scope (403
otherwise), any role may watch, only operators and admins renew a reference.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from hub import protocol
from hub.api import auth
from hub.api.deps import Ctx, Principal, Reader, check_scope, require
from hub.api.files import file_inside
from hub.api.liveview import LiveRefused, LiveView, frames
from hub.api.routers.console import SECURITY_HEADERS, STATIC
from hub.config import DeviceConfigEntry
from hub.protocol import RebaselineRequest
from hub.store import device_audit

log = logging.getLogger(__name__)

router = APIRouter(tags=["live"])
BOUNDARY = "hubframe"
CONFIRM_S = 5.0  # how long the renewal waits for the vision worker's new reference
REFERENCES = "references"  # under the data directory (hub.vision.worker)

Renewer = Annotated[Principal, Depends(require("admin", "operator"))]


class ZoneOut(BaseModel):
    name: str
    kind: str
    polygon: list[tuple[float, float]]


class LiveIncident(BaseModel):
    id: int
    category: str
    state: str
    firing: bool
    title: str


class LiveCamera(BaseModel):
    id: str
    label: str
    grid: str
    zones: list[ZoneOut]
    watchers: int = Field(description="live viewers of this camera in this API process")
    firing: bool = Field(description="an open incident of this camera is firing now")
    incidents: list[LiveIncident] = Field(description="its open incidents")
    fire_lane: bool = Field(description="it has fire-lane zones (an empty-lane reference)")


class ReferenceOut(BaseModel):
    zone: str
    captured_at: datetime | None
    url: str


class RebaselineOut(BaseModel):
    camera: str
    request_id: str
    confirmed: bool = Field(description="the vision worker saved the new reference "
                            f"within {CONFIRM_S:g} s")
    references: list[ReferenceOut]


def _live(ctx: Any) -> LiveView:
    live = ctx.extra.get("live")
    if live is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "live view needs the hub's MQTT connection (run the api role "
                            "in a hub node)", headers={"X-Error-Code": "live_unavailable"})
    return live  # type: ignore[no-any-return]


def _camera(ctx: Any, p: Principal, camera: str) -> DeviceConfigEntry:
    d = ctx.site.device(camera)
    if d is None or d.kind != "camera" or d.camera is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no camera {camera!r}",
                            headers={"X-Error-Code": "unknown_camera"})
    check_scope(p, d.grid, "camera")
    return d  # type: ignore[no-any-return]


@router.get("/live", include_in_schema=False)
def live_page() -> FileResponse:
    return FileResponse(STATIC / "live.html", headers=SECURITY_HEADERS)


@router.get("/api/live/cameras", response_model=list[LiveCamera],
            summary="Cameras the caller may watch, with zones and open incidents")
def cameras(ctx: Ctx, p: Reader) -> list[LiveCamera]:
    live = ctx.extra.get("live")
    cams = [d for d in ctx.site.devices
            if d.kind == "camera" and d.camera is not None and p.sees(d.grid)]
    open_by: dict[str, list[LiveIncident]] = {d.id: [] for d in cams}
    if cams:
        with ctx.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, device_id, category, state, firing, title FROM incidents"
                " WHERE device_id = ANY(%s) AND state NOT IN ('cancelled', 'closed')"
                " ORDER BY id DESC LIMIT 500", ([d.id for d in cams],)).fetchall()
        for r in rows:
            open_by[r[1]].append(LiveIncident(id=r[0], category=r[2], state=r[3],
                                              firing=r[4], title=r[5]))
    out = []
    for d in cams:
        zones = [ZoneOut(name=z.name, kind=z.kind, polygon=list(z.polygon))
                 for z in d.camera.zones]
        incs = open_by[d.id]
        out.append(LiveCamera(
            id=d.id, label=d.location.label or d.id, grid=d.grid, zones=zones,
            watchers=live.watchers(d.id) if live is not None else 0,
            firing=any(i.firing for i in incs), incidents=incs,
            fire_lane=any(z.kind == "fire_lane" for z in d.camera.zones)))
    return out


@router.get("/api/live/{camera}/mjpeg", response_class=StreamingResponse,
            responses={200: {"content": {f"multipart/x-mixed-replace; boundary={BOUNDARY}": {}}},
                       429: {"description": "too many viewers (camera_full, user_full)"}},
            summary="The camera's live picture (MJPEG)")
async def mjpeg(camera: str, request: Request, ctx: Ctx, p: Reader) -> StreamingResponse:
    _camera(ctx, p, camera)
    live = _live(ctx)
    try:
        viewer = live.open(camera, p.user_id, asyncio.get_running_loop())
    except LiveRefused as e:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, e.detail,
                            headers={"X-Error-Code": e.code, "Retry-After": "10"}) from None
    # The body's own finally closes the viewer; the background task also does when the
    # browser went before the body started (a generator never started never finishes).
    return StreamingResponse(
        frames(live, viewer, BOUNDARY), background=BackgroundTask(live.close, viewer),
        media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no",
                 "X-Content-Type-Options": "nosniff"})


def _references(ctx: Any, d: DeviceConfigEntry) -> list[ReferenceOut]:
    assert d.camera is not None
    root = Path(ctx.data_dir) / REFERENCES
    out = []
    for z in d.camera.zones:
        if z.kind != "fire_lane":
            continue
        at = None
        meta = file_inside(root, f"{d.id}/{z.name}.json")
        if meta is not None:
            try:
                at = datetime.fromisoformat(json.loads(meta.read_text())["captured_at"])
            except (OSError, ValueError, KeyError, TypeError):
                at = None
        stamp = int(at.timestamp()) if at else 0
        out.append(ReferenceOut(zone=z.name, captured_at=at,
                                url=f"/api/live/{d.id}/references/{z.name}.png?v={stamp}"))
    return out


@router.get("/api/live/{camera}/references", response_model=list[ReferenceOut],
            summary="The empty-lane reference of each fire-lane zone of the camera")
def references(camera: str, ctx: Ctx, p: Reader) -> list[ReferenceOut]:
    return _references(ctx, _camera(ctx, p, camera))


@router.get("/api/live/{camera}/references/{zone}.png", response_class=FileResponse,
            summary="A zone's empty-lane reference (grey PNG, the detector's work size)")
def reference_image(camera: str, zone: str, ctx: Ctx, p: Reader) -> FileResponse:
    d = _camera(ctx, p, camera)
    assert d.camera is not None
    if zone not in {z.name for z in d.camera.zones if z.kind == "fire_lane"}:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"camera {camera} has no fire-lane"
                            f" zone {zone!r}", headers={"X-Error-Code": "unknown_zone"})
    f = file_inside(Path(ctx.data_dir) / REFERENCES, f"{d.id}/{zone}.png")
    if f is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no reference taken yet (the vision"
                            " worker takes one from the camera's first frame)",
                            headers={"X-Error-Code": "no_reference"})
    return FileResponse(f, media_type="image/png", headers={"Cache-Control": "no-cache"})


@router.post("/api/live/{camera}/rebaseline", response_model=RebaselineOut,
             summary="Operator: the camera's current view is the empty fire lane now")
async def rebaseline(camera: str, request: Request, ctx: Ctx, p: Renewer) -> RebaselineOut:
    d = _camera(ctx, p, camera)
    live = _live(ctx)
    before = {r.zone: r.captured_at for r in _references(ctx, d)}
    if not before:
        raise HTTPException(status.HTTP_409_CONFLICT, f"camera {camera} has no fire-lane"
                            " zone", headers={"X-Error-Code": "no_fire_lane"})
    now = auth.config(request).clock()
    req = RebaselineRequest(device=camera, request_id=uuid.uuid4().hex, by=p.user_id, ts=now)
    info = live.mqtt.publish(protocol.control_topic(ctx.site.site.id, camera, "rebaseline"),
                             protocol.encode(req), qos=1, by="live")
    try:
        await asyncio.to_thread(info.wait_for_publish, 5.0)
    except (RuntimeError, ValueError):
        pass
    if not info.is_published():
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the broker did not take"
                            " the request; try again", headers={"X-Error-Code": "broker_down"})
    deadline = time.monotonic() + CONFIRM_S
    refs = _references(ctx, d)
    while time.monotonic() < deadline:
        refs = _references(ctx, d)
        if all(r.captured_at is not None and r.captured_at != before[r.zone] for r in refs):
            break
        await asyncio.sleep(0.2)
    confirmed = all(r.captured_at is not None and r.captured_at != before[r.zone]
                    for r in refs)
    entry = device_audit.DeviceAuditEntry(
        device_id=camera, at=now, actor=p.user_id, action="rebaseline",
        data={"request_id": req.request_id, "confirmed": confirmed,
              "zones": [r.zone for r in refs],
              "captured_at": {r.zone: r.captured_at.isoformat() if r.captured_at else None
                              for r in refs}},
        source=auth.client_ip(request))
    await asyncio.to_thread(_record, ctx, entry)
    log.info("empty-lane renewal", extra={"device": camera, "by": p.user_id,
                                          "request_id": req.request_id,
                                          "confirmed": confirmed})
    return RebaselineOut(camera=camera, request_id=req.request_id, confirmed=confirmed,
                         references=refs)


def _record(ctx: Any, entry: device_audit.DeviceAuditEntry) -> None:
    with ctx.pool.connection() as conn:
        device_audit.record(conn, entry)


class AuditOut(BaseModel):
    at: datetime
    actor: str
    action: str
    data: dict[str, Any]


@router.get("/api/live/{camera}/audit", response_model=list[AuditOut],
            summary="What people did to the camera (empty-lane renewals), newest first")
def audit(camera: str, ctx: Ctx, p: Reader) -> list[AuditOut]:
    _camera(ctx, p, camera)
    with ctx.pool.connection() as conn:
        rows = device_audit.for_device(conn, camera)
    return [AuditOut(at=r.at, actor=r.actor, action=r.action, data=r.data) for r in rows]
