"""The durable alarm inlet: alarms from the broker into the incident engine.

Alert workers subscribe to ``$share/{group}/sc/v1/{site}/+/alarm`` on the process's
MQTT connection (a persistent session, manual acknowledgement), so every alarm goes
to one of them. The handler, on the network thread, reads and checks the alarm
(``hub.alarmwire.read_alarm``); a refused one is counted in
``hub_alarms_rejected_total{reason}``, logged (rate limited) and acknowledged, so it
never comes back. A good one is queued; the inlet's thread applies the queue in one
incident transaction (``apply``: ``AlertService.apply_now``) and acknowledges its
messages only after that transaction committed. While the database is away nothing
is acknowledged and the batch is tried again; a worker killed before its commit
leaves the messages unacknowledged in its session, and the broker delivers them
again when it reconnects. The store records an alarm under its id, so a redelivered
or repeated alarm opens no second incident and adds no second timeline entry. The
queue is bounded by the connection's receive maximum (unacknowledged messages).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from hub.alarmwire import read_alarm
from hub.alerts.metrics import BAD_ALARMS
from hub.clock import Clock
from hub.config import Site
from hub.domain import Alarm
from hub.ingest.ratelog import RateLimitedLog
from hub.protocol import Kind, ProtocolError, subscription

log = logging.getLogger(__name__)
_rlog = RateLimitedLog(log, burst=5, period=60.0)

CONSUMER = "alarms"
# Unacknowledged alarms the broker may have in flight to an alerts-only process (its
# connection's receive maximum): what the inlet's queue can hold at most.
RECEIVE_MAXIMUM = 1000


class Connection(Protocol):
    """What the inlet needs of ``hub.mqtt.MqttConnection``."""

    generation: int

    def add_consumer(self, name: str, subscriptions: Any, handler: Any, *,
                     manual_ack: bool = False, identified: bool = True) -> Any: ...

    def stop_consumer(self, consumer: Any) -> None: ...

    def ack(self, mids: Sequence[int], generation: int) -> int: ...

    def ack_message(self, msg: mqtt.MQTTMessage) -> None: ...


@dataclass(frozen=True, slots=True)
class _Received:
    alarm: Alarm
    mid: int
    qos: int
    gen: int
    at: float  # monotonic receive time


class AlarmInlet:
    """``apply(alarms, received)`` commits the alarms' incidents (one transaction)
    and raises when the database cannot be reached."""

    def __init__(self, connection: Connection, site: Site, clock: Clock,
                 apply: Callable[[Sequence[Alarm], float], Any], *,
                 shared_group: str = "hub", max_skew_s: float = 300.0,
                 categories: Callable[[], Container[str]] | None = None,
                 batch_max: int = 200) -> None:
        self.connection = connection
        self.site = site
        self.clock = clock
        self.apply = apply
        self.shared_group = shared_group
        self.max_skew_s = max_skew_s
        self.categories = categories
        self.batch_max = batch_max
        self._q: queue.Queue[_Received] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Any = None
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    @property
    def subscription(self) -> str:
        return subscription(Kind.ALARM, self.site.site.id, self.shared_group)

    def start(self) -> AlarmInlet:
        """Register the consumer (before or after the connection starts) and start
        the applying thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="alarm-inlet", daemon=True)
        self._thread.start()
        self._consumer = self.connection.add_consumer(
            CONSUMER, [(self.subscription, 1)], self.on_message, manual_ack=True)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking messages and end the thread after its batch; what is queued
        and not committed stays unacknowledged, for the session to deliver again."""
        if self._consumer is not None:
            self.connection.stop_consumer(self._consumer)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def ready(self) -> bool:
        return self._consumer is not None and self._consumer.ready.is_set()

    def wait_ready(self, timeout: float) -> bool:
        return self._consumer is not None and bool(self._consumer.ready.wait(timeout))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"queued": self._q.qsize(), **self.counts}

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    # ------------------------------------------------------------ network thread

    def on_message(self, m: mqtt.MQTTMessage) -> None:
        if self._stop.is_set():
            return  # unacknowledged: delivered again on the next connection
        gen = self.connection.generation
        self._count("received")
        try:
            alarm = read_alarm(m.topic, m.payload, self.site, self.clock.now(),
                               max_skew_s=self.max_skew_s,
                               categories=self.categories() if self.categories else None)
        except ProtocolError as e:
            self._reject(m, e.reason, e.detail)
            return
        except Exception as e:  # noqa: BLE001 - the consumer must survive any payload
            self._reject(m, "invalid", f"{type(e).__name__}: {e}")
            return
        self._q.put(_Received(alarm, m.mid, m.qos, gen, time.monotonic()))

    def _reject(self, m: mqtt.MQTTMessage, reason: str, detail: str) -> None:
        BAD_ALARMS.labels(reason).inc()
        self._count("rejected")
        self._count(f"rejected_{reason}")
        device = m.topic.split("/")[3] if m.topic.count("/") >= 4 else None
        # Keyed by reason only: device ids in topics are not bounded.
        _rlog.warning(f"inlet:{reason}", "alarm rejected", extra={
            "reason": reason, "detail": detail[:300], "topic": m.topic[:200],
            "device": device})
        self.connection.ack_message(m)

    # ------------------------------------------------------------ applying thread

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._q.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.batch_max:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            self._apply(batch)

    def _apply(self, batch: list[_Received]) -> None:
        attempt = 0
        while True:
            try:
                self.apply([r.alarm for r in batch], min(r.at for r in batch))
                break
            except Exception as e:  # noqa: BLE001 - the database is away: keep, retry
                _rlog.warning("inlet:apply", "database unavailable; alarms not acknowledged,"
                              " retried", extra={"alarms": len(batch), "error": str(e)[:200],
                                                 "attempt": attempt})
                if self._stop.wait(min(5.0, 0.2 * 2 ** min(attempt, 5))):
                    return  # unacknowledged: the broker delivers them again
                attempt += 1
        self._count("applied", len(batch))
        by_gen: dict[int, list[int]] = {}
        for r in batch:
            if r.qos > 0:
                by_gen.setdefault(r.gen, []).append(r.mid)
        acked = sum(self.connection.ack(mids, gen) for gen, mids in by_gen.items())
        self._count("acked", acked)
