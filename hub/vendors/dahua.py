"""Dahua event pushes.

Dahua's HTTP API describes an event as a code, an action and a channel index
(``eventManager``: ``Code=CrossLineDetection;action=Start;index=0;data={...}``),
with the event's facts as JSON in ``data``. Its pushes to a server carry the same
facts, as that text (one event a line) or as JSON: one object
``{"Code": ..., "Action": ..., "Index": ..., "Data": {...}}``, a list of them, or
``{"Events": [...]}``; a picture push is multipart with the JPEG as a part. Codes
are Dahua's (``VideoMotion``, ``CrossLineDetection``, ``CrossRegionDetection``,
``LeftDetection`` (abandoned object), ``ParkingDetection``, ``RioterDetection``
(people gathering), ``WanderDetection``, ``FireWarning``...); actions are
``Start``, ``Stop`` and ``Pulse`` (a one-off event). ``Index`` counts channels from
0. The time is ``Data.UTC`` (seconds since 1970) or ``Data.LocaleTime``
(``2026-03-02 17:00:05``, the camera's local time).
"""

from __future__ import annotations

import json
from datetime import tzinfo
from typing import Any

from hub.vendors.event import CameraEvent, PushError, clip, whole
from hub.vendors.timeparse import epoch_time, iso_time

VENDOR = "dahua"
MAX_EVENTS = 16
_ACTIONS = {"start": True, "pulse": True, "stop": False}
_DETAILS = ("Name", "Class", "ObjectType", "RuleName", "Direction", "EventID")


def parse(metadata: list[tuple[str, bytes]], local: tzinfo) -> list[CameraEvent]:
    """The events of a push's metadata parts. Raises :class:`PushError`."""
    if not metadata:
        raise PushError("malformed", "the push holds no event (only pictures)")
    events: list[CameraEvent] = []
    for ctype, data in metadata:
        text = data.strip()
        if "json" in ctype or text[:1] in (b"{", b"["):
            items = _json(text)
        else:
            items = _text(text)
        events += [_event(i, local) for i in items]
        if len(events) > MAX_EVENTS:
            raise PushError("too_many_parts", f"more than {MAX_EVENTS} events in one push")
    if not events:
        raise PushError("malformed", "the push holds no event")
    return events


def _json(data: bytes) -> list[dict[str, Any]]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise PushError("malformed", f"the JSON cannot be read: {str(e)[:120]}") from None
    if isinstance(doc, dict) and isinstance(doc.get("Events"), list):
        doc = doc["Events"]
    items = doc if isinstance(doc, list) else [doc]
    if not all(isinstance(i, dict) for i in items):
        raise PushError("malformed", "an event in the JSON is not an object")
    return items[: MAX_EVENTS + 1]


def _text(data: bytes) -> list[dict[str, Any]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PushError("malformed", "the event text is not UTF-8") from None
    items = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line == "Heartbeat":
            continue
        item: dict[str, Any] = {}
        # data= comes last and is JSON, which may hold ';' itself.
        head, sep, data_json = line.partition(";data=")
        for pair in head.split(";"):
            key, eq, value = pair.partition("=")
            if not eq:
                raise PushError("malformed", f"{pair[:40]!r} is not key=value")
            item[key.strip().capitalize()] = value.strip()
        if sep:
            item["Data"] = _json(data_json.encode())[0] if data_json.strip() else {}
        items.append(item)
        if len(items) > MAX_EVENTS:
            break
    return items


def _event(item: dict[str, Any], local: tzinfo) -> CameraEvent:
    code = clip(item.get("Code")).strip()
    if not code:
        raise PushError("malformed", "an event has no Code")
    action = clip(item.get("Action")).strip().lower()
    if action not in _ACTIONS:
        raise PushError("malformed", f"Action {action[:40]!r} is not Start, Stop or Pulse")
    data = item.get("Data") if isinstance(item.get("Data"), dict) else {}
    ts = epoch_time(data.get("UTC"), "Data.UTC") if data.get("UTC") not in (None, "") \
        else iso_time(data.get("LocaleTime"), local, "Data.LocaleTime")
    details = {k: clip(data[k]) for k in _DETAILS
               if isinstance(data.get(k), (str, int, float)) and str(data[k]) != ""}
    return CameraEvent(
        vendor=VENDOR, event_type=code, active=_ACTIONS[action], ts=ts,
        channel=whole(item.get("Index"), "Index"), description=clip(data.get("Name")),
        details=details)
