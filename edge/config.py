"""Edge agent configuration (one YAML file per agent).

Example::

    broker: mqtt://127.0.0.1:1883
    site: demo
    spool: var/edge/spool.sqlite
    timezone: Asia/Shanghai
    time_factor: 1.0            # data seconds per wall second
    scenario: deploy/scenarios/demo.yaml
    households:
      - {id: s01, address: 3-2-501}
    devices:
      - {id: pir-3-2-501, kind: pir, subject: s01, heartbeat_s: 30,
         username: pir-3-2-501, password: secret}

Credentials: a device's own ``username``/``password``; else the agent-wide
``username``/``password`` (or those in the broker URL) are used for every device.

Zigbee2MQTT: a device with ``zigbee2mqtt: <friendly name>`` is published as a
Zigbee2MQTT bridge would (edge/zigbee2mqtt.py), over one connection for all such
devices, with the ``zigbee2mqtt:`` section's base topic and credentials::

    zigbee2mqtt: {base_topic: zigbee2mqtt, username: zigbee2mqtt, password: secret}
    devices:
      - {id: door-12-1-203, kind: door, subject: s06, zigbee2mqtt: 12-1-203/door}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hub.protocol import ID_PATTERN
from hub.services import parse_mqtt_url
from hub.yamlfile import load_yaml_file

Ident = Annotated[str, Field(pattern=ID_PATTERN)]
SensorKind = Literal["pir", "door", "water", "sos", "smoke", "wearable", "gateway", "leak"]


class EdgeConfigError(ValueError):
    """An edge config that cannot be used; the message names the bad key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceSpec(_Strict):
    id: Ident
    kind: SensorKind
    subject: Ident | None = None  # the household (care subject) whose sensor it is
    heartbeat_s: float = Field(default=60, gt=0)
    username: str | None = None
    password: str | None = None
    # Published through the Zigbee2MQTT bridge under this friendly name.
    zigbee2mqtt: str | None = Field(default=None, min_length=1, max_length=128)


# What the simulated bridge can publish (edge/zigbee2mqtt.py): a motion sensor, a
# door contact, a smoke detector and a water leak sensor, as Aqara's and Xiaomi's.
ZIGBEE_KINDS = ("pir", "door", "smoke", "leak")
# The agent spools the bridge's messages under this key: no device may have it.
BRIDGE_SPOOL_KEY = "zigbee2mqtt.bridge"


class Zigbee2MQTTBridge(_Strict):
    base_topic: str = Field(default="zigbee2mqtt", pattern=r"^[A-Za-z0-9_.\-/]{1,200}$")
    username: str | None = None  # else the agent-wide credentials
    password: str | None = None
    # Send last_seen (ISO 8601) in every state, as advanced.last_seen does: the hub
    # then takes it as the data time and stores a redelivery once.
    last_seen: bool = True
    occupancy_timeout_s: float = Field(default=90, gt=0)  # Zigbee2MQTT's default


class Household(_Strict):
    id: Ident  # care subject id
    address: str = ""  # building-unit-room, e.g. 3-2-501


class EdgeConfig(_Strict):
    broker: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = None
    site: Ident
    spool: Path = Path("var/edge/spool.sqlite")
    spool_max_messages: int = Field(default=100_000, ge=100)
    timezone: str = "Asia/Shanghai"
    households: list[Household] = Field(default_factory=list)
    devices: list[DeviceSpec] = Field(min_length=1)
    scenario: Path | None = None
    time_factor: float = Field(default=1.0, gt=0)
    seed: int = 1
    keepalive_s: int = Field(default=30, ge=5)
    inflight: int = Field(default=100, ge=1, le=65535)  # unacknowledged QoS 1 per device
    # Keep a message in the spool when the broker says nobody subscribes to it (the
    # hub is not there yet, or the broker lost its subscriptions in a restart).
    require_subscriber: bool = True
    zigbee2mqtt: Zigbee2MQTTBridge = Zigbee2MQTTBridge()

    @model_validator(mode="after")
    def _refs(self) -> EdgeConfig:
        parse_mqtt_url(self.broker)
        ids = [d.id for d in self.devices]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate device id(s) {sorted(dup)}")
        if BRIDGE_SPOOL_KEY in ids:
            raise ValueError(f"device id {BRIDGE_SPOOL_KEY!r} is the Zigbee2MQTT bridge's")
        hh = {h.id for h in self.households}
        for i, d in enumerate(self.devices):
            if d.subject and d.subject not in hh:
                raise ValueError(f"devices.{i}.subject: unknown household {d.subject!r}")
            if d.zigbee2mqtt is not None and d.kind not in ZIGBEE_KINDS:
                raise ValueError(f"devices.{i}.zigbee2mqtt: a simulated {d.kind} cannot speak"
                                 f" Zigbee2MQTT (only {', '.join(ZIGBEE_KINDS)})")
        names = [d.zigbee2mqtt for d in self.devices if d.zigbee2mqtt]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate zigbee2mqtt friendly name(s) {sorted(dup)}")
        return self

    def bridge_credentials(self) -> tuple[str | None, str | None]:
        if self.zigbee2mqtt.username:
            return self.zigbee2mqtt.username, self.zigbee2mqtt.password
        b = parse_mqtt_url(self.broker)
        return (self.username or b.username), (self.password or b.password)

    def credentials(self, device: DeviceSpec) -> tuple[str | None, str | None]:
        if device.username:
            return device.username, device.password
        b = parse_mqtt_url(self.broker)
        return (self.username or b.username), (self.password or b.password)


def read_yaml(path: Path, what: str, error: type[ValueError]) -> object:
    """The parsed YAML file ``path``; raises ``error`` naming it as ``what`` (e.g.
    "edge config") when it cannot be read or is not YAML."""
    # Not UTF-8, nested thousands deep or huge is one line, like a hub site file.
    return load_yaml_file(Path(path), what, error)


def invalid_message(e: ValidationError, what: str) -> str:
    """``what`` is not valid, with the first ten errors, one a line, by location."""
    lines = [f"{what} is not valid:"]
    for err in e.errors()[:10]:
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def load_edge_config(path: str | Path) -> EdgeConfig:
    path = Path(path)
    raw = read_yaml(path, "edge config", EdgeConfigError)
    if not isinstance(raw, dict):
        raise EdgeConfigError(f"edge config {path} must be a mapping (site, broker, devices, ...)")
    try:
        cfg = EdgeConfig.model_validate(raw)
    except ValidationError as e:
        raise EdgeConfigError(invalid_message(e, f"edge config {path}")) from None
    # Relative paths in the file are relative to the file, not to the working directory.
    upd: dict[str, Path] = {}
    if not cfg.spool.is_absolute():
        upd["spool"] = (path.parent / cfg.spool).resolve()
    if cfg.scenario and not cfg.scenario.is_absolute():
        upd["scenario"] = (path.parent / cfg.scenario).resolve()
    return cfg.model_copy(update=upd) if upd else cfg


def dump_edge_config(cfg: EdgeConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True),
                                         sort_keys=False, allow_unicode=True), encoding="utf-8")
