"""The alarm publisher keeps each alarm until the broker acknowledged it: a publish
that failed is repeated, in order; a full queue refuses the newest, counted."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from hub.alarmbus import AlarmPublisher
from hub.domain import Alarm, AlarmState, Severity

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def alarm(i: int, device: str | None = "cam-1") -> Alarm:
    return Alarm(rule="fall", category="fall", severity=Severity.CRITICAL,
                 state=AlarmState.FIRING, dedup_key=f"fall:cam-1:{i}",
                 ts=T0 + timedelta(seconds=i), title="fall", device_id=device)


class Broker:
    """Fails the first ``fail`` publishes of each call's second message on."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[list[str]] = []
        self.acked: list[str] = []
        self.lock = threading.Lock()

    def publish_many(self, messages: Sequence[tuple[str, bytes]], *, by: str,
                     qos: int = 1, timeout: float = 5.0,
                     require_subscriber: bool = False) -> list[str | None]:
        assert by == "alarms" and qos == 1 and require_subscriber
        keys = [json.loads(p)["dedup_key"] for _, p in messages]
        with self.lock:
            self.calls.append(keys)
            out: list[str | None] = []
            for k in keys:
                if self.failures > 0 and len(out) >= 1:
                    self.failures -= 1
                    out.append("MQTT broker did not acknowledge within the timeout")
                else:
                    self.acked.append(k)
                    out.append(None)
            return out


def test_unacknowledged_alarms_are_published_again_in_order() -> None:
    broker = Broker(failures=2)
    pub = AlarmPublisher(broker, "site1", retry_max_s=0.01)
    for i in range(3):
        assert pub.publish(alarm(i))
    assert pub.queued == 3
    pub.start()
    assert pub.flush(5)
    pub.stop()
    keys = [f"fall:cam-1:{i}" for i in range(3)]
    # Everything after the first failure goes again, in order, until acknowledged.
    assert broker.calls[0] == keys
    assert broker.acked[0] == keys[0]
    assert [k for k in broker.acked if k != keys[0]][-2:] == keys[1:]
    assert pub.stats() == {"queued": 0, "published": 3, "dropped": {}}


def test_a_full_queue_refuses_the_newest_and_counts_it() -> None:
    pub = AlarmPublisher(Broker(0), "site1", max_queued=2)
    assert pub.publish(alarm(0)) and pub.publish(alarm(1))
    assert not pub.publish(alarm(2))
    assert pub.queued == 2 and pub.dropped["queue_full"] == 1


def test_an_alarm_the_contract_cannot_carry_is_refused_at_the_source() -> None:
    pub = AlarmPublisher(Broker(0), "site1")
    assert not pub.publish(alarm(0, device=None))
    assert pub.queued == 0 and pub.dropped["invalid"] == 1


def test_the_topic_is_the_devices_alarm_topic() -> None:
    seen: list[str] = []

    class Conn:
        def publish_many(self, messages: Sequence[tuple[str, bytes]], **_: object
                         ) -> list[str | None]:
            seen.extend(t for t, _ in messages)
            return [None] * len(messages)

    pub = AlarmPublisher(Conn(), "site1").start()
    pub.publish(alarm(0))
    assert pub.flush(5)
    pub.stop()
    assert seen == ["sc/v1/site1/cam-1/alarm"]
