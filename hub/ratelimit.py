"""Per-recipient token buckets, so a flapping alarm cannot flood a phone.

The buckets are pyrate-limiter's token bucket (``StateBucket`` with the ``TokenBucket``
algorithm, kept in process memory); this module keys one per recipient and speaks
seconds. Pure: callers pass the time, which rides on each item as its timestamp, so
the library never reads a clock. What the bucket refuses is not dropped: the outbox
dispatcher keeps those rows pending until ``next_free`` and then sends everything a
recipient has waiting as one summary (see ``hub.alerts.service``). The vision worker
uses the same buckets against cameras that flood it with frames.

Why pyrate-limiter (MIT): it has a real token bucket (burst and refill, like the
hand-written one it replaced, decision for decision: ``bench/ratelimit.py``) and takes
the time from the caller. ``limits`` has no token bucket and its in-memory storage reads
the wall clock itself, so nothing could be tested to the second.
"""

from __future__ import annotations

from fractions import Fraction

from pyrate_limiter import Rate, RateItem, StateBucket, TokenBucket

# The library counts integer milliseconds and refills in whole microseconds, so the
# fastest refill it can express is one token a microsecond; and times within one
# millisecond are the same time (with a burst of 1, one take a millisecond at most).
MAX_PER_S = 1e6


def _ms(now: float) -> int:
    return int(now * 1000)


class TokenBuckets:
    """``capacity`` messages at once, refilled at ``per_s`` messages per second."""

    def __init__(self, capacity: float = 5, per_s: float = 1 / 60) -> None:
        if capacity < 1 or per_s <= 0:
            raise ValueError("capacity must be >= 1 and per_s > 0")
        self.capacity = float(capacity)
        self.per_s = min(float(per_s), MAX_PER_S)
        # per_s as limit / interval in whole units (1/60 s -> 1 per 60,000 ms): the
        # library's rate is a count per an integer number of milliseconds.
        f = Fraction(self.per_s).limit_denominator(10**6)
        self._rate = Rate(f.numerator, f.denominator * 1000, burst=int(capacity))
        self._algorithm = TokenBucket()
        self._b: dict[str, StateBucket] = {}

    def _bucket(self, key: str) -> StateBucket:
        b = self._b.get(key)
        if b is None:
            b = self._b[key] = StateBucket([self._rate], algorithm=self._algorithm)
        return b

    def take(self, key: str, now: float) -> bool:
        return bool(self._bucket(key).put(RateItem(key, _ms(now))))

    def next_free(self, key: str, now: float) -> float:
        """When ``key`` will next have a whole token (``now`` if it has one)."""
        b = self._bucket(key)
        # A dry run of the algorithm on the stored state: it reports the wait and
        # spends nothing (the state it returns is thrown away).
        _, decision = b.algorithm.step(b.rates, b.store.read(b.algorithm, b.rates),
                                       _ms(now), 1)
        if decision.allowed or decision.retry_after_ms is None:
            return now
        return now + decision.retry_after_ms / 1000

    def forget_idle(self, now: float) -> None:
        """Drop full buckets; they carry no information and would grow forever."""
        ms = _ms(now)
        for k in [k for k, b in self._b.items()
                  if b.algorithm.consumed(b.rates, b.store.read(b.algorithm, b.rates), ms) == 0]:
            del self._b[k]

    def recipients(self) -> int:
        """How many recipients have a bucket (``forget_idle`` drops the full ones)."""
        return len(self._b)
