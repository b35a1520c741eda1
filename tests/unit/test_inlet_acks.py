"""The inlet acknowledges an alarm only after its transaction committed: not while the
database is away (the batch is tried again), never on a newer connection than the one
it came on; a refused alarm is acknowledged at once and never reaches the engine."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub.alarmwire import encode_alarm
from hub.alerts.inlet import AlarmInlet
from hub.clock import ManualClock
from hub.config import Site, load_site
from hub.domain import Alarm, AlarmState, Severity
from hub.protocol import Kind, topic

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
CAM = "cam-b3-lane"


class Msg:
    def __init__(self, t: str, payload: bytes, mid: int) -> None:
        self.topic, self.payload, self.mid, self.qos = t, payload, mid, 1


class Conn:
    def __init__(self) -> None:
        self.generation = 1
        self.acked: list[tuple[int, int]] = []  # (mid, generation)
        self.acked_now: list[int] = []

    def add_consumer(self, name: str, subscriptions: Any, handler: Any, *,
                     manual_ack: bool = False, identified: bool = True) -> Any:
        assert manual_ack and subscriptions == [("$share/g/sc/v1/demo/+/alarm", 1)]
        return type("C", (), {"ready": threading.Event()})()

    def stop_consumer(self, consumer: Any) -> None:
        pass

    def ack(self, mids: Sequence[int], generation: int) -> int:
        if generation != self.generation:
            return 0
        self.acked.extend((m, generation) for m in mids)
        return len(mids)

    def ack_message(self, msg: Any) -> None:
        self.acked_now.append(msg.mid)


class Db:
    def __init__(self, down_for: int) -> None:
        self.down_for = down_for
        self.calls = 0
        self.applied: list[Alarm] = []

    def apply(self, alarms: Sequence[Alarm], received: float) -> list[Any]:
        self.calls += 1
        if self.calls <= self.down_for:
            raise OSError("database away")
        self.applied.extend(alarms)
        return []


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(REPO / "deploy" / "sites" / "demo.yaml")


def fall(i: int) -> Alarm:
    return Alarm(rule="fall", category="fall", severity=Severity.CRITICAL,
                 state=AlarmState.FIRING, dedup_key=f"fall:{CAM}:{i}", ts=NOW,
                 title="fall", device_id=CAM)


def until(cond: Any, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not cond():
        time.sleep(0.01)
    return bool(cond())


def inlet(site: Site, conn: Conn, db: Db) -> AlarmInlet:
    return AlarmInlet(conn, site, ManualClock(NOW), db.apply, shared_group="g",
                      categories=lambda: site.registry).start()


def test_no_acknowledgement_until_the_commit(site: Site) -> None:
    conn, db = Conn(), Db(down_for=2)
    i = inlet(site, conn, db)
    try:
        i.on_message(Msg(topic("demo", CAM, Kind.ALARM), encode_alarm(fall(1)), 11))
        assert until(lambda: db.calls >= 1)
        assert conn.acked == []  # the database is away: nothing acknowledged
        assert until(lambda: conn.acked == [(11, 1)], 10)
        assert db.calls == 3 and [a.dedup_key for a in db.applied] == [f"fall:{CAM}:1"]
    finally:
        i.stop()


def test_a_message_of_an_earlier_connection_is_not_acknowledged(site: Site) -> None:
    conn, db = Conn(), Db(down_for=1)
    i = inlet(site, conn, db)
    try:
        i.on_message(Msg(topic("demo", CAM, Kind.ALARM), encode_alarm(fall(2)), 12))
        assert until(lambda: db.calls >= 1)
        conn.generation = 2  # reconnected while the commit waited: the broker resends it
        assert until(lambda: i.stats().get("applied") == 1, 10)
        assert conn.acked == [] and i.stats().get("acked") == 0
    finally:
        i.stop()


def test_a_refused_alarm_is_acknowledged_at_once_and_never_applied(site: Site) -> None:
    conn, db = Conn(), Db(down_for=0)
    i = inlet(site, conn, db)
    try:
        other = topic("demo", "cam-b7-stair1", Kind.ALARM)  # the payload names cam-b3-lane
        i.on_message(Msg(other, encode_alarm(fall(3)), 13))
        i.on_message(Msg(topic("demo", CAM, Kind.ALARM), b"\x00garbage", 14))
        assert conn.acked_now == [13, 14]
        time.sleep(0.3)
        assert db.calls == 0 and conn.acked == []
        assert i.stats()["rejected_device_mismatch"] == 1
        assert i.stats()["rejected_bad_json"] + i.stats().get("rejected_invalid", 0) == 1
    finally:
        i.stop()
