"""The per-recipient token buckets, to the second on an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub.clock import ManualClock
from hub.ratelimit import TokenBuckets

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _takes(tb: TokenBuckets, key: str, now: float, n: int) -> list[bool]:
    return [tb.take(key, now) for _ in range(n)]


def test_a_full_bucket_lets_capacity_through_and_refills_one_token_a_period() -> None:
    clock = ManualClock(T0)
    tb = TokenBuckets(capacity=3, per_s=1 / 60)
    assert _takes(tb, "w1", clock.now().timestamp(), 4) == [True, True, True, False]
    clock.advance(59)
    assert not tb.take("w1", clock.now().timestamp())
    clock.advance(1)  # 60 s after the burst: one token back, not two
    assert _takes(tb, "w1", clock.now().timestamp(), 2) == [True, False]


def test_next_free_is_now_with_a_token_and_the_refill_second_without() -> None:
    clock = ManualClock(T0)
    tb = TokenBuckets(capacity=2, per_s=1 / 60)
    now = clock.now().timestamp()
    assert tb.next_free("w1", now) == now
    assert _takes(tb, "w1", now, 2) == [True, True]
    assert tb.next_free("w1", now) == now + 60
    clock.advance(20)
    now = clock.now().timestamp()
    assert tb.next_free("w1", now) == now + 40
    # Asking spends nothing: the token still comes at T0 + 60 s.
    assert tb.next_free("w1", now) == now + 40
    clock.advance(40)
    assert tb.take("w1", clock.now().timestamp())


def test_a_refused_take_spends_nothing() -> None:
    tb = TokenBuckets(capacity=1, per_s=1 / 60)
    t0 = T0.timestamp()
    assert tb.take("w1", t0)
    for s in range(1, 60):  # refused every second for a minute...
        assert not tb.take("w1", t0 + s)
    assert tb.take("w1", t0 + 60)  # ...and the token comes on time all the same


def test_an_idle_bucket_fills_up_to_its_capacity_only() -> None:
    tb = TokenBuckets(capacity=2, per_s=1 / 60)
    t0 = T0.timestamp()
    assert _takes(tb, "w1", t0, 2) == [True, True]
    later = t0 + 24 * 3600
    assert _takes(tb, "w1", later, 3) == [True, True, False]


def test_recipients_have_buckets_of_their_own() -> None:
    tb = TokenBuckets(capacity=1, per_s=1 / 600)
    t0 = T0.timestamp()
    assert tb.take("w1", t0)
    assert not tb.take("w1", t0 + 1)
    assert tb.take("w2", t0 + 1)
    assert tb.next_free("w1", t0 + 1) == t0 + 600
    assert tb.next_free("w3", t0 + 1) == t0 + 1


def test_a_refill_faster_than_a_token_a_second() -> None:
    tb = TokenBuckets(capacity=1, per_s=4)
    t0 = T0.timestamp()
    assert _takes(tb, "w1", t0, 2) == [True, False]
    assert tb.next_free("w1", t0) == t0 + 0.25
    assert not tb.take("w1", t0 + 0.2)
    assert tb.take("w1", t0 + 0.25)


def test_times_count_in_whole_milliseconds() -> None:
    tb = TokenBuckets(capacity=1, per_s=1e9)  # above the library's 1 a microsecond
    assert tb.per_s == 1e6
    t0 = T0.timestamp()
    assert _takes(tb, "w1", t0 + 0.0001, 2) == [True, False]  # the same millisecond
    assert not tb.take("w1", t0 + 0.0009)
    assert tb.next_free("w1", t0 + 0.0009) == t0 + 0.0009 + 0.001
    assert tb.take("w1", t0 + 0.001)


def test_forget_idle_drops_only_full_buckets() -> None:
    tb = TokenBuckets(capacity=2, per_s=1 / 60)
    t0 = T0.timestamp()
    tb.take("full-again", t0)
    tb.take("spent", t0 + 100)
    tb.take("spent", t0 + 100)
    assert tb.recipients() == 2
    tb.forget_idle(t0 + 120)  # "full-again" was full at t0 + 60; "spent" is a third in
    assert tb.recipients() == 1
    # Forgetting changes no decision: the spent recipient still waits for its token.
    assert not tb.take("spent", t0 + 120)
    assert tb.next_free("spent", t0 + 120) == t0 + 160
    assert tb.take("spent", t0 + 160)
    assert _takes(tb, "full-again", t0 + 120, 3) == [True, True, False]


@pytest.mark.parametrize(("capacity", "per_s"), [(0, 1.0), (0.5, 1.0), (1, 0), (1, -1)])
def test_nonsense_limits_are_refused(capacity: float, per_s: float) -> None:
    with pytest.raises(ValueError, match="capacity"):
        TokenBuckets(capacity=capacity, per_s=per_s)
