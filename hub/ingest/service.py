"""MQTT ingest: validate, batch, commit, then acknowledge.

The ingest is a consumer of the process's MQTT connection (:mod:`hub.mqtt`), which
has a fixed client id and a persistent session (``clean_start=False`` + a session
expiry interval). Telemetry and events come through shared subscriptions so several
ingest processes split the load; status comes through a plain subscription, because
retained messages (the presence of every device, Last Wills included) are never sent
to shared subscriptions.

Every QoS 1 message is acknowledged by hand, only after the batch that carries it has
committed. A crash, a kill or a database outage therefore loses nothing: the broker
keeps the unacknowledged messages and sends them again, and the store ignores what it
already holds. Malformed messages are counted by reason, logged (rate-limited),
acknowledged so they do not come back, and dropped.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from psycopg_pool import ConnectionPool

from hub import metrics
from hub.clock import Clock, SystemClock
from hub.config import Settings, Site
from hub.ingest.adapters import Adapters
from hub.ingest.ratelog import RateLimitedLog
from hub.mqtt import SESSION_EXPIRY_S, Consumer, MqttConnection
from hub.protocol import (
    ROOT,
    Event,
    Kind,
    Message,
    ProtocolError,
    Status,
    Telemetry,
    Topic,
    check_device_time,
    decode_json,
    parse_topic,
    subscription,
)
from hub.services import Broker
from hub.store.readings import WriteResult, forget_future_presence, sync_site, write_batch
from hub.store.sensing_feed import Feed

log = logging.getLogger(__name__)

INGEST_KINDS = (Kind.TELEMETRY, Kind.EVENT, Kind.STATUS)
_CONTRACT = ROOT + "/"
# Unacknowledged messages the broker may have in flight to this client (MQTT 5
# Receive Maximum; at most 65535). They wait in this process's queue while a batch
# commits or the database is away, so this bounds its memory (~4 kB a message).
# Past it the broker queues for the session: give it room (deploy/mosquitto sets
# max_queued_messages), since Mosquitto's default of 1000 drops QoS 1 messages
# beyond that.
RECEIVE_MAXIMUM = 20000
CONSUMER = "ingest"  # its name on the MQTT connection and in the metrics


# Young-generation size of the cyclic garbage collector in an ingest process.
GC_GEN0_THRESHOLD = 50_000


def tune_gc(gen0: int = GC_GEN0_THRESHOLD) -> None:
    """Fewer collections of the cyclic garbage collector, for a process that ingests.

    Each message leaves a dozen container objects (the validated model and its
    readings) alive until its batch commits, and a backlog holds tens of thousands of
    messages; with Python's default thresholds (700, 10, 10) the collector then spends
    more time walking the backlog than the ingest spends validating (the receive step
    takes 74.8 us a message with the defaults, 25.1 us with this setting:
    ``bench/ingest_gc.py``). Validated messages hold no
    reference cycles, so collecting less often frees the same memory. What exists at
    start-up (modules, the site) is frozen out of collections altogether.
    Process-wide, so called by the process's entry point, not by :class:`Ingest`."""
    gc.collect()
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(gen0, max(g1, 20), max(g2, 100))


@dataclass(slots=True)
class _Pending:
    mid: int
    qos: int
    gen: int  # connection generation the mid belongs to
    msg: Message
    received_at: datetime


def _weight(msg: Message) -> int:
    return len(msg.readings) if isinstance(msg, Telemetry) else 1


def _decode(kind: Kind, payload: bytes, device: str) -> Message:
    """The receive step's decoding: :func:`hub.protocol.decode_json`, which parses
    and validates strictly in one pass. Kept as the ingest's own name for
    ``bench/ingest_gc.py``."""
    return decode_json(kind, payload, device)


def _storable(msg: Message) -> None:
    """PostgreSQL text cannot hold NUL; reject such messages here rather than let
    them fail a whole batch."""
    if isinstance(msg, Telemetry):
        for i, r in enumerate(msg.readings):
            if r.unit and "\x00" in r.unit:
                raise ProtocolError("invalid", f"readings.{i}.unit contains a NUL character")
    elif isinstance(msg, Event):
        if _has_nul(msg.data):
            raise ProtocolError("invalid", "data contains a NUL character")
    elif isinstance(msg, Status) and msg.reason and "\x00" in msg.reason:
        raise ProtocolError("invalid", "reason contains a NUL character")


def _has_nul(obj: Any) -> bool:
    if isinstance(obj, str):
        return "\x00" in obj
    if isinstance(obj, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(_has_nul(v) for v in obj)
    return False


def _transient(err: BaseException) -> bool:
    """True for errors of the server or the connection: the batch is retried as it
    is. False for errors caused by the data (SQLSTATE classes 22 and 23, or a value
    the driver cannot send): the batch is split to find the message refused."""
    if isinstance(err, psycopg.DataError | psycopg.IntegrityError):  # SQLSTATE 22, 23
        return False
    return not isinstance(err, ValueError | TypeError | OverflowError)


class Ingest:
    """The ingest of one process. ``start()`` connects and begins consuming;
    ``stop()`` flushes what is queued, acknowledges it and disconnects (the session
    stays, so a restarted process continues where this one stopped)."""

    def __init__(
        self,
        *,
        db_url: str | ConnectionPool,
        broker: Broker,
        site: Site,
        client_id: str,
        shared_group: str = "hub",
        batch_max: int | None = None,
        batch_wait_ms: int | None = None,
        on_committed: Callable[[list[Message]], None] | None = None,
        sync: bool = True,
        keepalive: int = 30,
        session_expiry_s: int = SESSION_EXPIRY_S,
        retry_max_s: float = 5.0,
        receive_maximum: int = RECEIVE_MAXIMUM,
        max_clock_skew_s: float | None = None,
        clock: Clock | None = None,
        mqtt_connection: MqttConnection | None = None,
        feed: Feed | None = None,
    ) -> None:
        """``max_clock_skew_s``: how far ahead of ``clock`` a device's timestamp may
        be (``HUB_MAX_CLOCK_SKEW_S`` when None); later ones, and any before
        ``hub.protocol.TS_FLOOR``, are rejected as ``ts_future`` / ``ts_past``.
        ``mqtt_connection``: the process's shared connection (it must keep a persistent
        session; ``client_id``, ``keepalive``, ``session_expiry_s`` and
        ``receive_maximum`` are then its own); without one the ingest opens its own.
        ``feed``: also file every new message in the sensing feed, in its batch's
        transaction (``hub.store.sensing_feed``), for the sensing partitions' owners."""
        self.site = site
        self.site_id = site.site.id
        self.broker = broker
        self.client_id = client_id
        self.shared_group = shared_group
        if batch_max is None or batch_wait_ms is None or max_clock_skew_s is None:
            settings = Settings()
            batch_max = settings.batch_max if batch_max is None else batch_max
            batch_wait_ms = settings.batch_wait_ms if batch_wait_ms is None else batch_wait_ms
            if max_clock_skew_s is None:
                max_clock_skew_s = settings.max_clock_skew_s
        self.max_clock_skew_s = max_clock_skew_s
        self._clock: Clock = clock or SystemClock()
        self.batch_max = max(1, batch_max)  # readings (an event or status counts as 1)
        self.batch_wait = max(0.0, batch_wait_ms / 1000)
        self.on_committed = on_committed
        self.feed = feed
        self.keepalive = keepalive
        self.session_expiry_s = session_expiry_s
        self.retry_max_s = retry_max_s
        self.receive_maximum = max(1, min(65535, receive_maximum))
        self._sync = sync
        self._devices = frozenset(d.id for d in site.devices)
        # Inputs that are not the wire contract (the site file's adapters:).
        self._adapters = Adapters.from_site(site, max_skew_s=max_clock_skew_s)
        self._topics: dict[str, Topic] = {}
        # The writer is one long-lived thread: it keeps one connection of its own
        # (from the pool's settings when given a pool) and reconnects on its own
        # schedule, capped at retry_max_s, so that it is back within seconds of the
        # database; a pool's reconnection backoff can grow far longer.
        if isinstance(db_url, ConnectionPool):
            self._conninfo = db_url.conninfo
            self._conn_kwargs: dict[str, Any] = dict(db_url.kwargs or {})
        else:
            self._conninfo, self._conn_kwargs = db_url, {}
        self._conn_kwargs.setdefault("application_name", f"ingest-{client_id}")
        self._conn_kwargs.setdefault("connect_timeout", 5)
        # Every write is an explicit transaction block; nothing may linger between.
        self._conn_kwargs["autocommit"] = True
        self._conn: psycopg.Connection | None = None
        self._q: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counts: Tally[str] = Tally()
        self._rejected: Tally[str] = Tally()
        self._rlog = RateLimitedLog(log)
        self._writer: threading.Thread | None = None
        self._owns_mqtt = mqtt_connection is None
        if mqtt_connection is None:
            mqtt_connection = MqttConnection(
                broker, client_id, persistent_session=True,
                session_expiry_s=session_expiry_s, receive_maximum=self.receive_maximum,
                keepalive=keepalive)
        elif not mqtt_connection.persistent_session:
            raise ValueError("the ingest needs an MQTT connection with a persistent session:"
                             " it acknowledges only after commit")
        self._mqtt = mqtt_connection
        self._consumer: Consumer | None = None

    # ------------------------------------------------------------ lifecycle

    def subscriptions(self) -> list[tuple[str, int]]:
        """What the ingest consumes, at QoS 1: the site's telemetry and events through
        shared subscriptions, its status plainly, and the device adapters' topics."""
        return [
            (subscription(Kind.TELEMETRY, self.site_id, self.shared_group), 1),
            (subscription(Kind.EVENT, self.site_id, self.shared_group), 1),
            (subscription(Kind.STATUS, self.site_id), 1),
            *((f, 1) for f in self._adapters.subscriptions()),
        ]

    def start(self) -> None:
        if self._sync:
            conn = self._connection()
            sync_site(conn, self.site)
            bound = self._clock.now() + timedelta(seconds=self.max_clock_skew_s)
            for dev in forget_future_presence(conn, bound):
                log.warning("dropped presence times from the future",
                            extra={"device": dev, "bound": bound.isoformat()})
        self._writer = threading.Thread(
            target=self._write_loop, name=f"ingest-writer-{self.client_id}", daemon=True
        )
        self._writer.start()
        # Looked up here, not bound earlier, so a benchmark can wrap the handler.
        # The process's bulk consumer: its messages carry no subscription identifier
        # (hub.mqtt says why), and on_message checks every topic itself.
        self._consumer = self._mqtt.add_consumer(
            CONSUMER, self.subscriptions(), self.on_message, manual_ack=True,
            identified=False)
        if self._owns_mqtt:
            self._mqtt.start()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """True once connected and every subscription is acknowledged."""
        return self._consumer is not None and self._consumer.ready.wait(timeout)

    def stop(self, flush_timeout: float = 10.0) -> None:
        self._stop.set()
        if self._writer is not None:
            self._writer.join(flush_timeout)
        if self._consumer is not None:
            self._mqtt.stop_consumer(self._consumer)
        if self._owns_mqtt:
            self._mqtt.stop()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Ingest:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
            out["rejected"] = dict(self._rejected)
        out["rejected_total"] = sum(out["rejected"].values())
        out["pending"] = self._q.qsize()
        out["connected"] = self._mqtt.connected
        return out

    # ------------------------------------------------------------ MQTT side

    def on_message(self, m: mqtt.MQTTMessage) -> None:
        """The consumer's handler, on the connection's network thread: decode and
        validate, then queue for the writer."""
        if self._stop.is_set():
            return  # left unacknowledged: the session delivers it again after restart
        rx = self._clock.now()
        gen = self._mqtt.generation
        if self._adapters and not m.topic.startswith(_CONTRACT):
            self._adapt(m, rx, gen)
            return
        try:
            t = self._topics.get(m.topic) or self._parse_topic(m.topic)
            msg = _decode(t.kind, m.payload, t.device)
            # Rules run on device time: one impossible time would poison them.
            check_device_time(msg.ts, rx, self.max_clock_skew_s)
            # JSON can carry NUL only as an escape; most payloads skip the walk.
            if b"\\u0000" in m.payload:
                _storable(msg)
        except ProtocolError as e:
            self._reject(m, e.reason, e.detail)
            return
        except Exception as e:  # noqa: BLE001 - a consumer that never stops
            self._reject(m, "invalid", f"{type(e).__name__}: {e}")
            return
        self._q.put(_Pending(m.mid, m.qos, gen, msg, rx))

    def _parse_topic(self, name: str) -> Topic:
        t = parse_topic(name)
        if t.kind not in INGEST_KINDS:
            raise ProtocolError("bad_topic", f"{t.kind.value} is not ingested here")
        if t.device not in self._devices:
            raise ProtocolError("unknown_device", f"device {t.device!r} is not in the site")
        # Only topics of the site's own devices are kept, so the cache is bounded.
        self._topics[name] = t
        return t

    def _reject(self, m: mqtt.MQTTMessage, reason: str, detail: str) -> None:
        metrics.MESSAGES_REJECTED.labels(reason).inc()
        with self._lock:
            self._rejected[reason] += 1
        topic = m.topic if isinstance(m.topic, str) else repr(m.topic)
        parts = topic.split("/")
        self._rlog.warning(
            reason,
            "message rejected",
            extra={"reason": reason, "topic": topic[:200],
                   "device": parts[3][:64] if len(parts) > 3 else None, "detail": detail[:300]},
        )
        self._mqtt.ack_message(m)

    # ------------------------------------------------------------ device adapters

    def _adapt(self, m: mqtt.MQTTMessage, rx: datetime, gen: int) -> None:
        """A message outside the wire contract: its adapter's translation goes on like
        any device's messages. One MQTT message may become several; only the last
        carries the acknowledgement, so the message is acked once all are committed
        (the writer commits in order) and redelivered otherwise."""
        out = self._adapters.translate(m.topic, m.payload, rx)
        for r in out.rejections:
            self._count_rejected(m.topic, r.reason, r.detail, r.device)
        msgs: list[Message] = []
        for msg in out.messages:
            try:
                check_device_time(msg.ts, rx, self.max_clock_skew_s)
                _storable(msg)
            except ProtocolError as e:
                self._count_rejected(m.topic, e.reason, e.detail, msg.device)
                continue
            msgs.append(msg)
        if out.ignored:
            with self._lock:
                self._counts["adapter_ignored"] += 1
        if not msgs:
            self._mqtt.ack_message(m)
            return
        with self._lock:
            self._counts["adapter_translated"] += 1
        last = len(msgs) - 1
        for i, msg in enumerate(msgs):
            mid, qos = (m.mid, m.qos) if i == last else (0, 0)
            self._q.put(_Pending(mid, qos, gen, msg, rx))

    def _count_rejected(self, topic: str, reason: str, detail: str, device: str | None) -> None:
        metrics.MESSAGES_REJECTED.labels(reason).inc()
        with self._lock:
            self._rejected[reason] += 1
        self._rlog.warning(reason, "message rejected", extra={
            "reason": reason, "topic": topic[:200], "device": device, "detail": detail[:300]})

    # ------------------------------------------------------------ writer

    def _next_batch(self) -> list[_Pending]:
        try:
            first = self._q.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        weight = _weight(first.msg)
        deadline = time.monotonic() + self.batch_wait
        while weight < self.batch_max:
            left = deadline - time.monotonic()
            try:
                p = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
            except queue.Empty:
                break
            batch.append(p)
            weight += _weight(p.msg)
        return batch

    def _write_loop(self) -> None:
        received = {k: metrics.MESSAGES_RECEIVED.labels(k.value) for k in INGEST_KINDS}
        kind_of = {Telemetry: Kind.TELEMETRY, Event: Kind.EVENT, Status: Kind.STATUS}
        while True:
            stopping = self._stop.is_set()
            batch = self._next_batch()
            if batch:
                # Counted here, per batch, to keep the receive path short.
                n = Tally(kind_of[type(p.msg)] for p in batch)
                for k, c in n.items():
                    received[k].inc(c)
                for p in batch:
                    lag = (p.received_at - p.msg.ts).total_seconds()
                    metrics.LAG_SECONDS.observe(max(0.0, lag))
                metrics.PENDING.set(len(batch) + self._q.qsize())
                self._commit_with_retry(batch)
            elif stopping:
                return

    def _commit_with_retry(self, batch: list[_Pending]) -> None:
        delay = 0.1
        while True:
            try:
                self._commit(batch)
                return
            except Exception as e:  # noqa: BLE001
                if not _transient(e):
                    self._commit_split(batch)
                    return
                metrics.DB_ERRORS.labels(type(e).__name__).inc()
                with self._lock:
                    self._counts["db_errors"] += 1
                self._rlog.warning(
                    "db", "batch write failed; will retry, nothing acknowledged",
                    extra={"client_id": self.client_id, "messages": len(batch),
                           "error": f"{type(e).__name__}: {e}"[:300], "retry_in_s": delay},
                )
                # On stop during an outage the batch stays unacknowledged: the broker
                # delivers it again to whichever process takes the session.
                if self._stop.wait(delay):
                    return
                delay = min(self.retry_max_s, delay * 2)

    def _commit_split(self, batch: list[_Pending]) -> None:
        """A batch the database refuses for its data: store the messages one by one
        and drop only those refused, so one bad message cannot stall the stream."""
        for p in batch:
            try:
                self._commit([p])
            except Exception as e:  # noqa: BLE001
                if _transient(e):
                    self._commit_with_retry([p])
                    continue
                metrics.MESSAGES_REJECTED.labels("unstorable").inc()
                with self._lock:
                    self._rejected["unstorable"] += 1
                self._rlog.warning(
                    "unstorable", "message refused by the database",
                    extra={"device": p.msg.device, "seq": p.msg.seq, "error": str(e)[:300]},
                )
                self._ack([p])

    def _commit(self, batch: Sequence[_Pending]) -> None:
        tel = [(p.msg, p.received_at) for p in batch if isinstance(p.msg, Telemetry)]
        evs = [(p.msg, p.received_at) for p in batch if isinstance(p.msg, Event)]
        sts = [(p.msg, p.received_at) for p in batch if isinstance(p.msg, Status)]
        t0 = time.perf_counter()
        res = write_batch(self._connection(), tel, evs, sts,  # type: ignore[arg-type]
                          feed=self.feed)
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - t0)
        metrics.BATCH_MESSAGES.observe(len(batch))
        self._account(res)
        if self.on_committed is not None:
            try:
                self.on_committed([p.msg for p in batch])
            except Exception:  # noqa: BLE001 - a subscriber's bug must not stall ingest
                metrics.CALLBACK_ERRORS.inc()
                log.exception("on_committed subscriber failed", extra={"client_id": self.client_id})
        self._ack(batch)
        metrics.PENDING.set(self._q.qsize())

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = psycopg.connect(self._conninfo, **self._conn_kwargs)
        return self._conn

    def _account(self, res: WriteResult) -> None:
        metrics.READINGS_STORED.inc(res.readings_stored)
        metrics.EVENTS_STORED.inc(res.events_stored)
        if res.telemetry_duplicate:
            metrics.DUPLICATES.labels("telemetry").inc(res.telemetry_duplicate)
        if res.events_duplicate:
            metrics.DUPLICATES.labels("event").inc(res.events_duplicate)
        with self._lock:
            c = self._counts
            c["batches"] += 1
            c["readings_stored"] += res.readings_stored
            c["telemetry_stored"] += res.telemetry_stored
            c["events_stored"] += res.events_stored
            c["statuses"] += res.statuses
            c["duplicates"] += res.duplicates
            c["stored"] += res.stored

    def _ack(self, batch: Sequence[_Pending]) -> None:
        gen = self._mqtt.generation
        # A mid from an earlier connection may already name another message: the
        # broker resent the old one after reconnecting, and its copy is acked. Every
        # subscription is QoS 1, so nothing arrives at QoS 2.
        mids = [p.mid for p in batch if p.qos > 0 and p.gen == gen]
        acked = self._mqtt.ack(mids, gen)
        with self._lock:
            self._counts["acked"] += acked
