"""What the API takes from a request before it looks at it: body sizes and pixels.

``RequestLimits`` comes from ``Settings`` (``HUB_BODY_MAX_BYTES``,
``HUB_PHOTO_MAX_BYTES``, ``HUB_PHOTO_MAX_PIXELS``, ``HUB_CAMERA_PUSH_MAX_BYTES``);
``hub.node`` puts it on the ``AppContext``; :mod:`hub.api.guard` enforces the body sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RequestLimits:
    # Every route's body but a photo upload's: the largest JSON body the API takes
    # (a transition with a long note, a user, a silence) is a few kilobytes.
    body_max_bytes: int = 64 * 1024
    # A photo as uploaded; it is re-encoded to at most 1600 px before it is stored.
    photo_max_bytes: int = 10 * MiB
    # Width x height a photo's header may claim before it is decoded: 64 megapixels
    # takes every phone camera's full resolution (8192 x 8192 at most), while a
    # 20000 x 20000 "photo" of a few kilobytes is refused from its header.
    photo_max_pixels: int = 64_000_000
    # A camera's event push (hub.api.routers.camera_events): the event's XML or JSON
    # and its pictures (a scene and a target crop of a few hundred kilobytes each).
    camera_push_max_bytes: int = 4 * MiB

    @classmethod
    def from_settings(cls, settings: Any) -> RequestLimits:
        return cls(body_max_bytes=settings.body_max_bytes,
                   photo_max_bytes=settings.photo_max_bytes,
                   photo_max_pixels=settings.photo_max_pixels,
                   camera_push_max_bytes=settings.camera_push_max_bytes)
