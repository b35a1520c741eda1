"""Cameras with their own AI: Hikvision and Dahua event pushes become alarms.

Many compounds already run cameras that detect parking, abandoned objects or an
intrusion on board and push each event over HTTP. This package reads those pushes:

* :mod:`hub.vendors.push` splits a push into its metadata and its pictures
  (multipart/mixed or multipart/form-data, or a bare XML/JSON/text body);
* :mod:`hub.vendors.hikvision` and :mod:`hub.vendors.dahua` read the vendors'
  documented formats into one :class:`hub.vendors.event.CameraEvent`;
* :mod:`hub.vendors.episodes` decides which episode a push belongs to (a repeat of
  the same event never opens a second incident);
* :mod:`hub.vendors.alarms` turns an event of a mapped type into the same
  :class:`hub.domain.Alarm` every detector raises;
* :mod:`hub.vendors.auth` checks each camera's HTTP Basic or Digest credentials.

All of it is pure (bytes and times in, decisions out); the HTTP route
(:mod:`hub.api.routers.camera_events`) does the I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo

from hub.vendors import dahua, hikvision
from hub.vendors.event import CameraEvent

# vendor (the site file's camera.events.vendor) -> the events of a push's metadata parts.
PARSERS: dict[str, Callable[[list[tuple[str, bytes]], tzinfo], list[CameraEvent]]] = {
    "hikvision": lambda parts, local: [hikvision.parse(parts, local)],
    "dahua": dahua.parse,
}
