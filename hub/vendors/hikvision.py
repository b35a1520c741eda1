"""Hikvision ISAPI ``EventNotificationAlert``, in XML or (newer firmware) JSON.

The documented message (ISAPI, "EventNotificationAlert message with alarm/event
information"): ``ipAddress``, ``portNo``, ``protocol``, ``macAddress``,
``channelID`` (from 1), ``dateTime`` (ISO 8601, e.g. 2017-07-19T10:06:41+08:00),
``activePostCount`` (1 on an event's first push, counting up while it lasts),
``eventType`` (``VMD``, ``linedetection``, ``fielddetection``, ``regionEntrance``,
``regionExiting``, ``parking``, ``unattendedBaggage``, ``attendedBaggage``,
``videoloss``, ...), ``eventState`` (``active`` while it lasts, ``inactive``
when it ended), ``eventDescription``, and per type more nodes (a detection region,
the target). The XML carries the ``http://www.hikvision.com/ver20/XMLSchema`` or
``http://www.isapi.org/ver20/XMLSchema`` namespace (ver10 on older firmware); the
names are matched without it.

XML is read with the standard library's parser after refusing any document type
declaration: no event has one, and a DTD is how entity-expansion bombs and external
entities get in.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import tzinfo
from typing import Any

from hub.vendors.event import CameraEvent, PushError, clip, whole
from hub.vendors.timeparse import iso_time

VENDOR = "hikvision"
ROOT = "EventNotificationAlert"
_DTD = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)
# Nested nodes worth keeping for the operator, by local name.
_DETAILS = ("channelName", "targetType", "detectionTarget", "regionID", "ruleName")


def parse(metadata: list[tuple[str, bytes]], local: tzinfo) -> CameraEvent:
    """The event of a push's metadata parts (the first ``EventNotificationAlert``).
    Raises :class:`PushError` saying what is missing or wrong."""
    if not metadata:
        raise PushError("malformed", "the push holds no EventNotificationAlert (only"
                        " pictures)")
    last: PushError | None = None
    for ctype, data in metadata:
        try:
            fields = _json(data) if _looks_json(ctype, data) else _xml(data)
        except PushError as e:
            last = e
            continue
        return _event(fields, local)
    assert last is not None
    raise last


def _looks_json(ctype: str, data: bytes) -> bool:
    return "json" in ctype or data.lstrip()[:1] == b"{"


def _xml(data: bytes) -> dict[str, Any]:
    if _DTD.search(data):
        raise PushError("malformed", "the XML has a document type declaration, which no"
                        " EventNotificationAlert has")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise PushError("malformed", f"the XML cannot be read: {e}") from None
    if _local(root.tag) != ROOT:
        raise PushError("malformed", f"the XML's root is <{_local(root.tag)[:40]}>, not"
                        f" <{ROOT}>")
    fields: dict[str, Any] = {}
    for child in root:
        name = _local(child.tag)
        if len(child) == 0:
            fields.setdefault(name, (child.text or "").strip())
    details: dict[str, str] = {}
    for node in root.iter():
        name = _local(node.tag)
        if name in _DETAILS and len(node) == 0 and (node.text or "").strip():
            details.setdefault(name, clip(node.text.strip()))
    fields["_details"] = details
    return fields


def _json(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise PushError("malformed", f"the JSON cannot be read: {str(e)[:120]}") from None
    if isinstance(doc, dict) and isinstance(doc.get(ROOT), dict):
        doc = doc[ROOT]  # some firmware wraps the alert in its name
    if not isinstance(doc, dict):
        raise PushError("malformed", "the JSON is not an object")
    details = {k: clip(doc[k]) for k in _DETAILS
               if isinstance(doc.get(k), (str, int, float)) and str(doc[k]) != ""}
    return {**doc, "_details": details}


def _event(f: dict[str, Any], local: tzinfo) -> CameraEvent:
    event_type = clip(f.get("eventType")).strip()
    if not event_type:
        raise PushError("malformed", "the EventNotificationAlert has no eventType")
    state = clip(f.get("eventState")).strip().lower()
    if state not in ("active", "inactive"):
        raise PushError("malformed", f"eventState {state[:40]!r} is neither active nor"
                        " inactive")
    return CameraEvent(
        vendor=VENDOR, event_type=event_type, active=state == "active",
        ts=iso_time(f.get("dateTime") or None, local, "dateTime"),
        channel=whole(f.get("channelID", f.get("dynChannelID")), "channelID"),
        post_count=whole(f.get("activePostCount"), "activePostCount"),
        description=clip(f.get("eventDescription")), ip=clip(f.get("ipAddress")),
        mac=clip(f.get("macAddress")), details=f.get("_details", {}))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
