"""Alarms on the wire: an ``Alarm`` to its ``AlarmMessage`` and back, and the checks
an alarm from the broker must pass before the incident engine sees it. Pure: the
payload, the site and the hub's time in; no I/O, no clock.

Whoever publishes, the alarm is checked against the device it names (the topic's,
which the broker's ACL lets a device write only for itself): the device must be in
the site file; the grid code, when given, must be the device's grid or under it; the
care subject, when given, the device's; the dedup key must name the device (or its
subject) as its second segment, so an edge box cannot update another device's
incident; the evidence image and clip must lie in the device's own folders; the
timestamp is bounded like every device time (``HUB_MAX_CLOCK_SKEW_S``). A refusal is
a ``ProtocolError`` with a counter reason.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import replace
from datetime import datetime

from hub.config import Site
from hub.domain import Alarm, AlarmState, Severity
from hub.protocol import (
    AlarmMessage,
    Kind,
    ProtocolError,
    alarm_key,
    check_device_time,
    decode_alarm,
    encode,
    parse_topic,
)

_SEVERITY = {Severity.INFO: "info", Severity.MINOR: "minor", Severity.MAJOR: "major",
             Severity.CRITICAL: "critical"}
_FILE = r"[A-Za-z0-9_.\-]+"
TITLE_MAX = 200  # AlarmMessage.title's bound


def to_message(alarm: Alarm) -> AlarmMessage:
    """The wire form of ``alarm``; raises ``ProtocolError`` (``invalid``) for an alarm
    the contract cannot carry (no device, a name out of its alphabet)."""
    if alarm.device_id is None:
        raise ProtocolError("invalid", f"alarm {alarm.dedup_key!r} names no device")
    try:
        return AlarmMessage(
            id=alarm_key(alarm.rule, alarm.dedup_key, alarm.state.value, int(alarm.severity),
                         alarm.ts),
            device=alarm.device_id, rule=alarm.rule, category=str(alarm.category),
            severity=_SEVERITY[alarm.severity], state=alarm.state.value,  # type: ignore[arg-type]
            # A long camera label must not cost the alarm: the title is only its label.
            dedup_key=alarm.dedup_key, ts=alarm.ts, title=alarm.title[:TITLE_MAX],
            grid_code=alarm.grid_code, subject_id=alarm.subject_id, zone=alarm.zone,
            confidence=float(alarm.confidence), evidence=alarm.evidence,
            evidence_image=alarm.evidence_image)
    except ValueError as e:  # pydantic's ValidationError is one
        raise ProtocolError("invalid", f"alarm {alarm.dedup_key!r}: {e}") from None


def encode_alarm(alarm: Alarm) -> bytes:
    return encode(to_message(alarm))


def to_alarm(msg: AlarmMessage) -> Alarm:
    return Alarm(
        rule=msg.rule, category=msg.category, severity=Severity.parse(msg.severity),
        state=AlarmState(msg.state), dedup_key=msg.dedup_key, ts=msg.ts, title=msg.title,
        grid_code=msg.grid_code, device_id=msg.device, subject_id=msg.subject_id,
        zone=msg.zone, confidence=msg.confidence, evidence=dict(msg.evidence),
        evidence_image=msg.evidence_image)


def read_alarm(topic: str, payload: bytes, site: Site, now: datetime, *,
               max_skew_s: float, categories: Container[str] | None = None) -> Alarm:
    """The alarm a message of the inlet carries, checked (see the module); the
    grid code defaults to the device's. Raises ``ProtocolError``."""
    t = parse_topic(topic)
    if t.kind is not Kind.ALARM:
        raise ProtocolError("bad_topic", f"{t.kind.value} is not an alarm topic")
    if t.site != site.site.id:
        raise ProtocolError("bad_topic", f"topic site {t.site!r} is not {site.site.id!r}")
    msg = decode_alarm(payload, t.device)
    dev = site.device(msg.device)
    if dev is None:
        raise ProtocolError("unknown_device", f"device {msg.device!r} is not in the site file")
    check_device_time(msg.ts, now, max_skew_s)
    if categories is not None and msg.category not in categories:
        raise ProtocolError("unknown_category",
                            f"category {msg.category!r} is not registered")
    grid = msg.grid_code
    if grid is not None and not grid.startswith(dev.grid):
        raise ProtocolError("out_of_scope", f"grid {grid} is not within device {dev.id}'s"
                                            f" grid {dev.grid}")
    if msg.subject_id is not None and msg.subject_id != dev.subject:
        raise ProtocolError("out_of_scope", f"subject {msg.subject_id!r} is not device"
                                            f" {dev.id}'s")
    owners = {dev.id} | ({dev.subject} if dev.subject else set())
    parts = msg.dedup_key.split(":")
    if len(parts) < 2 or parts[1] not in owners:
        raise ProtocolError("out_of_scope", f"dedup key {msg.dedup_key[:80]!r} does not name"
                                            f" device {dev.id} as its second segment")
    if msg.evidence_image is not None and (".." in msg.evidence_image or not re.fullmatch(
            rf"evidence/{re.escape(dev.id)}/{_FILE}", msg.evidence_image)):
        raise ProtocolError("out_of_scope", f"evidence image {msg.evidence_image[:80]!r} is"
                                            f" not in evidence/{dev.id}/")
    clip = msg.evidence.get("clip")
    if clip is not None:
        path = clip.get("path") if isinstance(clip, dict) else None
        if not isinstance(path, str) or not re.fullmatch(
                rf"clips/{_FILE}/{re.escape(dev.id)}/{_FILE}\.mp4", path) or ".." in path:
            raise ProtocolError("out_of_scope", f"evidence clip is not a clip of device"
                                                f" {dev.id} (clips/<category>/{dev.id}/...)")
    alarm = to_alarm(msg)
    return alarm if grid is not None else replace(alarm, grid_code=dev.grid)
