"""Device adapters: inputs that are not the wire contract (hub/ingest/adapters/base.py
for the boundary, docs/architecture.md "How to add a device adapter").

The site file's ``adapters:`` list says which run; :data:`KINDS` maps each entry's
``kind`` to the adapter class. The ingest subscribes to what they ask for and hands
them every message of a topic outside ``sc/v1/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from hub.config import Site
from hub.ingest.adapters.base import DeviceAdapter, Rejection, Translation, rejected
from hub.ingest.adapters.zigbee2mqtt import Zigbee2MQTT
from hub.ingest.ratelog import RateLimitedLog
from hub.protocol import DEFAULT_MAX_CLOCK_SKEW_S

log = logging.getLogger(__name__)

# kind in the site file -> (its config entry, max clock skew in s) -> the adapter.
KINDS: dict[str, Callable[[Any, float], DeviceAdapter]] = {
    "zigbee2mqtt": lambda cfg, skew: Zigbee2MQTT(cfg, max_skew_s=skew),
}

__all__ = ["KINDS", "Adapters", "DeviceAdapter", "Rejection", "Translation"]


class Adapters:
    """The adapters of one ingest, routing a topic to the one that owns it."""

    def __init__(self, adapters: Sequence[DeviceAdapter] = ()) -> None:
        self.adapters = list(adapters)
        self._rlog = RateLimitedLog(log)

    @classmethod
    def from_site(cls, site: Site, *, max_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S) -> Adapters:
        return cls([KINDS[a.kind](a, max_skew_s) for a in site.adapters])

    def __bool__(self) -> bool:
        return bool(self.adapters)

    def subscriptions(self) -> list[str]:
        return [f for a in self.adapters for f in a.subscriptions()]

    def translate(self, topic: str, payload: bytes, received_at: datetime) -> Translation:
        """What the owning adapter makes of the message; a rejection when no adapter
        owns the topic or the adapter failed (its bug must not stop the ingest)."""
        for a in self.adapters:
            if a.owns(topic):
                try:
                    return a.translate(topic, payload, received_at)
                except Exception as e:  # noqa: BLE001 - a consumer that never stops
                    self._rlog.warning(a.name, "device adapter failed", extra={
                        "adapter": a.name, "topic": topic[:200],
                        "error": f"{type(e).__name__}: {e}"[:300]})
                    return rejected("invalid", f"{a.name} failed: {type(e).__name__}")
        return rejected("bad_topic", f"topic {topic[:120]!r} belongs to no adapter")
