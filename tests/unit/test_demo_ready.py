"""The demo's scenario waits for the hub's subscriptions (hub.demo.wait_hub_ready),
judged on an injected clock."""

from __future__ import annotations

from typing import Any

import pytest

from hub.demo import HubNotReady, wait_hub_ready


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def monotonic(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


class FakeConnection:
    """Connected at ``connect_at``; the named consumers subscribed at their times."""

    def __init__(self, clock: FakeClock, connect_at: float,
                 ready_at: dict[str, float]) -> None:
        self.clock, self.connect_at, self.ready_at = clock, connect_at, ready_at

    def stats(self) -> dict[str, Any]:
        t = self.clock.t
        return {"connected": t >= self.connect_at,
                "consumers": {n: t >= at for n, at in self.ready_at.items()}}


def test_waits_for_the_last_consumer() -> None:
    clock = FakeClock()
    conn = FakeConnection(clock, connect_at=101.0, ready_at={"ingest": 101.5, "alarms": 103.0})
    waited = wait_hub_ready(conn, 10, poll_s=0.5, monotonic=clock.monotonic, sleep=clock.sleep)
    assert waited == 3.0
    assert clock.t == 103.0


def test_connected_without_consumers_is_not_ready() -> None:
    # The consumers register before the connection starts; none yet means too early.
    clock = FakeClock()
    conn = FakeConnection(clock, connect_at=100.0, ready_at={})
    with pytest.raises(HubNotReady, match="within 5 s"):
        wait_hub_ready(conn, 5, poll_s=1, monotonic=clock.monotonic, sleep=clock.sleep)
    assert clock.t == 105.0


def test_timeout_names_the_waiting_consumers() -> None:
    clock = FakeClock()
    conn = FakeConnection(clock, connect_at=100.0, ready_at={"ingest": 100.0, "alarms": 1e9})
    with pytest.raises(HubNotReady, match=r"connected: True; waiting: alarms\)"):
        wait_hub_ready(conn, 2, poll_s=1, monotonic=clock.monotonic, sleep=clock.sleep)
    assert clock.t == 102.0
