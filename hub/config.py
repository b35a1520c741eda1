"""One configuration: process settings from the environment plus one site file.

``Settings`` (environment, prefix ``HUB_``) says where things are: database,
broker, data directory, HTTP port. ``Site`` (a YAML file) describes the compound:
the grid tree with hierarchical codes, buildings, people and their roles, devices
and where they are, camera zones, care subjects, incident categories and rule
parameters. A wrong site file fails at start-up with a message naming the bad key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import time
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.alerts.notifiers.channels import ChannelConfig, FamilyConfig, check_channels
from hub.categories import (
    REGISTRY,
    CategoryConfig,
    CategoryInfo,
    CategoryRegistry,
    Code,
    load_plugins,
)
from hub.domain import GridLevel
from hub.protocol import ID_PATTERN
from hub.yamlfile import load_yaml_file

Ident = Annotated[str, Field(pattern=ID_PATTERN)]
GridCode = Annotated[str, Field(pattern=r"^\d{6}(\d{3}(\d{3}(\d{2}(\d{2})?)?)?)?$")]
Point = tuple[float, float]


class ConfigError(ValueError):
    """A site file or setting that cannot be used; the message names the bad key."""


class Settings(BaseSettings):
    """Process settings. Every field can be set as ``HUB_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="HUB_", extra="ignore")

    site_file: Path = Path("deploy/sites/demo.yaml")
    # Empty means "embedded": the demo starts its own server.
    database_url: str = ""
    mqtt_url: str = ""  # mqtt://user:pass@host:1883
    # Starts with "hub": the broker gives a device its device id as client id, and no
    # device id may start so (hub-edge credentials), so no device can take this one's
    # session (deploy/mosquitto). It is the process's one MQTT connection's id where
    # the ingest runs; other processes derive theirs from it (hub.node).
    mqtt_client_id: str = "hub-ingest"
    shared_group: str = "hub"
    data_dir: Path = Path("var")
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    db_pool_min: int = 2
    db_pool_max: int = 10
    batch_max: int = 5000  # readings per COPY batch (bench/ingest.py: 2000 measured ~6 % slower)
    batch_wait_ms: int = 50  # longest a reading waits for its batch to fill
    log_level: str = "INFO"
    log_json: bool = True
    webhook_secret: str = ""
    # 12345 hotline intake (POST /api/intake/tickets): the external system's bearer
    # token (empty: intake off), and where each step of its tickets is reported back
    # (a webhook through the outbox, signed with webhook_secret; empty: not reported).
    intake_token: str = ""
    intake_status_url: str = ""
    # Web Push to the phone view (hub/alerts/notifiers/webpush.py): the VAPID key
    # (PEM or raw base64url; empty: <data_dir>/vapid/private.pem, made on first run),
    # the JWT's contact, and how often and how many times a critical life-safety
    # notification rings again until the worker accepts it.
    vapid_private_key: str = ""
    push_subject: str = "mailto:hub@localhost"
    push_renotify_s: float = Field(default=300.0, ge=1, le=3600)
    push_renotify_times: int = Field(default=6, ge=0, le=48)
    # How often the console sounds and shows its reminder again while a critical
    # incident stays unregistered (served by GET /api/meta).
    console_reminder_s: float = Field(default=120.0, ge=10, le=3600)
    # The largest request body on any route but a photo upload (hub/api/guard.py).
    body_max_bytes: int = Field(default=64 * 1024, gt=0)
    # A worker's photo upload (bytes as sent), and the width x height its header may
    # claim before it is decoded (hub/api/limits.py).
    photo_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    photo_max_pixels: int = Field(default=64_000_000, gt=0)
    # A camera's event push with its pictures (hub/api/routers/camera_events.py).
    camera_push_max_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # Names this alert worker's saved sensing state (together with the site id).
    sensing_partition: str = "main"
    # Partitions of the households for the sensing rules (the same in every ingest
    # and alert process of a deployment: the ingest files each message under one),
    # and how long a lease on a partition or a camera lasts unrenewed - a dead
    # worker's share moves to the others within about this (hub/leases.py).
    sensing_parts: int = Field(default=16, ge=1, le=1024)
    lease_ttl_s: float = Field(default=6.0, ge=2, le=60)
    # How far ahead of the hub's clock a device timestamp may be; later ones (and any
    # before 2020, hub.protocol.TS_FLOOR) are rejected as ts_future / ts_past.
    max_clock_skew_s: float = Field(default=300.0, ge=0, le=86400)
    # Reverse proxies allowed to name the client in X-Forwarded-For (and the scheme in
    # X-Forwarded-Proto): comma-separated addresses or networks. Empty: none, the
    # connecting peer is the client, whatever headers it sends.
    trusted_proxies: str = ""
    # Serve the API's description at /openapi.json, /docs and /redoc (the demo does).
    api_docs: bool = False
    # Live view (hub/api/liveview.py): frames a second to one viewer, viewers of one
    # camera, live views of one user, and the camera's boost while watched (seconds,
    # renewed every third).
    live_fps: float = Field(default=5.0, gt=0, le=30)
    live_max_viewers_per_camera: int = Field(default=20, ge=1, le=1000)
    live_max_views_per_user: int = Field(default=16, ge=1, le=1000)
    live_lease_s: float = Field(default=30.0, ge=3, le=300)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: str) -> str:
        for item in (x.strip() for x in v.split(",")):
            if not item:
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                # "*" (trust everyone) included: that is the hole this setting closes.
                raise ValueError(f"trusted_proxies: {item!r} is not an IP address or "
                                 f"network") from None
        return v

    @field_validator("mqtt_client_id")
    @classmethod
    def _hub_client_id(cls, v: str) -> str:
        if not v.startswith("hub"):
            raise ValueError(f"mqtt_client_id {v!r} must start with 'hub': client ids so"
                             " named are the hub's, and no device may use one")
        return v

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [x.strip() for x in self.trusted_proxies.split(",") if x.strip()]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GridNode(_Strict):
    code: GridCode
    name: str
    children: list[GridNode] = Field(default_factory=list)

    @model_validator(mode="after")
    def _children_extend_code(self) -> GridNode:
        for c in self.children:
            if not c.code.startswith(self.code) or len(c.code) <= len(self.code):
                raise ValueError(f"child code {c.code} must extend its parent's code {self.code}")
            if GridLevel.of_code(c.code) != _next_level(GridLevel.of_code(self.code)):
                raise ValueError(f"child code {c.code} skips a level under {self.code}")
        return self

    def walk(self, parent: str | None = None) -> Iterator[tuple[GridNode, str | None]]:
        yield self, parent
        for c in self.children:
            yield from c.walk(self.code)


def _next_level(level: GridLevel) -> GridLevel:
    order = list(GridLevel)
    i = order.index(level)
    if i + 1 >= len(order):
        raise ValueError("micro-grids have no children")
    return order[i + 1]


class Building(_Strict):
    id: Ident
    name: str
    grid: GridCode
    polygon: list[Point] = Field(min_length=3)  # site plan, 0-1 coordinates


# "property": property management (物业), who get maintenance incidents (hub.categories).
Role = Literal[
    "grid_worker", "grid_leader", "police", "community", "street", "department", "property",
]


class RoleAssignment(_Strict):
    role: Role
    unit: GridCode
    # Duty hours ("08:00"-"20:00"); omitted means always on duty.
    on_duty: tuple[time, time] | None = None


class Person(_Strict):
    id: Ident
    name: str
    phone: str | None = None
    roles: list[RoleAssignment] = Field(default_factory=list)


class ZoneConfig(_Strict):
    name: Ident
    kind: Literal["fire_lane", "no_fall", "watch"] = "fire_lane"
    polygon: list[Point] = Field(min_length=3)
    dwell_s: float = Field(default=60, ge=1, le=3600)
    clear_s: float = Field(default=10, ge=0, le=3600)
    threshold: float = Field(default=0.15, gt=0, le=1)

    @field_validator("polygon")
    @classmethod
    def _normalised(cls, v: list[Point]) -> list[Point]:
        for x, y in v:
            if not (0 <= x <= 1 and 0 <= y <= 1):
                raise ValueError(f"point ({x}, {y}) is outside 0-1 coordinates")
        return v


# A vendor's event type as its pushes name it (Hikvision's eventType, Dahua's Code).
_EVENT_TYPE = r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$"


class CameraEventMapping(_Strict):
    """What one of the camera's own event types becomes: an alarm of ``category`` (a
    registered code, checked when a push arrives), at the category's severity
    unless ``severity`` says otherwise."""

    category: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,39}$")]
    severity: Literal["info", "minor", "major", "critical"] | None = None
    title: str | None = Field(default=None, min_length=1, max_length=120)


class CameraEvents(_Strict):
    """Event pushes from the camera's own AI (hub/vendors/; docs/configuration.md).
    The password its pushes authenticate with is HUB_CAMERA_SECRET_<DEVICE ID> in the
    environment (hub.vendors.auth), never in this file."""

    vendor: Literal["hikvision", "dahua"]
    # HTTP authentication of the pushes: Hikvision's HTTP host offers MD5 digest,
    # Dahua's push basic; "basic" is refused unless named here.
    auth: Literal["digest", "basic"] = "digest"
    username: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")] = "hub"
    # The camera's channel (an NVR pushes several); None takes any.
    channel: int | None = Field(default=None, ge=0, le=1024)
    # No push of an active event for this long ends its episode: the next one opens
    # a new incident (one still open is updated instead).
    quiet_s: float = Field(default=120, gt=0, le=86400)
    # Vendor event type (matched without regard to case) -> what it becomes.
    events: dict[Annotated[str, Field(pattern=_EVENT_TYPE)], CameraEventMapping] = Field(
        min_length=1)

    @field_validator("events", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        # ``linedetection: fire_lane`` is short for ``{category: fire_lane}``.
        if isinstance(v, dict):
            return {k: {"category": x} if isinstance(x, str) else x for k, x in v.items()}
        return v

    @field_validator("events")
    @classmethod
    def _distinct(cls, v: dict[str, CameraEventMapping]) -> dict[str, CameraEventMapping]:
        low = [k.lower() for k in v]
        dup = sorted({k for k in low if low.count(k) > 1})
        if dup:
            raise ValueError(f"event type(s) {dup} given more than once (case is ignored)")
        return v


class CameraConfig(_Strict):
    source: str | None = None  # rtsp://..., /dev/video0, a file; edge side
    loop: bool = False
    fps: float = Field(default=2, gt=0, le=30)
    jpeg_quality: int = Field(default=80, ge=10, le=100)
    max_width: int = Field(default=960, gt=0)
    # A network camera that takes longer than this to answer, or to send the next
    # frame, is down (reported unhealthy and reconnected); edge side.
    timeout_s: float = Field(default=5.0, ge=0.5, le=60)
    zones: list[ZoneConfig] = Field(default_factory=list)
    # How the camera looks at people: "auto" learns the local vertical from the people
    # it sees (cameras looking down), "level" keeps the image's vertical.
    view: Literal["auto", "level"] = "auto"
    # Settings of the camera's vision rules by rule name (``crowding: {...}``), each
    # validated by the model its rule module declares (hub/vision/rules/), so a new
    # rule brings its settings without a change here.
    rules: dict[str, Any] = Field(default_factory=dict)
    # The camera's own AI: its vendor's event pushes and what they become.
    events: CameraEvents | None = None

    @field_validator("rules")
    @classmethod
    def _rule_settings(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if not v:
            return v
        # Imported here: the rules import this module (and only a camera with rule
        # settings needs them to load a site file).
        from hub.vision.rules import parse_settings

        return parse_settings(v, info.data.get("zones", []))


DeviceKind = Literal[
    "camera", "pir", "door", "water", "sos", "smoke", "wearable", "gateway", "leak"
]
# How a device is powered decides how long its silence may last (rules.health):
# mains-powered devices report often and are offline after minutes, battery-powered
# ones sleep between reports and are offline after hours (Zigbee2MQTT's availability
# uses 10 min and 25 h). Without one, the device's heartbeat decides.
PowerClass = Literal["mains", "battery"]


class Location(_Strict):
    x: float = Field(ge=0, le=1)  # position on the site plan
    y: float = Field(ge=0, le=1)
    label: str = ""


class DeviceConfigEntry(_Strict):
    id: Ident
    kind: DeviceKind
    grid: GridCode
    building: Ident | None = None
    subject: Ident | None = None  # care subject this sensor watches
    location: Location
    heartbeat_s: float = Field(default=60, gt=0)
    power: PowerClass | None = None
    camera: CameraConfig | None = None

    @model_validator(mode="after")
    def _camera_has_camera(self) -> DeviceConfigEntry:
        if self.kind == "camera" and self.camera is None:
            raise ValueError(f"device {self.id}: kind camera needs a 'camera' section")
        if self.kind != "camera" and self.camera is not None:
            raise ValueError(f"device {self.id}: only cameras take a 'camera' section")
        return self


# Zigbee2MQTT topic levels: what a base topic may be made of (no wildcards, no "$"
# system topics, nothing of the wire contract's "sc/" tree).
_Z2M_BASE = r"^[A-Za-z0-9_.\-]{1,64}(/[A-Za-z0-9_.\-]{1,64}){0,3}$"
# Zigbee2MQTT's own sub-topics of a device: a friendly name may not end in one.
Z2M_SUFFIXES = ("availability", "set", "get")


class Zigbee2MQTTAdapter(_Strict):
    """A Zigbee2MQTT bridge publishing some of the site's devices under
    ``base_topic`` (hub/ingest/adapters/zigbee2mqtt.py; docs/configuration.md)."""

    kind: Literal["zigbee2mqtt"]
    base_topic: Annotated[str, Field(pattern=_Z2M_BASE)] = "zigbee2mqtt"
    # The bridge's broker user (hub-edge credentials writes it, with write access to
    # base_topic only).
    mqtt_user: Ident = "zigbee2mqtt"
    # Friendly name in Zigbee2MQTT -> device id in this file.
    devices: dict[str, Ident] = Field(min_length=1)

    @field_validator("base_topic")
    @classmethod
    def _own_tree(cls, v: str) -> str:
        if v == "sc" or v.startswith("sc/"):
            raise ValueError(f"base_topic {v!r} lies in the hub's own topic tree sc/")
        return v

    @field_validator("devices")
    @classmethod
    def _friendly_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            levels = name.split("/")
            if not 0 < len(name) <= 128 or any(not p for p in levels):
                raise ValueError(f"friendly name {name!r}: 1-128 characters, no empty"
                                 " topic level (a leading, trailing or double '/')")
            if any(c in name for c in "+#\x00"):
                raise ValueError(f"friendly name {name!r} contains an MQTT wildcard or NUL")
            if levels[0] == "bridge" or levels[-1] in Z2M_SUFFIXES:
                raise ValueError(f"friendly name {name!r} collides with Zigbee2MQTT's own"
                                 " topics (bridge/..., .../availability, .../set, .../get)")
        ids = list(v.values())
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"device id(s) {dup} mapped from more than one friendly name")
        return v


class Contact(_Strict):
    name: str
    phone: str
    relation: str = ""


class CareSubject(_Strict):
    id: Ident
    name: str
    address: str  # building-unit-room, e.g. 3-2-501
    grid: GridCode
    consent: bool  # monitoring only with the resident's (or guardian's) consent
    # For the incident's resident card (hub/residents.py): the age, whether anyone
    # lives with them, and the building (a buildings id; else from the address).
    birth_year: int | None = Field(default=None, ge=1890, le=2100)
    lives_alone: bool = True
    building: Ident | None = None
    emergency_contacts: list[Contact] = Field(default_factory=list)
    inactivity_day_s: float | None = None  # overrides rules.inactivity for this person
    inactivity_night_s: float | None = None
    usual_water_l_per_day: float | None = None


class InactivityRule(_Strict):
    day_start: time = time(7, 0)
    night_start: time = time(22, 0)
    day_window_s: float = Field(default=12 * 3600, gt=0)
    night_window_s: float = Field(default=16 * 3600, gt=0)


class WaterRule(_Strict):
    none_window_s: float = Field(default=12 * 3600, gt=0)
    excess_factor: float = Field(default=3.0, gt=1)
    excess_window_s: float = Field(default=3600, gt=0)


class VitalsRule(_Strict):
    heart_rate: tuple[float, float] = (40, 130)
    spo2: tuple[float, float] = (90, 100)
    body_temp: tuple[float, float] = (35.0, 38.5)
    consecutive: int = Field(default=3, ge=1)


class OfflineRule(_Strict):
    missed_heartbeats: int = Field(default=3, ge=1)


class PowerClassHealth(_Strict):
    """Device-health thresholds of one power class (hub/sensing/rules: offline,
    battery, link). Each problem clears at a threshold past the one that raised
    it, so a reading wavering around one threshold does not flap the incident."""

    offline_s: float = Field(gt=0)  # silence after which the device is offline
    battery_low_pct: float = Field(default=20, ge=0, le=100)  # low at or below
    battery_ok_pct: float = Field(default=25, ge=0, le=100)  # cleared at or above
    weak_link_lqi: float = Field(default=30, ge=0, le=255)  # weak at or below (Zigbee LQI)
    link_ok_lqi: float = Field(default=60, ge=0, le=255)  # cleared at or above
    weak_link_readings: int = Field(default=3, ge=1)  # consecutive readings to raise / clear

    @model_validator(mode="after")
    def _hysteresis(self) -> PowerClassHealth:
        if self.battery_ok_pct <= self.battery_low_pct:
            raise ValueError(f"battery_ok_pct ({self.battery_ok_pct:g}) must be above"
                             f" battery_low_pct ({self.battery_low_pct:g})")
        if self.link_ok_lqi <= self.weak_link_lqi:
            raise ValueError(f"link_ok_lqi ({self.link_ok_lqi:g}) must be above"
                             f" weak_link_lqi ({self.weak_link_lqi:g})")
        return self


class MainsHealth(PowerClassHealth):
    offline_s: float = Field(default=600, gt=0)


class BatteryHealth(PowerClassHealth):
    offline_s: float = Field(default=25 * 3600, gt=0)


class HealthRule(_Strict):
    mains: MainsHealth = MainsHealth()
    battery: BatteryHealth = BatteryHealth()

    def of(self, power: PowerClass | None) -> PowerClassHealth:
        """A device without a power class is judged on battery and link as a
        battery-powered one (it reports a battery level only if it has one)."""
        return self.mains if power == "mains" else self.battery


class FallRule(_Strict):
    confirm_s: float = Field(default=1.5, ge=0)
    severity_raise_s: float = Field(default=60, gt=0)


class Rules(_Strict):
    inactivity: InactivityRule = InactivityRule()
    water: WaterRule = WaterRule()
    vitals: VitalsRule = VitalsRule()
    offline: OfflineRule = OfflineRule()
    health: HealthRule = HealthRule()
    fall: FallRule = FallRule()


class ClipsConfig(_Strict):
    """Event clips (hub/vision/clips.py): what a vision worker keeps of each camera's
    frames and writes when one of its rules' alarms fires, and how long the clips stay
    (the alert worker's hourly purge, hub/alerts/retention.py)."""

    enabled: bool = True
    pre_s: float = Field(default=10.0, ge=0, le=60)  # seconds before the alarm's frame
    post_s: float = Field(default=20.0, ge=0, le=120)  # seconds after it
    # A camera's ring of received JPEG frames, bounded by bytes as well as by pre_s.
    buffer_mb: float = Field(default=16.0, gt=0, le=512)
    clip_max_mb: float = Field(default=64.0, gt=0, le=2048)  # frames of one clip
    queue: int = Field(default=4, ge=1, le=64)  # clips waiting for the encoder
    crf: int = Field(default=28, ge=0, le=51)  # H.264 quality (lower: better, larger)
    retention_days: float = Field(default=30.0, gt=0)
    # Per incident category code; a category not named keeps retention_days.
    retention_days_by_category: dict[Code, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict)
    max_total_gb: float = Field(default=20.0, gt=0)  # all clips; the oldest go first


class SiteInfo(_Strict):
    id: Ident
    name: str
    timezone: str = "Asia/Shanghai"
    plan_size: tuple[int, int] = (1000, 700)  # aspect of the site plan drawing


class Site(_Strict):
    site: SiteInfo
    grid: GridNode
    buildings: list[Building] = Field(default_factory=list)
    people: list[Person] = Field(default_factory=list)
    devices: list[DeviceConfigEntry] = Field(default_factory=list)
    # Inputs that are not the wire contract, translated at ingest (hub/ingest/adapters).
    adapters: list[Zigbee2MQTTAdapter] = Field(default_factory=list)
    care_subjects: list[CareSubject] = Field(default_factory=list)
    # Keyed by category code: overrides a registered category's fields, or adds one.
    categories: dict[str, CategoryConfig] = Field(default_factory=dict)
    rules: Rules = Rules()
    clips: ClipsConfig = ClipsConfig()
    # Chat robots and SMS gateways per grid unit, and the family-first cascade
    # (hub/alerts/notifiers/channels.py: secrets come from the environment).
    channels: list[ChannelConfig] = Field(default_factory=list)
    family: FamilyConfig = FamilyConfig()
    # The merged registry, cached with what it was built from (see ``registry``).
    _registry: tuple[int, dict[str, CategoryConfig], CategoryRegistry] | None = PrivateAttr(
        default=None)

    @model_validator(mode="after")
    def _references(self) -> Site:
        codes = {n.code for n, _ in self.grid.walk()}
        ids: dict[str, set[str]] = {k: set() for k in ("building", "person", "device", "subject")}
        for kind, items in (
            ("building", self.buildings),
            ("person", self.people),
            ("device", self.devices),
            ("subject", self.care_subjects),
        ):
            for it in items:
                if it.id in ids[kind]:
                    raise ValueError(f"duplicate {kind} id {it.id!r}")
                ids[kind].add(it.id)
        for i, b in enumerate(self.buildings):
            _need(b.grid in codes, f"buildings.{i}.grid", f"unknown grid code {b.grid}")
        for i, p in enumerate(self.people):
            for j, r in enumerate(p.roles):
                _need(r.unit in codes, f"people.{i}.roles.{j}.unit", f"unknown grid code {r.unit}")
        for i, d in enumerate(self.devices):
            _need(d.grid in codes, f"devices.{i}.grid", f"unknown grid code {d.grid}")
            if d.building:
                _need(d.building in ids["building"], f"devices.{i}.building",
                      f"unknown building {d.building}")
            if d.subject:
                _need(d.subject in ids["subject"], f"devices.{i}.subject",
                      f"unknown care subject {d.subject}")
        _check_adapters(self.adapters, ids["device"])
        for i, s in enumerate(self.care_subjects):
            _need(s.grid in codes, f"care_subjects.{i}.grid", f"unknown grid code {s.grid}")
        _check_categories(self.categories)
        check_channels(self.channels, self.family, codes)
        return self

    @property
    def registry(self) -> CategoryRegistry:
        """The categories this site uses: built-ins, plug-ins (loaded on first use),
        then this file's ``categories:``. Rebuilt when a plug-in registers later, or
        for a copy of the site with other ``categories``."""
        hit = self._registry
        if hit is not None and hit[0] == REGISTRY.version and hit[1] is self.categories:
            return hit[2]
        load_plugins()
        reg = REGISTRY.with_overrides(self.categories)
        self._registry = (REGISTRY.version, self.categories, reg)
        return reg

    def category(self, code: str) -> CategoryInfo:
        """A registered category; raises ``hub.categories.UnknownCategory``."""
        return self.registry.get(code)

    @cached_property
    def devices_by_id(self) -> dict[str, DeviceConfigEntry]:
        return {d.id: d for d in self.devices}

    @cached_property
    def subjects_by_id(self) -> dict[str, CareSubject]:
        return {s.id: s for s in self.care_subjects}

    def device(self, device_id: str) -> DeviceConfigEntry | None:
        return self.devices_by_id.get(device_id)

    def subject(self, subject_id: str) -> CareSubject | None:
        return self.subjects_by_id.get(subject_id)


def _check_categories(categories: dict[str, CategoryConfig]) -> None:
    """An unknown or incomplete category fails the load. The plug-ins are imported
    only when the built-ins do not explain the section, so a process that never
    asks for ``Site.registry`` (the edge agent) does not import the hub's rules."""
    try:
        REGISTRY.with_overrides(categories)
    except ValueError:
        load_plugins()
        REGISTRY.with_overrides(categories)


def _need(ok: bool, where: str, msg: str) -> None:
    if not ok:
        raise ValueError(f"{where}: {msg}")


def _check_adapters(adapters: list[Zigbee2MQTTAdapter], devices: set[str]) -> None:
    """Every mapped device exists and comes through one adapter only; bridges do not
    share a base topic (one inside another's tree), a broker user or a device's id."""
    seen: dict[str, str] = {}
    for i, a in enumerate(adapters):
        for name, dev in a.devices.items():
            _need(dev in devices, f"adapters.{i}.devices.{name}", f"unknown device {dev}")
            _need(dev not in seen, f"adapters.{i}.devices.{name}",
                  f"device {dev} already comes through {seen.get(dev)}")
            seen[dev] = a.base_topic
        _need(a.mqtt_user not in devices and not a.mqtt_user.lower().startswith("hub"),
              f"adapters.{i}.mqtt_user", f"{a.mqtt_user!r} is a device id or starts with"
              " 'hub' (broker users of devices and the hub)")
        for j, b in enumerate(adapters[:i]):
            _need(a.mqtt_user != b.mqtt_user, f"adapters.{i}.mqtt_user",
                  f"{a.mqtt_user!r} is also adapters.{j}'s")
            nested = (a.base_topic + "/").startswith(b.base_topic + "/") or \
                (b.base_topic + "/").startswith(a.base_topic + "/")
            _need(not nested, f"adapters.{i}.base_topic",
                  f"{a.base_topic!r} overlaps adapters.{j}'s {b.base_topic!r}")


def _format(err: ValidationError, path: Path) -> str:
    lines = [f"site file {path} is not valid:"]
    for e in err.errors()[:10]:
        where = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against docs/configuration.md)"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def load_site(path: str | Path) -> Site:
    path = Path(path)
    if path.is_dir():
        # A district's directory (hub.district) holds every compound's file; a process
        # that serves one compound is given its file.
        raise ConfigError(f"{path} is a directory of site files (a district): this"
                          " command takes one compound's site file; `hub check-site"
                          f" {path}` checks the district")
    # Not UTF-8, nested thousands deep or huge: one line naming the file, not a
    # traceback (hub check-site and hub run print it and exit with code 2).
    raw = load_yaml_file(path, "site file", ConfigError)
    if not isinstance(raw, dict):
        raise ConfigError(f"site file {path} must be a mapping with keys site, grid, devices, ...")
    try:
        return Site.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format(e, path)) from None
    except RecursionError:  # a recursive YAML alias the depth check did not see
        raise ConfigError(f"site file {path} nests too deeply to validate") from None
