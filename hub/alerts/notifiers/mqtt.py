"""Push to grid workers' apps: ``AlertNotification`` on ``sc/v1/alerts/{grid_code}``,
QoS 1. A publish counts as delivered only once the broker acknowledged it."""

from __future__ import annotations

import logging
import threading
import uuid

import paho.mqtt.client as mqtt

from hub.alerts.notifiers.webhook import DeliveryError
from hub.protocol import AlertNotification, alerts_topic, encode
from hub.services import Broker

log = logging.getLogger(__name__)


class MqttNotifier:
    def __init__(self, broker: Broker, client_id: str | None = None,
                 timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._connected = threading.Event()
        self._c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"hub-notify-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        if broker.username:
            self._c.username_pw_set(broker.username, broker.password)
        self._c.on_connect = self._on_connect
        self._c.on_disconnect = self._on_disconnect
        self._c.reconnect_delay_set(0.2, 5)
        # paho allows 20 unacknowledged messages by default; a burst of alerts would
        # queue behind them client-side.
        self._c.max_inflight_messages_set(1000)
        self._c.connect_async(broker.host, broker.port, keepalive=30)
        self._c.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    rc: mqtt.ReasonCode, props: object = None) -> None:
        if not rc.is_failure:
            self._connected.set()
        else:
            log.warning("alert publisher refused by broker", extra={"reason": str(rc)})

    def _on_disconnect(self, *args: object) -> None:
        self._connected.clear()

    def publish(self, note: AlertNotification) -> None:
        self.publish_raw(alerts_topic(note.grid_code), encode(note))

    def publish_raw(self, topic: str, payload: bytes) -> None:
        if not self._connected.wait(self.timeout):
            raise DeliveryError("MQTT broker not connected")
        info = self._c.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise DeliveryError(f"MQTT publish failed: {mqtt.error_string(info.rc)}")
        try:
            info.wait_for_publish(self.timeout)
        except (RuntimeError, ValueError) as e:
            raise DeliveryError(f"MQTT publish failed: {e}") from None
        if not info.is_published():
            raise DeliveryError("MQTT broker did not acknowledge within the timeout")

    def publish_many(self, messages: list[tuple[str, bytes]]) -> list[str | None]:
        """Publish all, then wait for the broker's acknowledgements together (one
        round trip's wait instead of one per message). Returns an error or None per
        message."""
        if not messages:
            return []
        if not self._connected.wait(self.timeout):
            return ["MQTT broker not connected"] * len(messages)
        infos = [self._c.publish(t, p, qos=1) for t, p in messages]
        out: list[str | None] = []
        for info in infos:
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                out.append(f"MQTT publish failed: {mqtt.error_string(info.rc)}")
                continue
            try:
                info.wait_for_publish(self.timeout)
            except (RuntimeError, ValueError) as e:
                out.append(f"MQTT publish failed: {e}")
                continue
            out.append(None if info.is_published() else
                       "MQTT broker did not acknowledge within the timeout")
        return out

    def close(self) -> None:
        self._c.disconnect()
        self._c.loop_stop()
