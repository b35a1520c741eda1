"""A consumer added while connected is ready even when the broker's SUBACK comes
back before the connection has noted what it waits for (the network thread answers
faster than the thread that subscribed: seen with a vision worker taking a camera's
lease on a loaded machine, its consumer never ready)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from hub.mqtt import MqttConnection
from hub.services import Broker


def test_a_consumer_is_ready_when_its_suback_beats_the_bookkeeping(
        broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = MqttConnection(broker, f"race-{uuid.uuid4().hex[:8]}").start()
    try:
        assert conn.wait_connected(10)
        original = mqtt.Client.subscribe

        def slow_return(self: mqtt.Client, *a: Any, **kw: Any) -> Any:
            out = original(self, *a, **kw)
            time.sleep(0.5)  # the SUBACK is handled on the network thread meanwhile
            return out

        monkeypatch.setattr(mqtt.Client, "subscribe", slow_return)
        c = conn.add_consumer("late", [(f"race/{uuid.uuid4().hex}", 0)], lambda m: None)
        assert c.ready.wait(5)
    finally:
        conn.stop()
