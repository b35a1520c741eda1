"""Publishing alarms on the durable inlet: a detector's process hands each ``Alarm``
to an :class:`AlarmPublisher`, which publishes it at QoS 1 on its device's ``alarm``
topic (``sc/v1/{site}/{device}/alarm``) through the process's MQTT connection and
keeps it until the broker's PUBACK. While the broker is away the alarms wait in a
bounded queue (full: the newest is refused and counted), are published again, in
order, once it is back, and a publish that got no PUBACK is repeated. So is one
whose PUBACK said that no subscription matched: no alert worker's session holds the
inlet yet (none has ever started, or the broker lost its subscriptions in a restart),
and the broker dropped it. A repeat is harmless, the alert workers apply an alarm id
once (``hub.alerts.inlet``).

``publish`` never blocks on the network: the vision worker's analysis threads call
it.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from prometheus_client import Counter, Gauge

from hub.alarmwire import encode_alarm
from hub.domain import Alarm
from hub.ingest.ratelog import RateLimitedLog
from hub.protocol import Kind, ProtocolError, topic

log = logging.getLogger(__name__)
_rlog = RateLimitedLog(log, burst=5, period=60.0)

PUBLISHED = Counter("hub_alarms_published_total",
                    "Alarms published on the alarm inlet and acknowledged by the broker")
DROPPED = Counter("hub_alarms_publish_dropped_total",
                  "Alarms a detector's process could not publish (queue_full, invalid)",
                  ["reason"])
QUEUED = Gauge("hub_alarms_publish_queued",
               "Alarms waiting for the broker's acknowledgement in this process")

DEFAULT_MAX_QUEUED = 10_000
BATCH = 200


class Publisher(Protocol):
    """What the publisher needs of the connection (``hub.mqtt.MqttConnection``)."""

    def publish_many(self, messages: Sequence[tuple[str, bytes]], *, by: str,
                     qos: int = 1, timeout: float = 5.0,
                     require_subscriber: bool = False) -> list[str | None]: ...


class AlarmPublisher:
    def __init__(self, connection: Publisher, site_id: str, *,
                 max_queued: int = DEFAULT_MAX_QUEUED, ack_timeout_s: float = 5.0,
                 retry_max_s: float = 5.0) -> None:
        self.connection = connection
        self.site_id = site_id
        self.max_queued = max_queued
        self.ack_timeout_s = ack_timeout_s
        self.retry_max_s = retry_max_s
        self._queue: collections.deque[tuple[str, bytes, str]] = collections.deque()
        self._cond = threading.Condition()
        self._sending = 0  # taken from the queue's head, not yet acknowledged
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = 0
        self.dropped: collections.Counter[str] = collections.Counter()

    # ------------------------------------------------------------ input

    def publish(self, alarm: Alarm) -> bool:
        """Queue ``alarm`` for the inlet (thread-safe, never blocks on the network);
        False when it was refused (counted: ``invalid``, ``queue_full``)."""
        try:
            payload = encode_alarm(alarm)
            where = topic(self.site_id, alarm.device_id or "", Kind.ALARM)
        except ProtocolError as e:
            self._drop("invalid", alarm, e.detail)
            return False
        with self._cond:
            if len(self._queue) >= self.max_queued:
                full = True
            else:
                full = False
                self._queue.append((where, payload, alarm.dedup_key))
                QUEUED.inc()
                self._cond.notify_all()
        if full:
            self._drop("queue_full", alarm, f"{self.max_queued} alarms wait for the broker")
            return False
        return True

    __call__ = publish  # the vision worker's ``on_alarm``

    def _drop(self, reason: str, alarm: Alarm, detail: str) -> None:
        DROPPED.labels(reason).inc()
        self.dropped[reason] += 1
        _rlog.warning(f"alarm not published: {reason}", "alarm not published", extra={
            "reason": reason, "detail": detail, "rule": alarm.rule,
            "dedup_key": alarm.dedup_key, "device": alarm.device_id})

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> AlarmPublisher:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="alarm-publisher",
                                            daemon=True)
            self._thread.start()
        return self

    def flush(self, timeout: float) -> bool:
        """Wait until the broker acknowledged every queued alarm."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Publish what is queued (up to ``timeout``), then end the thread. What is
        still queued is logged: it was never acknowledged by the broker."""
        self.flush(timeout)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        left = self.queued
        if left:
            log.error("alarms not acknowledged by the broker at stop", extra={"alarms": left})

    def stats(self) -> dict[str, object]:
        return {"queued": self.queued, "published": self.published,
                "dropped": dict(self.dropped)}

    # ------------------------------------------------------------ sending

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stop.is_set(), 1.0)
                batch = [self._queue[i] for i in range(min(BATCH, len(self._queue)))]
            if not batch:
                continue
            errors = self.connection.publish_many(
                [(t, p) for t, p, _ in batch], by="alarms", qos=1,
                timeout=self.ack_timeout_s, require_subscriber=True)
            # Remove only the acknowledged head; the rest goes again, in order.
            done = 0
            for err in errors:
                if err is not None:
                    break
                done += 1
            with self._cond:
                for _ in range(done):
                    self._queue.popleft()
                self._cond.notify_all()
            QUEUED.dec(done)
            PUBLISHED.inc(done)
            self.published += done
            if done < len(batch):
                first = errors[done]
                _rlog.warning("alarm publish", "alarms kept for the broker", extra={
                    "alarms": len(batch) - done, "error": first,
                    "dedup_key": batch[done][2], "attempt": attempt})
                self._stop.wait(min(self.retry_max_s, 0.2 * 2 ** min(attempt, 5)))
                attempt += 1
            else:
                attempt = 0
