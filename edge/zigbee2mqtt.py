"""The edge agent speaking Zigbee2MQTT: simulated Aqara/Xiaomi sensors (motion
RTCGQ11LM, door contact MCCGQ11LM, smoke JTYJ-GD-01LM, water leak SJCGQ11LM) published
as a Zigbee2MQTT bridge publishes them, so the hub's adapter (hub/ingest/adapters/
zigbee2mqtt.py) is exercised end to end without a Zigbee stick.

:class:`BridgeState` is pure: it keeps each device's full state and turns the
simulation's emissions into the bridge's messages (topic, payload, retain). Like
Zigbee2MQTT it publishes the whole state every time, clears ``occupancy`` a while
after the last motion (``occupancy_timeout``), sends availability retained, and,
when configured, stamps ``last_seen`` (ISO 8601, the time the device was last
heard). :class:`BridgeLink` is the bridge's one MQTT connection, with the retained
``<base>/bridge/state`` online/offline (the offline one as its Last Will).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from edge.config import DeviceSpec, Zigbee2MQTTBridge
from edge.link import DeviceLink
from edge.simulation import Emission
from hub.protocol import DeviceState


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    retain: bool = False


def _battery_mv(pct: float) -> int:
    # CR2032/CR1632 cells as Aqara's converters read them: about 2.8 V empty, 3.1 V full.
    return int(2800 + 3 * pct)


def _initial(kind: str, rng: random.Random) -> dict[str, Any]:
    battery = rng.randint(60, 100)
    common: dict[str, Any] = {"battery": battery, "voltage": _battery_mv(battery),
                              "linkquality": rng.randint(60, 200)}
    if kind == "pir":
        return {**common, "illuminance": rng.randint(5, 300), "occupancy": False,
                "device_temperature": rng.randint(20, 28), "power_outage_count": 0}
    if kind == "door":
        return {**common, "contact": True, "device_temperature": rng.randint(20, 28),
                "power_outage_count": 0}
    if kind == "smoke":
        return {**common, "smoke": False, "battery_low": False, "tamper": False,
                "smoke_density": 0, "sensitivity": "medium", "test": False}
    if kind == "leak":
        return {**common, "water_leak": False, "device_temperature": rng.randint(18, 26),
                "power_outage_count": 0}
    raise ValueError(f"no Zigbee2MQTT model for a {kind}")


class BridgeState:
    """Every simulated Zigbee device of one bridge, keyed by device id."""

    def __init__(self, bridge: Zigbee2MQTTBridge, devices: list[DeviceSpec], seed: int) -> None:
        self.bridge = bridge
        self.base = bridge.base_topic
        self.names = {d.id: d.zigbee2mqtt for d in devices if d.zigbee2mqtt}
        self.kinds = {d.id: d.kind for d in devices if d.zigbee2mqtt}
        self._seed = seed
        self.state = {dev: _initial(self.kinds[dev], random.Random(f"{seed}:z2m:{dev}"))
                      for dev in self.names}
        self.heard: dict[str, datetime] = {}
        self._clear_at: dict[str, datetime] = {}  # pir -> when occupancy goes false

    def __contains__(self, device: str) -> bool:
        return device in self.names

    def topic(self, device: str) -> str:
        return f"{self.base}/{self.names[device]}"

    def availability(self, device: str, online: bool) -> Publish:
        state = DeviceState.ONLINE if online else DeviceState.OFFLINE
        return Publish(f"{self.topic(device)}/availability",
                       json.dumps({"state": state.value}, separators=(",", ":")).encode(),
                       retain=True)

    def startup(self) -> list[Publish]:
        """What the bridge publishes when it starts: every device available."""
        return [self.availability(d, True) for d in self.names]

    def _publish(self, device: str, ts: datetime | None) -> Publish:
        st = dict(self.state[device])
        heard = ts or self.heard.get(device)
        if self.bridge.last_seen and heard is not None:
            st["last_seen"] = heard.astimezone(UTC).isoformat(timespec="milliseconds"
                                                              ).replace("+00:00", "Z")
        return Publish(self.topic(device), json.dumps(st, separators=(",", ":")).encode())

    def emit(self, e: Emission) -> list[Publish]:
        """The bridge's messages for one emission of a device it hosts."""
        st = self.state[e.device]
        if e.kind == "control":
            return [self.availability(e.device, e.event == "online")]
        rng = random.Random(f"{self._seed}:lq:{e.device}:{int(e.ts.timestamp())}")
        st["linkquality"] = max(0, min(255, st["linkquality"] + rng.randint(-6, 6)))
        if e.kind == "telemetry":
            for metric, value, _unit in e.readings:
                if metric == "battery":
                    st["battery"] = round(value)
                    st["voltage"] = _battery_mv(value)
                    if "battery_low" in st:
                        st["battery_low"] = value < 20
                elif metric == "smoke_density" and "smoke_density" in st:
                    st["smoke_density"] = round(value * 10, 1)  # the detector's own scale
        elif e.event == "motion":
            st["occupancy"] = True
            self._clear_at[e.device] = e.ts + timedelta(seconds=self.bridge.occupancy_timeout_s)
        elif e.event in ("door_open", "door_close"):
            st["contact"] = e.event == "door_close"  # Zigbee2MQTT: true = closed
        elif e.event in ("smoke", "smoke_clear"):
            st["smoke"] = e.event == "smoke"
        elif e.event in ("tamper", "tamper_clear"):
            st["tamper"] = e.event == "tamper"
        elif e.event in ("water_leak", "water_leak_clear"):
            st["water_leak"] = e.event == "water_leak"
        self.heard[e.device] = e.ts
        return [self._publish(e.device, e.ts)]

    def due(self, now: datetime) -> list[Publish]:
        """Occupancy cleared by the bridge's timer, at or before ``now``; it is the
        bridge's doing, so ``last_seen`` stays the motion's."""
        out = []
        for dev, at in sorted(self._clear_at.items(), key=lambda kv: kv[1]):
            if at <= now:
                del self._clear_at[dev]
                self.state[dev]["occupancy"] = False
                out.append(self._publish(dev, None))
        return out


class BridgeLink(DeviceLink):
    """The bridge's connection: the spool entries of ``device`` (the bridge's key in
    the spool) sent in order, its presence on ``<base>/bridge/state``."""

    def __init__(self, *, base_topic: str, **kw: Any) -> None:
        super().__init__(**kw)
        self._status_topic = f"{base_topic}/bridge/state"

    def _status(self, state: DeviceState, seq: int, ts: datetime, reason: str | None) -> bytes:
        return json.dumps({"state": state.value}, separators=(",", ":")).encode()
