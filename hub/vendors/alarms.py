"""A camera's event, of a type its site-file entry maps, as the hub's ``Alarm``.

Pure: the event, the camera's entry, the category registry, the episode step, the
hub's receive time and the saved picture's path in; alarms out. The camera's own
time is the alarm's time when it is believable (``hub.protocol.check_device_time``,
as for every device time); otherwise the hub's receive time is, and the evidence
says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hub.categories import CategoryRegistry
from hub.config import CameraEventMapping, CameraEvents, DeviceConfigEntry
from hub.domain import Alarm, AlarmState, Severity
from hub.protocol import ProtocolError, check_device_time
from hub.vendors.episodes import Step
from hub.vendors.event import CameraEvent


@dataclass(frozen=True, slots=True)
class EventTime:
    """The time an event's alarm carries, and why the camera's was not taken."""

    ts: datetime
    camera_time_refused: str | None = None


def mapping_for(cfg: CameraEvents, event_type: str) -> CameraEventMapping | None:
    """The site file's entry for a vendor event type, matched without regard to case."""
    low = event_type.lower()
    return next((m for k, m in cfg.events.items() if k.lower() == low), None)


def event_time(event: CameraEvent, received_at: datetime, max_skew_s: float) -> EventTime:
    if event.ts is None:
        return EventTime(received_at, "the push carries no time")
    try:
        check_device_time(event.ts, received_at, max_skew_s)
    except ProtocolError as e:
        return EventTime(received_at, f"{e.reason}: {e.detail}")
    return EventTime(event.ts)


def alarm(step: Step, event: CameraEvent, mapping: CameraEventMapping,
          device: DeviceConfigEntry, registry: CategoryRegistry, when: EventTime,
          evidence_image: str | None) -> Alarm:
    """The alarm of one episode step. ``registry`` must hold the mapped category
    (the caller checks)."""
    info = registry.get(mapping.category)
    severity = Severity.parse(mapping.severity) if mapping.severity else info.severity
    title = mapping.title or f"{info.name_zh}: {event.event_type} ({event.vendor})"
    evidence: dict[str, object] = {"vendor": event.vendor, "event_type": event.event_type,
                                   "camera_state": "active" if event.active else "inactive"}
    if event.channel is not None:
        evidence["channel"] = event.channel
    if event.post_count is not None:
        evidence["active_post_count"] = event.post_count
    if event.ts is not None:
        evidence["camera_time"] = event.ts.isoformat()
    if when.camera_time_refused:
        evidence["camera_time_refused"] = when.camera_time_refused
    for name, value in (("description", event.description), ("camera_ip", event.ip),
                        ("camera_mac", event.mac)):
        if value:
            evidence[name] = value
    evidence.update({f"camera_{k}": v for k, v in event.details.items()})
    firing = step.state is AlarmState.FIRING
    return Alarm(
        rule=f"camera_ai:{event.vendor}", category=mapping.category, severity=severity,
        state=step.state, dedup_key=step.dedup_key, ts=step.ts, title=title,
        grid_code=device.grid, device_id=device.id, subject_id=device.subject,
        confidence=1.0, evidence=evidence,
        evidence_image=evidence_image if firing else None)
