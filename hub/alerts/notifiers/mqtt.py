"""Push to grid workers' apps: ``AlertNotification`` on ``sc/v1/alerts/{grid_code}``,
QoS 1. A publish counts as delivered only once the broker acknowledged it.

It publishes through the process's MQTT connection (:mod:`hub.mqtt`) when given one;
given a broker instead, it opens a connection of its own (a tool, a test)."""

from __future__ import annotations

import logging
import uuid

from hub.alerts.notifiers.webhook import DeliveryError
from hub.mqtt import MqttConnection
from hub.protocol import AlertNotification, alerts_topic, encode
from hub.services import Broker

log = logging.getLogger(__name__)

PUBLISHER = "notify"  # the metrics' consumer label


class MqttNotifier:
    def __init__(self, broker: Broker | None = None, client_id: str | None = None,
                 timeout: float = 5.0, *, connection: MqttConnection | None = None) -> None:
        if (broker is None) == (connection is None):
            raise ValueError("give the MqttNotifier a broker or a connection, not both")
        self.timeout = timeout
        self._owns = connection is None
        if connection is None:
            assert broker is not None
            connection = MqttConnection(
                broker, client_id or f"hub-notify-{uuid.uuid4().hex[:8]}").start()
        self._conn = connection

    def publish(self, note: AlertNotification) -> None:
        self.publish_raw(alerts_topic(note.grid_code), encode(note))

    def publish_raw(self, topic: str, payload: bytes) -> None:
        [err] = self._conn.publish_many([(topic, payload)], by=PUBLISHER, timeout=self.timeout)
        if err is not None:
            raise DeliveryError(err)

    def publish_many(self, messages: list[tuple[str, bytes]]) -> list[str | None]:
        """Publish all, then wait for the broker's acknowledgements together. Returns
        an error or None per message."""
        return self._conn.publish_many(messages, by=PUBLISHER, timeout=self.timeout)

    def close(self) -> None:
        """Closes the connection only when it is the notifier's own."""
        if self._owns:
            self._conn.stop()
