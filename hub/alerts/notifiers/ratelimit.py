"""Per-recipient token buckets, so a flapping alarm cannot flood a phone.

Pure: callers pass the time. What the bucket refuses is not dropped: the outbox
dispatcher keeps those rows pending until ``next_free`` and then sends everything a
recipient has waiting as one summary (see ``hub.alerts.service``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """``capacity`` messages at once, refilled at ``per_s`` messages per second."""

    def __init__(self, capacity: float = 5, per_s: float = 1 / 60) -> None:
        if capacity < 1 or per_s <= 0:
            raise ValueError("capacity must be >= 1 and per_s > 0")
        self.capacity = float(capacity)
        self.per_s = float(per_s)
        self._b: dict[str, _Bucket] = {}

    def _refill(self, key: str, now: float) -> _Bucket:
        b = self._b.get(key)
        if b is None:
            b = self._b[key] = _Bucket(self.capacity, now)
        elif now > b.at:
            b.tokens = min(self.capacity, b.tokens + (now - b.at) * self.per_s)
            b.at = now
        return b

    def take(self, key: str, now: float) -> bool:
        b = self._refill(key, now)
        if b.tokens >= 1:
            b.tokens -= 1
            return True
        return False

    def next_free(self, key: str, now: float) -> float:
        """When ``key`` will next have a whole token (``now`` if it has one)."""
        b = self._refill(key, now)
        if b.tokens >= 1:
            return now
        return now + (1 - b.tokens) / self.per_s

    def forget_idle(self, now: float) -> None:
        """Drop full buckets; they carry no information and would grow forever."""
        for k in [k for k, b in self._b.items() if self._refill(k, now).tokens >= self.capacity]:
            del self._b[k]
