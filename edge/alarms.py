"""Alarms raised on the edge: an agent that runs a detector itself (instead of
sending frames) hands the hub each ``Alarm`` through the durable inlet. The alarm is
spooled like every message of its device and published by the device's own link,
with the device's credentials, on ``sc/v1/{site}/{device}/alarm``: the broker's ACL
lets a device write only its own topic, and the hub's alert workers check that the
alarm's grid, subject, dedup key and evidence lie within that device's scope
(``hub.alarmwire``). It stays in the spool until the broker's PUBACK, and while no
alert worker holds the inlet (``require_subscriber``)."""

from __future__ import annotations

from edge.spool import Spool
from hub.alarmwire import encode_alarm
from hub.domain import Alarm
from hub.protocol import Kind, ProtocolError, topic

KIND = "alarm"


def spool_alarm(spool: Spool, site: str, alarm: Alarm) -> int:
    """Spool ``alarm`` for its device's link (call the link's ``notify`` after);
    returns the spool row id. Raises ``ProtocolError`` for an alarm the contract
    cannot carry (no device, a name out of its alphabet), before anything is spooled."""
    if alarm.device_id is None:
        raise ProtocolError("invalid", f"alarm {alarm.dedup_key!r} names no device")
    payload = encode_alarm(alarm)
    row, _ = spool.put(alarm.device_id, KIND, topic(site, alarm.device_id, Kind.ALARM),
                       lambda _seq: payload, qos=1)
    return row
