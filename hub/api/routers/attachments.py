"""Photos a grid worker takes when handling an incident.

An upload is decoded and re-encoded as JPEG (at most 1600 px on its long side):
that proves it is an image, bounds its size, and drops EXIF metadata such as the
phone's GPS track. The handle transition then names the attachment ids in its
``data``, which links the photo into the incident's audit trail.

Decoding goes through :func:`hub.imaging.decode_image`: the width and height in the
file's header are checked against ``photo_max_pixels`` before anything is decoded,
so a few-kilobyte file claiming 20000x20000 is a 413, not 1.2 GB and 14 s of a worker.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Annotated, Any

import cv2
from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile, status
from fastapi.responses import FileResponse
from prometheus_client import Counter
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from hub import imaging
from hub.api import auth
from hub.api.files import storage_of, stored_file
from hub.api.limits import RequestLimits

log = logging.getLogger(__name__)

router = APIRouter(tags=["attachments"])

Me = Annotated[auth.UserPrincipal, Depends(auth.get_principal)]

MAX_SIDE = 1600
PHOTO_FORMATS = frozenset({"jpeg", "png", "webp"})
TOO_LARGE = 413  # Starlette renamed its constant; the number is the contract
REJECTED = Counter("hub_attachments_rejected_total", "Photo uploads refused", ["reason"])


class AttachmentOut(BaseModel):
    id: int
    incident_id: int
    url: str
    content_type: str
    size_bytes: int


def _incident(request: Request, incident_id: int) -> dict[str, Any]:
    with auth.pool(request).connection() as conn:
        row = conn.execute("SELECT grid_code, assignee FROM incidents WHERE id = %s",
                           (incident_id,)).fetchone()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such incident")
    return {"grid_code": row[0], "assignee": row[1]}


def _limits(request: Request) -> RequestLimits:
    return getattr(request.app.state.ctx, "limits", None) or RequestLimits()


def _reencode(raw: bytes, max_pixels: int, who: dict[str, Any]) -> bytes:
    try:
        img, _ = imaging.decode_image(raw, source="photo", max_pixels=max_pixels,
                                      formats=PHOTO_FORMATS, reduce_to=MAX_SIDE)
    except imaging.ImageRejected as e:
        REJECTED.labels("too_many_pixels" if e.reason == "too_large" else "not_image").inc()
        log.warning("photo refused", extra={**who, "reason": e.reason, "detail": e.detail})
        if e.reason == "too_large":
            raise HTTPException(TOO_LARGE,
                                f"{e.detail}; photos are limited to {max_pixels} pixels",
                                headers={"X-Error-Code": "image_too_large"}) from None
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            "the file is not a JPEG/PNG/WebP image",
                            headers={"X-Error-Code": "not_image"}) from None
    h, w = img.shape[:2]
    scale = MAX_SIDE / max(h, w)
    if scale < 1:
        img = cv2.resize(img, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the image could not be encoded")
    return buf.tobytes()


@router.post("/api/incidents/{incident_id}/attachments", response_model=AttachmentOut,
             status_code=201, summary="Upload a photo for an incident (handling evidence)",
             responses={400: {"description": "not an image"}, 413: {"description": "too big"}})
def upload(incident_id: int, me: Me, request: Request,
           file: Annotated[UploadFile, File(description="JPEG, PNG or WebP")]) -> AttachmentOut:
    inc = _incident(request, incident_id)
    auth.check_action(me, "comment", inc["grid_code"], inc["assignee"])
    limits = _limits(request)
    raw = file.file.read(limits.photo_max_bytes + 1)
    if len(raw) > limits.photo_max_bytes:
        REJECTED.labels("too_big").inc()
        raise HTTPException(TOO_LARGE,
                            f"photos are limited to {limits.photo_max_bytes} bytes",
                            headers={"X-Error-Code": "body_too_large"})
    if not raw:
        REJECTED.labels("empty").inc()
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the file is empty")
    jpeg = _reencode(raw, limits.photo_max_pixels,
                     {"incident": incident_id, "user": me.username, "bytes": len(raw)})
    rel = Path("attachments") / str(incident_id) / f"{uuid.uuid4().hex}.jpg"
    storage_of(request.app.state.ctx.data_dir).put(rel.as_posix(), jpeg)
    actor = me.person_id or me.user_id
    with auth.pool(request).connection() as conn:
        row = conn.execute(
            "INSERT INTO attachments (incident_id, user_id, path, content_type, size_bytes)"
            " VALUES (%s, %s, %s, 'image/jpeg', %s) RETURNING id",
            (incident_id, me.uid, rel.as_posix(), len(jpeg)),
        ).fetchone()
        assert row is not None
        # The photo joins the incident's append-only audit trail as a comment.
        conn.execute(
            "INSERT INTO audit (incident_id, at, actor, action, from_state, to_state, reason,"
            " data, source) SELECT id, %s, %s, 'comment', state, state, %s, %s, %s"
            " FROM incidents WHERE id = %s",
            (auth.config(request).clock(), actor, "photo",
             Jsonb({"attachments": [row[0]], "url": f"/api/attachments/{row[0]}"}),
             auth.client_ip(request) or "api", incident_id),
        )
    log.info("photo attached", extra={"incident": incident_id, "user": me.username,
                                      "bytes": len(jpeg)})
    return AttachmentOut(id=row[0], incident_id=incident_id, url=f"/api/attachments/{row[0]}",
                         content_type="image/jpeg", size_bytes=len(jpeg))


@router.get("/api/attachments/{attachment_id}", response_class=FileResponse,
            summary="A photo attached to an incident",
            responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "not found"}})
def download(attachment_id: int, me: Me, request: Request) -> FileResponse:
    with auth.pool(request).connection() as conn:
        row = conn.execute(
            "SELECT a.path, i.grid_code, i.assignee FROM attachments a"
            " JOIN incidents i ON i.id = a.incident_id WHERE a.id = %s", (attachment_id,),
        ).fetchone()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such attachment")
    if not (me.sees(row[1]) or (me.role == "grid_worker" and me.is_assignee(row[2]))):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "attachment is outside your grid scope")
    path = stored_file(storage_of(request.app.state.ctx.data_dir), row[0])
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the photo file is missing")
    return FileResponse(path, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})
