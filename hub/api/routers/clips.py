"""An incident's event clip (hub/vision/clips.py), with the evidence image's access checks.

The incident's evidence names the clip (``evidence["clip"]``: its path under the data
directory and its window) from the moment the alarm fired; the file appears once its
last seconds were received and encoded. Until then the route answers 404 with
``X-Error-Code: clip_pending`` and ``Retry-After``; once the retention purge removed
it (or it was never written), ``clip_missing``. Starlette's ``FileResponse`` answers
``Range`` requests (206, ``Content-Range``), which a ``<video>`` element needs to seek.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse

from hub.api import auth
from hub.api.deps import Ctx, Reader
from hub.api.files import storage_of, stored_file
from hub.api.routers.incidents import ErrorOut, _load
from hub.vision import clipstore

router = APIRouter(prefix="/api/incidents", tags=["incidents"])

# After its window ends a clip waits for the camera's last frames (clips.LATE_S) and
# the encoder's queue; past this it is not coming.
PENDING_S = 120.0
RETRY_AFTER_S = 5


@router.get("/{incident_id}/clip", response_class=FileResponse,
            responses={200: {"content": {"video/mp4": {}}},
                       206: {"description": "the requested byte range"},
                       403: {"model": ErrorOut},
                       404: {"model": ErrorOut, "description": "no clip (no_clip), not "
                             "written yet (clip_pending) or gone (clip_missing)"}},
            summary="The event clip (H.264 MP4) of an incident; Range requests are answered")
def clip(incident_id: int, request: Request, ctx: Ctx, p: Reader) -> FileResponse:
    inc = _load(request, ctx, p, incident_id)
    ref = (inc.evidence or {}).get("clip")
    rel = ref.get("path") if isinstance(ref, dict) else None
    if not isinstance(rel, str) or not rel.startswith(clipstore.CLIPS + "/"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this incident has no clip",
                            headers={"X-Error-Code": "no_clip"})
    # The path comes from a detector, but never serve anything outside the data dir.
    path = stored_file(storage_of(ctx.data_dir), rel)
    if path is None:
        if _pending(ref, auth.config(request).clock()):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "the clip is still being recorded",
                                headers={"X-Error-Code": "clip_pending",
                                         "Retry-After": str(RETRY_AFTER_S)})
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            "the clip is missing (past its retention, or never written)",
                            headers={"X-Error-Code": "clip_missing"})
    return FileResponse(path, media_type="video/mp4",
                        headers={"Cache-Control": "private, max-age=3600"})


def _pending(ref: dict[str, object], now: datetime) -> bool:
    try:
        end = datetime.fromisoformat(str(ref.get("to")))
    except ValueError:
        return False
    if end.tzinfo is None:
        return False
    return now < end + timedelta(seconds=PENDING_S)
