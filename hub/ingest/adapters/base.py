"""The device-adapter boundary: inputs that are not the wire contract become its
messages at ingest, so that the store, the sensing rules and the alert service see
nothing but :class:`~hub.protocol.Telemetry`, :class:`~hub.protocol.Event` and
:class:`~hub.protocol.Status`.

An adapter says which topics it subscribes to and translates one MQTT message at a
time. It is pure: the message and the hub's receive time in, messages of the wire
contract (or rejections) out; no I/O, no clock. It may keep state between messages
(e.g. the last boolean state of each device, so that only changes become events);
the ingest calls it from one thread.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from hub.protocol import Message

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Layout of a derived seq: milliseconds since 1970 | 17 bits of the payload's hash |
# 3 bits naming the part of the message (0 for its telemetry or status, 1-7 for its
# events). Milliseconds fit 43 bits until the year 2248, so the seq stays below 2**63.
_HASH_BITS = 17
_PART_BITS = 3
MAX_PART = 2**_PART_BITS - 1


@dataclass(frozen=True, slots=True)
class Rejection:
    """Something of a message that was refused. ``reason`` is a counter label like
    the wire contract's (``bad_json``, ``oversized``, ``invalid``, ``unknown_device``,
    ``ts_future``, ``ts_past``); ``detail`` says what and where."""

    reason: str
    detail: str
    device: str | None = None


@dataclass(frozen=True, slots=True)
class Translation:
    """What one MQTT message became. ``messages`` go on as if a device had sent
    them; ``rejections`` are counted and logged; ``ignored`` marks a topic of the
    adapter's that carries nothing for the hub (bridge housekeeping, commands)."""

    messages: tuple[Message, ...] = ()
    rejections: tuple[Rejection, ...] = ()
    ignored: bool = False


def rejected(reason: str, detail: str, device: str | None = None) -> Translation:
    return Translation(rejections=(Rejection(reason, detail, device),))


IGNORED = Translation(ignored=True)


class DeviceAdapter(Protocol):
    """One source of messages that are not the wire contract (a bridge, a vendor's
    push). ``name`` labels its logs and counters."""

    name: str

    def subscriptions(self) -> list[str]:
        """MQTT topic filters to subscribe to (QoS 1, not shared)."""
        ...

    def owns(self, topic: str) -> bool:
        """Whether ``topic`` is one of this adapter's."""
        ...

    def translate(self, topic: str, payload: bytes, received_at: datetime) -> Translation:
        """The wire-contract messages ``payload`` on ``topic`` stands for. Never
        raises for bad input: that is a rejection."""
        ...


def derived_seq(ts: datetime, payload: bytes, part: int = 0) -> int:
    """A per-device sequence number for a source that sends none, derived from the
    message itself: the same message (a redelivery) gets the same seq, so the store
    keeps it once; two messages of one millisecond differ by their payloads' hash.
    ``part`` tells apart the messages one payload becomes (``0 <= part <= 7``)."""
    if not 0 <= part <= MAX_PART:
        raise ValueError(f"part {part} outside 0-{MAX_PART}")
    ms = (ts - _EPOCH) // timedelta(milliseconds=1)
    digest = hashlib.blake2b(payload, digest_size=4).digest()
    h = int.from_bytes(digest, "big") & (2**_HASH_BITS - 1)
    return (ms << (_HASH_BITS + _PART_BITS)) | (h << _PART_BITS) | part
