"""The MQTT connection of a hub process: one paho client (MQTT 5) that every part of
the process shares, with one reconnect policy and one set of metrics.

Consumers (the ingest, a vision worker) register their subscriptions under a name;
publishers (the alert notifier) publish through the same client. Each consumer's
subscriptions go out in a SUBSCRIBE of their own with an MQTT 5 *subscription
identifier*, and the broker names in every message the subscriptions it matched, so
a message reaches the consumer whose subscription it matched even where two
consumers' filters overlap (the ingest's shared ``$share/hub/.../event`` and a
vision worker's own cameras' events both match a camera's event; Mosquitto sends one
copy per subscription).

The process's bulk consumer (the ingest) registers ``identified=False``: paho parses
MQTT 5 properties in Python, and a message carrying an identifier costs it about
30 us more to receive than one carrying none, as much again as the ingest's own
validation. A message without identifiers goes to the one such consumer, which checks
its topics itself (matching filters in Python costs more again); with several, to
those whose filters match. A broker that sends no identifiers gets topic matching for
every consumer.

The client acknowledges by hand (paho's ``manual_ack``). A consumer that registers
with ``manual_ack`` acknowledges its QoS 1 messages itself, through :meth:`ack`, once
what they carry is committed; every other consumer's messages are acknowledged as
soon as its handler returns. A message of a consumer that has stopped is left
unacknowledged: with a persistent session the broker delivers it again on the next
connection. Acknowledgements are per connection: :attr:`generation` counts
connections, and a message id of an earlier connection is never acknowledged (after a
reconnect the id may name another message; the broker resends the old one).

Handlers run on paho's network thread: they must be quick (queue the work) and must
not block on the network.

Over TLS (``mqtts://``, :class:`hub.services.Tls`) the broker's certificate is
checked before the first connection (:func:`hub.services.check_tls`): a CA that did
not sign it stops ``start`` with a clear error instead of a client retrying forever.
"""

from __future__ import annotations

import logging
import threading
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from prometheus_client import Counter, Gauge

from hub.services import Broker, check_tls

log = logging.getLogger(__name__)

# paho's own backoff between reconnection attempts: doubling from the first to the
# last, so a hub is back within half a second of a broker restart and does not
# hammer a broker that stays away.
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 10.0
KEEPALIVE_S = 30
# A PUBACK saying no subscription matched: the broker dropped the message.
NO_MATCHING_SUBSCRIBERS = 0x10
NO_SUBSCRIBER_ERROR = "no subscriber: the broker dropped the message"
# paho allows 20 unacknowledged outgoing messages by default; a burst of alerts would
# queue behind them client-side.
MAX_INFLIGHT = 1000
SESSION_EXPIRY_S = 7 * 24 * 3600

CONNECTED = Gauge("hub_mqtt_connected", "1 while the process's MQTT connection is up"
                  " (a process running several connections counts each)")
RECONNECTS = Counter("hub_mqtt_reconnects_total",
                     "MQTT connections re-established after one was lost")
DISCONNECTS = Counter("hub_mqtt_disconnects_total", "MQTT connections lost", ["reason"])
MESSAGES_IN = Counter("hub_mqtt_messages_in_total", "MQTT messages received, by consumer",
                      ["consumer"])
MESSAGES_OUT = Counter("hub_mqtt_messages_out_total", "MQTT messages published, by publisher",
                       ["consumer"])
PUBLISH_FAILURES = Counter(
    "hub_mqtt_publish_failures_total",
    "MQTT publishes that failed: not connected, refused by the client, or not"
    " acknowledged by the broker in time", ["consumer"])
UNROUTED = Counter("hub_mqtt_messages_unrouted_total",
                   "MQTT messages no running consumer subscribed to (acknowledged, dropped)")
HANDLER_ERRORS = Counter("hub_mqtt_handler_errors_total",
                         "Exceptions raised by a consumer's message handler", ["consumer"])

Handler = Callable[[mqtt.MQTTMessage], None]


def topic_filter(subscription: str) -> str:
    """The filter a message's topic is matched against: a shared subscription's
    (``$share/{group}/{filter}``) without its prefix."""
    if subscription.startswith("$share/"):
        parts = subscription.split("/", 2)
        return parts[2] if len(parts) == 3 else ""
    return subscription


@dataclass(eq=False)
class Consumer:
    """One consumer's registration. ``ready`` is set while its subscriptions are
    acknowledged by the broker on the current connection."""

    name: str
    subscriptions: tuple[tuple[str, int], ...]
    handler: Handler
    manual_ack: bool
    ident: int | None  # its subscription identifier; None: registered identified=False
    ready: threading.Event = field(default_factory=threading.Event)
    running: bool = True
    _filters: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._filters = tuple(topic_filter(t) for t, _ in self.subscriptions)
        # Looked up once: labels() costs about 1 us a message, the bare inc() 0.3 us.
        self.received = MESSAGES_IN.labels(self.name)

    def matches(self, topic: str) -> bool:
        return any(mqtt.topic_matches_sub(f, topic) for f in self._filters)


class MqttConnection:
    """The process's one MQTT client. Register consumers (``add_consumer``) before or
    after ``start``; ``stop`` after every consumer stopped.

    ``persistent_session``: keep the session (``clean_start=False``, a session expiry
    interval) so QoS 1 messages published while the process is down wait for it; the
    ingest needs it, and with it a fixed ``client_id``. ``receive_maximum``: how many
    unacknowledged QoS 1 messages the broker may have in flight to this client."""

    def __init__(self, broker: Broker, client_id: str | None = None, *,
                 persistent_session: bool = False,
                 session_expiry_s: int = SESSION_EXPIRY_S,
                 receive_maximum: int | None = None,
                 keepalive: int = KEEPALIVE_S) -> None:
        self.broker = broker
        self.client_id = client_id or f"hub-{uuid.uuid4().hex[:8]}"
        self.persistent_session = persistent_session
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = (None if receive_maximum is None
                                else max(1, min(65535, receive_maximum)))
        self.keepalive = keepalive
        self._lock = threading.Lock()
        self._consumers: tuple[Consumer, ...] = ()
        self._by_ident: dict[int, Consumer] = {}
        self._plain: tuple[Consumer, ...] = ()  # who takes messages without identifiers
        self._pending_subs: dict[int, Consumer] = {}  # SUBSCRIBE mid -> consumer
        self._early_subacks: dict[int, list[Any]] = {}  # SUBACKs that beat _subscribe
        self._connected = threading.Event()
        self._counted_connected = False
        self._started = False
        self._stopping = False
        self._connects = 0
        self._sub_ids = True  # until the broker's CONNACK says otherwise
        # Message ids whose PUBACK said no subscription matched (publish_many's
        # require_subscriber); 16-bit ids, so the set stays small.
        self._unheard: set[int] = set()
        self.generation = 0  # connections so far; changes on the network thread
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True)
        if broker.username:
            self._client.username_pw_set(broker.username, broker.password)
        if broker.tls is not None:
            broker.tls.apply(self._client)
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._client.max_inflight_messages_set(MAX_INFLIGHT)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish

    # ------------------------------------------------------------ lifecycle

    def start(self) -> MqttConnection:
        """Connect in the background (paho's network thread reconnects on its own,
        with the backoff above). Idempotent."""
        with self._lock:
            if self._started:
                return self
        # A broker whose certificate is not trusted is a configuration error, not an
        # outage: say so now (BrokerTlsError) rather than retry in the background.
        check_tls(self.broker)
        with self._lock:
            if self._started:
                return self
            self._started = True
        props = Properties(PacketTypes.CONNECT)
        if self.persistent_session:
            props.SessionExpiryInterval = self.session_expiry_s
        if self.receive_maximum is not None:
            props.ReceiveMaximum = self.receive_maximum
        self._client.connect_async(
            self.broker.host, self.broker.port, keepalive=self.keepalive,
            clean_start=not self.persistent_session, properties=props)
        self._client.loop_start()
        return self

    def stop(self) -> None:
        """Disconnect (a persistent session stays with the broker) and end the
        network thread."""
        with self._lock:
            if not self._started:
                return
            self._started = False
            self._stopping = True
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
            self._set_disconnected()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stats(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "connected": self.connected,
                "connections": self._connects,
                "consumers": {c.name: c.ready.is_set() for c in self._consumers}}

    # ------------------------------------------------------------ consumers

    def add_consumer(self, name: str, subscriptions: Iterable[tuple[str, int]],
                     handler: Handler, *, manual_ack: bool = False,
                     identified: bool = True) -> Consumer:
        """Register ``handler`` for messages matching ``subscriptions`` ((filter,
        QoS) pairs; a shared subscription as ``$share/{group}/{filter}``). With
        ``manual_ack`` the consumer acknowledges its QoS 1 messages itself.
        ``identified=False``: its subscriptions carry no identifier (see the module);
        for the bulk consumer, which must then check the topics it is given."""
        subs = tuple((t, int(q)) for t, q in subscriptions)
        with self._lock:
            if any(c.name == name for c in self._consumers):
                raise ValueError(f"an MQTT consumer named {name!r} is already registered")
            ident = None
            if identified:
                ident = _ident(name, subs)
                while ident in self._by_ident:  # a hash collision: any free one will do
                    ident = ident % _MAX_IDENT + 1
            consumer = Consumer(name, subs, handler, manual_ack, ident)
            self._consumers = (*self._consumers, consumer)
            if ident is not None:
                self._by_ident[ident] = consumer
            self._plain = self._unidentified()
            connected = self._connected.is_set()
        if connected:
            self._subscribe(consumer)
        return consumer

    def stop_consumer(self, consumer: Consumer) -> None:
        """Stop handing messages to ``consumer``. Its subscriptions stay (a persistent
        session keeps queueing for it); what arrives for it meanwhile is not
        acknowledged, so it comes again on the next connection."""
        consumer.running = False
        consumer.ready.clear()

    def remove_consumer(self, consumer: Consumer) -> None:
        """Stop ``consumer`` and take its subscriptions back from the broker (a
        consumer that subscribes only while needed, such as a camera's live view).
        Its filters must be its own: another consumer's same filter would go too."""
        consumer.running = False
        consumer.ready.clear()
        with self._lock:
            self._consumers = tuple(c for c in self._consumers if c is not consumer)
            if consumer.ident is not None and self._by_ident.get(consumer.ident) is consumer:
                del self._by_ident[consumer.ident]
            self._plain = self._unidentified()
            connected = self._connected.is_set()
        if connected and consumer.subscriptions:
            self._client.unsubscribe([t for t, _ in consumer.subscriptions])

    def _subscribe(self, consumer: Consumer) -> None:
        if not consumer.subscriptions:
            consumer.ready.set()
            return
        props = None
        if self._sub_ids and consumer.ident is not None:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = consumer.ident
        subs = [(t, SubscribeOptions(qos=q)) for t, q in consumer.subscriptions]
        rc, mid = self._client.subscribe(subs, properties=props)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            log.warning("mqtt subscribe not sent", extra={
                "client_id": self.client_id, "consumer": consumer.name,
                "rc": mqtt.error_string(rc)})
            return
        with self._lock:
            # The SUBACK may already have been handled on the network thread.
            codes = self._early_subacks.pop(mid, None)
            if codes is None:
                self._pending_subs[mid] = consumer
        if codes is not None:
            self._subscribed(consumer, codes)

    # ------------------------------------------------------------ acknowledgements

    def ack(self, mids: Sequence[int], generation: int) -> int:
        """Acknowledge QoS 1 messages of a ``manual_ack`` consumer received on
        connection ``generation``; returns how many were acknowledged (none when the
        connection has changed since)."""
        if generation != self.generation:
            return 0
        ack = self._client.ack
        for mid in mids:
            ack(mid, 1)
        return len(mids)

    def ack_message(self, msg: mqtt.MQTTMessage) -> None:
        """Acknowledge one message now (on the network thread, from its handler: a
        message refused as malformed, which must not come back)."""
        if msg.qos > 0:
            self._client.ack(msg.mid, msg.qos)

    # ------------------------------------------------------------ publishing

    def publish(self, topic: str, payload: bytes, qos: int = 1, *, by: str,
                retain: bool = False) -> mqtt.MQTTMessageInfo:
        """Queue one message; the caller may wait on the returned info. Counted as
        out when paho took it, as a failure otherwise."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            MESSAGES_OUT.labels(by).inc()
        else:
            PUBLISH_FAILURES.labels(by).inc()
        return info

    def publish_many(self, messages: Sequence[tuple[str, bytes]], *, by: str,
                     qos: int = 1, timeout: float = 5.0,
                     require_subscriber: bool = False) -> list[str | None]:
        """Publish all, then wait for the broker's acknowledgements together (one
        round trip's wait instead of one per message). Returns an error text or None
        per message. ``require_subscriber``: a PUBACK saying that no subscription
        matched (the broker dropped the message) is an error too
        (``NO_SUBSCRIBER_ERROR``), for a publisher that must keep such a message."""
        if not messages:
            return []
        if not self._connected.wait(timeout):
            PUBLISH_FAILURES.labels(by).inc(len(messages))
            return ["MQTT broker not connected"] * len(messages)
        infos = [self.publish(t, p, qos, by=by) for t, p in messages]
        out: list[str | None] = []
        for info in infos:
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                out.append(f"MQTT publish failed: {mqtt.error_string(info.rc)}")
                continue
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as e:
                PUBLISH_FAILURES.labels(by).inc()
                out.append(f"MQTT publish failed: {e}")
                continue
            if info.is_published():
                if require_subscriber and self._was_unheard(info.mid):
                    PUBLISH_FAILURES.labels(by).inc()
                    out.append(NO_SUBSCRIBER_ERROR)
                    continue
                out.append(None)
            else:
                PUBLISH_FAILURES.labels(by).inc()
                out.append("MQTT broker did not acknowledge within the timeout")
        return out

    def _was_unheard(self, mid: int) -> bool:
        with self._lock:
            if mid in self._unheard:
                self._unheard.discard(mid)
                return True
            return False

    # ------------------------------------------------------------ paho callbacks

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, rc: Any,
                    _p: Any = None) -> None:
        # paho calls this before the message counts as published, so publish_many
        # finds the mark once its wait returns. A mark left by a publisher that does
        # not ask is replaced on the id's next use.
        unheard = getattr(rc, "value", 0) == NO_MATCHING_SUBSCRIBERS
        with self._lock:
            if unheard:
                self._unheard.add(mid)
            else:
                self._unheard.discard(mid)

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, rc: Any,
                    props: Any = None) -> None:
        if rc.is_failure:
            log.warning("mqtt connect refused", extra={"client_id": self.client_id,
                                                       "rc": str(rc)})
            return
        available = getattr(props, "SubscriptionIdentifierAvailable", 1)
        if self._sub_ids and not available:
            log.warning("the broker does not support subscription identifiers;"
                        " routing messages by topic", extra={"client_id": self.client_id})
        self._sub_ids = bool(available)
        with self._lock:
            self._plain = self._unidentified()
        self.generation += 1
        self._connects += 1
        if self._connects > 1:
            RECONNECTS.inc()
        with self._lock:
            self._pending_subs.clear()
            self._early_subacks.clear()
            consumers = self._consumers
            if not self._counted_connected:
                CONNECTED.inc()
                self._counted_connected = True
            # With the list taken: a consumer added from now on sees the connection
            # up and subscribes itself, one added before is in the list.
            self._connected.set()
        log.info("mqtt connected", extra={
            "client_id": self.client_id, "session_present": flags.session_present,
            "consumers": ",".join(c.name for c in consumers)})
        # Subscribing again on a resumed session is harmless and repairs a session
        # the broker lost.
        for c in consumers:
            c.ready.clear()
            self._subscribe(c)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, codes: Any,
                      _p: Any = None) -> None:
        with self._lock:
            consumer = self._pending_subs.pop(mid, None)
            if consumer is None:
                # Before the subscribing thread noted the mid (it finishes the job),
                # or a stale one from a previous connection (bounded below).
                self._early_subacks[mid] = list(codes)
                while len(self._early_subacks) > 64:
                    self._early_subacks.pop(next(iter(self._early_subacks)))
                return
        self._subscribed(consumer, codes)

    def _subscribed(self, consumer: Consumer, codes: Any) -> None:
        bad = [str(c) for c in codes if c.is_failure]
        if bad:
            log.error("subscription refused", extra={
                "client_id": self.client_id, "consumer": consumer.name, "codes": bad})
            return
        consumer.ready.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any,
                       _p: Any = None) -> None:
        self._set_disconnected()
        if not self._stopping:
            DISCONNECTS.labels(_reason_label(rc)).inc()
            log.warning("mqtt disconnected", extra={"client_id": self.client_id,
                                                    "rc": str(rc)})

    def _set_disconnected(self) -> None:
        self._connected.clear()
        for c in self._consumers:
            c.ready.clear()
        with self._lock:
            if self._counted_connected:
                CONNECTED.dec()
                self._counted_connected = False

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        targets = self._route(msg)
        if not targets:
            UNROUTED.inc()
            self.ack_message(msg)
            return
        manual = False
        for c in targets:
            if not c.running:
                # Stopped: leave it unacknowledged, the session delivers it again.
                manual = manual or c.manual_ack or msg.qos > 0
                continue
            manual = manual or c.manual_ack
            c.received.inc()
            try:
                c.handler(msg)
            except Exception:  # noqa: BLE001 - the network thread must survive anything
                HANDLER_ERRORS.labels(c.name).inc()
                log.exception("mqtt handler failed", extra={
                    "client_id": self.client_id, "consumer": c.name, "topic": msg.topic})
        if not manual:
            self.ack_message(msg)

    def _unidentified(self) -> tuple[Consumer, ...]:
        if not self._sub_ids:
            return self._consumers
        return tuple(c for c in self._consumers if c.ident is None)

    def _route(self, msg: mqtt.MQTTMessage) -> Sequence[Consumer]:
        ids = getattr(msg.properties, "SubscriptionIdentifier", None) if msg.properties else None
        if ids:
            by_ident = self._by_ident
            return [c for i in ids if (c := by_ident.get(i)) is not None]
        plain = self._plain
        if len(plain) == 1 and plain[0].ident is None:
            return plain
        topic = msg.topic
        return [c for c in plain if c.matches(topic)]


_MAX_IDENT = 268_435_455  # the largest MQTT 5 subscription identifier


def _ident(name: str, subscriptions: Sequence[tuple[str, int]]) -> int:
    """A consumer's subscription identifier, derived from what it subscribes to: a
    persistent session may still hold subscriptions of an earlier configuration,
    and their messages must not reach a consumer that happens to get the same number
    (they are acknowledged and counted as unrouted instead)."""
    key = "\n".join([name, *(f"{q} {t}" for t, q in subscriptions)]).encode()
    return zlib.crc32(key) % _MAX_IDENT + 1


def _reason_label(rc: Any) -> str:
    """A bounded label for a disconnect's reason code (its MQTT 5 name)."""
    return str(rc)[:40]
