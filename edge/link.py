"""One device's MQTT 5 connection: its own credentials and Last Will, a retained
``online`` status on every connect, and the pump that sends the device's spooled
messages in order and removes each one when its PUBACK arrives.

Each connection attempt uses a fresh paho client with a clean start, and the spool is
the only record of what is unacknowledged: after a reconnect the pump starts again at
the device's oldest spooled message, so the order holds and nothing depends on paho's
in-memory retransmission. A message the broker acknowledged but whose PUBACK was lost
is sent twice; the hub stores (device, seq) once.

Over TLS (the broker URL ``mqtts://host:8883?ca=FILE``, :class:`hub.services.Tls`)
each client checks the broker's certificate; one that the CA did not sign is logged
as an error saying so (``stats.last_error``), and the link keeps trying, with the
messages in the spool.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge.spool import Spool
from hub.protocol import DeviceState, Kind, Status, encode, topic
from hub.services import BrokerTlsError, Tls

log = logging.getLogger(__name__)

# PUBACK reason codes worth retrying later; any other failure (not authorized, topic
# name invalid, payload format invalid, ...) will fail forever and is dropped.
RETRYABLE = {0x80, 0x83, 0x89, 0x97}  # unspecified, implementation specific, busy, quota
# A PUBACK "no matching subscribers" means nobody, not even the hub's persistent
# session, will get the message: the hub has never connected, or the broker lost its
# subscriptions (Mosquitto 2.0.11 does not restore shared subscriptions from its
# persistence file after a restart). The message stays in the spool and is sent again.
NO_SUBSCRIBERS = 0x10
HOLD_MIN_S = 0.5
HOLD_MAX_S = 10.0
DISCONNECT_WITH_WILL = 0x04


@dataclass
class LinkStats:
    sent: int = 0
    acked: int = 0
    rejected: int = 0
    connects: int = 0
    connect_failures: int = 0
    last_error: str | None = None


class DeviceLink:
    def __init__(self, *, site: str, device: str, host: str, port: int,
                 username: str | None, password: str | None, spool: Spool,
                 clock: Callable[[], datetime], keepalive: int = 30, inflight: int = 100,
                 client_id: str | None = None, require_subscriber: bool = True,
                 tls: Tls | None = None) -> None:
        self.site = site
        self.device = device
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.spool = spool
        self.clock = clock
        self.keepalive = keepalive
        self.window = inflight
        self.client_id = client_id or f"edge-{site}-{device}"
        self.require_subscriber = require_subscriber
        self.tls = tls
        self.stats = LinkStats()
        self.connected = threading.Event()
        self._wake = threading.Event()
        self._want_online = True
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._status_topic = topic(site, device, Kind.STATUS)
        self._online_payload = b""

    # ------------------------------------------------------------ control

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"link-{self.device}",
                                        daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """New messages were spooled for this device."""
        self._wake.set()

    def go_offline(self) -> None:
        """Drop the connection as a failing device would: the broker publishes the
        Last Will. Nothing is sent until :meth:`go_online`."""
        self._want_online = False
        self._wake.set()

    def go_online(self) -> None:
        self._want_online = True
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish a retained ``offline`` status (reason ``stopped``) and disconnect."""
        self._stopping = True
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)

    # ------------------------------------------------------------ connection

    def _status(self, state: DeviceState, seq: int, ts: datetime, reason: str | None) -> bytes:
        return encode(Status(device=self.device, seq=seq, ts=ts, state=state, reason=reason))

    def _client(self) -> tuple[mqtt.Client, int]:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        protocol=mqtt.MQTTv5)
        if self.username:
            c.username_pw_set(self.username, self.password)
        if self.tls is not None:
            self.tls.apply(c)
        c.max_inflight_messages_set(self.window)
        c.max_queued_messages_set(0)
        # The online status gets the lower seq and the Last Will the next one, both
        # stamped now: the hub orders status by (ts, seq), so the will, when the
        # broker sends it, supersedes the online status of the same connection.
        online_seq = self.spool.next_seq(self.device)
        will_seq = self.spool.next_seq(self.device)
        now = self.clock()
        c.will_set(self._status_topic, self._status(DeviceState.OFFLINE, will_seq, now, "lwt"),
                   qos=1, retain=True)
        self._online_payload = self._status(DeviceState.ONLINE, online_seq, now, None)
        return c, online_seq

    def _sleep(self, s: float) -> None:
        self._wake.wait(s)
        self._wake.clear()

    def _run(self) -> None:
        backoff = 0.2
        while not self._stopping:
            if not self._want_online:
                self._sleep(0.5)
                continue
            try:
                client, _ = self._client()
                client.connect(self.host, self.port, keepalive=self.keepalive,
                               clean_start=True)
            except (ssl.SSLError, BrokerTlsError) as e:
                # A configuration error, not an outage: say what is wrong, loudly.
                self.stats.connect_failures += 1
                self.stats.last_error = _tls_problem(e, self.host, self.port, self.tls)
                log.error("TLS to the broker failed; messages stay in the spool", extra={
                    "device": self.device, "error": self.stats.last_error, "retry_s": 5.0})
                self._sleep(5.0)
                continue
            except OSError as e:
                self.stats.connect_failures += 1
                self.stats.last_error = str(e)
                log.info("broker unreachable; messages stay in the spool",
                         extra={"device": self.device, "error": str(e), "retry_s": backoff})
                self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            try:
                ok = self._session(client)
            except Exception:  # a bug here must not kill the device for good
                log.exception("device link failed", extra={"device": self.device})
                ok = False
            finally:
                self.connected.clear()
                try:
                    client.socket() and client._sock_close()  # type: ignore[func-returns-value]
                except Exception:  # noqa: BLE001 - best-effort close of a dead socket
                    pass
            backoff = 0.2 if ok else min(backoff * 2, 5.0)
            if not self._stopping and self._want_online:
                self._sleep(backoff)

    def _session(self, client: mqtt.Client) -> bool:
        """Run one connection until it drops, the device goes offline, or stop.
        Returns whether the connection was established."""
        connack: list[ReasonCode] = []
        published: list[tuple[int, ReasonCode]] = []
        client.on_connect = lambda c, u, f, rc, p: connack.append(rc)
        client.on_publish = lambda c, u, mid, rc, p: published.append((mid, rc))

        deadline = time.monotonic() + 10
        while not connack:
            if client.loop(timeout=0.1) != MQTTErrorCode.MQTT_ERR_SUCCESS \
                    or time.monotonic() > deadline or self._stopping:
                self.stats.connect_failures += 1
                log.warning("no CONNACK from broker", extra={"device": self.device})
                return False
        if connack[0].is_failure:
            self.stats.connect_failures += 1
            log.error("broker refused the device's connection",
                      extra={"device": self.device, "reason": str(connack[0]),
                             "username": self.username})
            self._sleep(5.0)
            return False
        self.stats.connects += 1
        client.publish(self._status_topic, self._online_payload, qos=1, retain=True)
        self.connected.set()
        log.info("device connected", extra={"device": self.device})

        inflight: dict[int, int] = {}  # mid -> spool row id
        last_id = 0
        more = True
        hold_until = 0.0  # the broker could not deliver: pause, then replay from the oldest
        hold_s = HOLD_MIN_S
        while not self._stopping and self._want_online:
            idle = not more or hold_until
            if client.loop(timeout=0.1 if idle else 0.0) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.warning("connection lost; unacknowledged messages stay in the spool",
                            extra={"device": self.device, "inflight": len(inflight)})
                return True
            if self._wake.is_set():
                self._wake.clear()
                more = True
            if published:
                if self._process(published, inflight):
                    if not hold_until:
                        log.info("hub not subscribed or broker busy; holding messages",
                                 extra={"device": self.device, "hold_s": hold_s})
                    hold_until = time.monotonic() + hold_s
                    hold_s = min(hold_s * 2, HOLD_MAX_S)
                elif not hold_until:
                    hold_s = HOLD_MIN_S
                more = True
            if hold_until:
                if inflight or time.monotonic() < hold_until:
                    continue
                hold_until, last_id = 0.0, 0  # replay, in order, from the oldest spooled
            room = self.window - len(inflight)
            if more and room > 0:
                rows = self.spool.pending(self.device, after_id=last_id, limit=room)
                more = len(rows) == room
                for r in rows:
                    info = client.publish(r.topic, r.payload, qos=r.qos, retain=r.retain)
                    if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        return True  # connection lost while sending; replay later
                    inflight[info.mid] = r.id
                    last_id = r.id
                    self.stats.sent += 1
        if self._stopping:
            self._graceful_offline(client, inflight, published)
        else:  # the scenario took the device offline: make the broker send its will
            client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT,
                                                    identifier=DISCONNECT_WITH_WILL))
            for _ in range(5):
                client.loop(timeout=0.05)
            log.info("device went offline (will sent)", extra={"device": self.device})
        return True

    def _process(self, published: list[tuple[int, ReasonCode]], inflight: dict[int, int]) -> bool:
        """Remove acknowledged messages from the spool; returns whether a message
        must be sent again later (no subscriber, or the broker asked to retry)."""
        retry = False
        done, failed = [], []
        for mid, rc in published:
            row = inflight.pop(mid, None)
            if row is None:
                continue  # a status message
            if rc.value in RETRYABLE or (rc.value == NO_SUBSCRIBERS and self.require_subscriber):
                retry = True
            elif rc.is_failure:
                failed.append(row)
                done.append(row)
            else:
                done.append(row)
        published.clear()
        self.spool.ack(done)
        self.stats.acked += len(done) - len(failed)
        if failed:
            self.stats.rejected += len(failed)
            log.error("broker rejected messages; dropped from the spool",
                      extra={"device": self.device, "count": len(failed),
                             "reason": "puback failure"})
        return retry

    def _graceful_offline(self, client: mqtt.Client, inflight: dict[int, int],
                          published: list[tuple[int, ReasonCode]]) -> None:
        seq = self.spool.next_seq(self.device)
        info = client.publish(self._status_topic,
                              self._status(DeviceState.OFFLINE, seq, self.clock(), "stopped"),
                              qos=1, retain=True)
        deadline = time.monotonic() + 2
        while (inflight or not info.is_published()) and time.monotonic() < deadline:
            if client.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            self._process(published, inflight)
        client.disconnect()
        client.loop(timeout=0.05)


def _tls_problem(e: Exception, host: str, port: int, tls: Tls | None) -> str:
    if isinstance(e, ssl.SSLCertVerificationError):
        ca = (tls.ca_file if tls else None) or "the system CAs"
        return (f"the broker {host}:{port}'s certificate is not trusted ({e.verify_message});"
                f" ca={ca} must be the CA that signed it, issued for {host}")
    return f"TLS with the broker {host}:{port} failed: {e}"
