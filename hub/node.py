"""One hub process: the roles (ingest, alerts, vision, api) wired together.

A compound or a small street runs every role in one process. A district runs roles
as separate processes (``hub run --roles ingest``, ``--roles vision`` ...) against
the same database and broker; shared subscriptions split ingest load, and vision
workers own cameras by a stable partition.

A process has one MQTT connection (:mod:`hub.mqtt`): the ingest, the alarm inlet and
the vision worker are its consumers, the alert notifier publishes through it. Alarms
travel through the broker whatever the roles: the vision worker publishes them on the
inlet (``hub.alarmbus``) and alert workers consume them (``hub.alerts.inlet``), so a
vision-only process needs no alert worker beside it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from hub.clock import Clock, SystemClock
from hub.config import Settings, Site, load_site
from hub.grid import GridTree
from hub.mqtt import MqttConnection
from hub.services import Broker, parse_mqtt_url
from hub.store.migrations import migrate

log = logging.getLogger(__name__)

ALL_ROLES = frozenset({"ingest", "alerts", "vision", "api"})


@dataclass
class HubNode:
    settings: Settings
    site: Site
    broker: Broker
    database_url: str
    roles: frozenset[str] = ALL_ROLES
    clock: Clock = field(default_factory=SystemClock)
    webhook_urls: list[str] = field(default_factory=list)
    vision_index: int = 0
    vision_backend: str = "auto"

    def __post_init__(self) -> None:
        unknown = set(self.roles) - ALL_ROLES
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; choose from {sorted(ALL_ROLES)}")
        self.pool: ConnectionPool | None = None
        self.tree = GridTree.from_site(self.site)
        self.mqtt: MqttConnection | None = None
        self.alerts: Any = None
        self.ingest: Any = None
        self.vision: Any = None
        self.inlet: Any = None
        self.alarm_publisher: Any = None
        self.camera_leases: Any = None
        self.api_server: Any = None
        self._api_thread: threading.Thread | None = None
        self.started_at = time.monotonic()

    # ------------------------------------------------------------ lifecycle

    def mqtt_client_id(self) -> str:
        """The process's MQTT client id: ``HUB_MQTT_CLIENT_ID`` itself where the ingest
        runs (its persistent session lives under it), else one derived from it."""
        base = self.settings.mqtt_client_id
        if "ingest" in self.roles:
            return base
        if "alerts" in self.roles:
            # The alarm inlet's persistent session lives under it.
            return f"{base}-alerts"
        if "vision" in self.roles:
            return f"{base}-vision-{self.vision_index}"
        return f"{base}-notify-{uuid.uuid4().hex[:8]}"

    def _mqtt_connection(self) -> MqttConnection:
        if "ingest" in self.roles:
            from hub.ingest.service import RECEIVE_MAXIMUM

            return MqttConnection(self.broker, self.mqtt_client_id(), persistent_session=True,
                                  receive_maximum=RECEIVE_MAXIMUM)
        if "alerts" in self.roles:
            from hub.alerts.inlet import RECEIVE_MAXIMUM as INLET_MAXIMUM

            return MqttConnection(self.broker, self.mqtt_client_id(), persistent_session=True,
                                  receive_maximum=INLET_MAXIMUM)
        return MqttConnection(self.broker, self.mqtt_client_id())

    def start(self) -> HubNode:
        data_dir = Path(self.settings.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        applied = migrate(self.database_url)
        if applied:
            log.info("migrations applied", extra={"migrations": ",".join(applied)})
        self.pool = ConnectionPool(
            self.database_url, min_size=self.settings.db_pool_min,
            max_size=self.settings.db_pool_max, open=True, name="hub",
        )
        self.pool.wait(timeout=30)
        self.mqtt = mqtt = self._mqtt_connection()

        run_alerts = False
        if "alerts" in self.roles or "api" in self.roles:
            from hub.alerts.notifiers.mqtt import MqttNotifier
            from hub.alerts.service import AlertService

            self.alerts = AlertService(
                self.pool, self.site, self.tree, clock=self.clock, broker=self.broker,
                mqtt_publisher=MqttNotifier(connection=mqtt),
                data_dir=data_dir, webhook_urls=self.webhook_urls,
                webhook_secret=self.settings.webhook_secret,
                intake_status_url=self.settings.intake_status_url,
                public_url=f"http://{self.settings.http_host}:{self.settings.http_port}",
                sensing_partition=self.settings.sensing_partition,
                # The sensing rules run as owners of leased partitions of the
                # households, fed from what every ingest committed.
                sensing_parts=self.settings.sensing_parts, worker_id=mqtt.client_id,
                lease_ttl_s=self.settings.lease_ttl_s,
            )
            # An API-only replica still needs the service for transitions and the
            # live stream, but not the threads that apply alarms and run timers.
            run_alerts = "alerts" in self.roles

        cameras = any(d.kind == "camera" for d in self.site.devices)
        if cameras and self.roles & {"vision", "api"}:
            from hub.alarmbus import AlarmPublisher

            # The vision worker's alarms, and those of cameras' own event pushes to the
            # API, go to the alert workers through the durable inlet.
            self.alarm_publisher = AlarmPublisher(mqtt, self.site.site.id).start()

        if "vision" in self.roles and cameras:
            from hub.vision.worker import VisionWorker

            self.vision = VisionWorker(
                self.site, self.broker, data_dir, self.alarm_publisher.publish,
                backend=self.vision_backend, client_id=mqtt.client_id, mqtt_connection=mqtt,
                leased=True,  # cameras by lease (hub.vision.ownership), moved on failure
            )
            # Before the alerts' timers start: the first start-up exports the pose
            # model, and that time must not count as the devices' silence (a device
            # not heard from within its heartbeats is reported offline).
            self.vision.load_models()

        if self.alerts is not None:
            self.alerts.start(applier=run_alerts, ticker=run_alerts, dispatcher=run_alerts)
        if run_alerts:
            from hub.alerts.inlet import AlarmInlet

            self.inlet = AlarmInlet(
                mqtt, self.site, self.clock, self.alerts.apply_now,
                shared_group=self.settings.shared_group,
                max_skew_s=self.settings.max_clock_skew_s,
                categories=lambda: self.site.registry).start()

        if "ingest" in self.roles:
            from hub.ingest.service import Ingest, tune_gc
            from hub.sensing.partitions import partitioner
            from hub.store.sensing_feed import Feed

            tune_gc()
            self.ingest = Ingest(
                db_url=self.pool, broker=self.broker, site=self.site,
                client_id=self.settings.mqtt_client_id, shared_group=self.settings.shared_group,
                batch_max=self.settings.batch_max, batch_wait_ms=self.settings.batch_wait_ms,
                mqtt_connection=mqtt,
                feed=Feed(self.site.site.id,
                          partitioner(self.site, self.settings.sensing_parts)),
            )
            self.ingest.start()
        # Only once the ingest is a consumer: a resumed session delivers at once, and a
        # message no consumer wants is acknowledged and dropped.
        mqtt.start()

        if self.vision is not None:
            from hub.vision.ownership import CameraLeases

            self.vision.start()
            self.camera_leases = CameraLeases(self.pool, self.vision, mqtt.client_id,
                                              ttl_s=self.settings.lease_ttl_s).start()

        if "api" in self.roles:
            self._start_api(data_dir)
        log.info("hub started", extra={
            "site": self.site.site.id, "roles": ",".join(sorted(self.roles)),
            "broker": f"{self.broker.host}:{self.broker.port}"})
        return self

    def _start_api(self, data_dir: Path) -> None:
        import uvicorn

        from hub.api.app import create_app
        from hub.api.deps import AppContext
        from hub.api.limits import RequestLimits

        ctx = AppContext(pool=self.pool, site=self.site, tree=self.tree, alerts=self.alerts,
                         data_dir=data_dir, extra={"node": self},
                         limits=RequestLimits.from_settings(self.settings),
                         api_docs=self.settings.api_docs,
                         console_reminder_s=self.settings.console_reminder_s)
        app = create_app(ctx)
        # X-Forwarded-For / -Proto only from the configured proxies: uvicorn would
        # otherwise believe any peer on 127.0.0.1 (or FORWARDED_ALLOW_IPS), and a local
        # process could pick a fresh address per guess past the login rate limit.
        proxies = self.settings.trusted_proxy_list
        config = uvicorn.Config(app, host=self.settings.http_host, port=self.settings.http_port,
                                log_level="warning", access_log=False, lifespan="on",
                                proxy_headers=bool(proxies),
                                forwarded_allow_ips=proxies or None)
        self.api_server = uvicorn.Server(config)
        self._api_thread = threading.Thread(target=self.api_server.run, name="api", daemon=True)
        self._api_thread.start()
        deadline = time.monotonic() + 20
        while not self.api_server.started and time.monotonic() < deadline:
            if not self._api_thread.is_alive():
                raise RuntimeError(f"the API server did not start on "
                                   f"{self.settings.http_host}:{self.settings.http_port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.api_server is not None:
            self.api_server.should_exit = True
            if self._api_thread:
                self._api_thread.join(10)
        for part in (self.camera_leases, self.vision, self.alarm_publisher, self.ingest,
                     self.inlet, self.alerts):
            if part is not None:
                try:
                    part.stop()
                except Exception:
                    log.exception("error while stopping", extra={"part": type(part).__name__})
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.pool is not None:
            self.pool.close()

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"roles": sorted(self.roles),
                               "uptime_s": round(time.monotonic() - self.started_at, 1)}
        if self.mqtt is not None:
            out["mqtt"] = self.mqtt.stats()
        if self.ingest is not None:
            out["ingest"] = self.ingest.stats()
        if self.vision is not None:
            out["cameras"] = self.vision.health()
        if self.alarm_publisher is not None:
            out["alarm_publisher"] = self.alarm_publisher.stats()
        if self.inlet is not None:
            out["alarm_inlet"] = self.inlet.stats()
        return out


def run_forever(settings: Settings, roles: set[str]) -> int:
    """``hub run``: production entry point, runs until SIGTERM/SIGINT."""
    from hub import logs

    logs.setup(settings.log_level, settings.log_json)
    site = load_site(settings.site_file)
    node = HubNode(
        settings=settings, site=site, broker=parse_mqtt_url(settings.mqtt_url),
        database_url=settings.database_url, roles=frozenset(roles),
        webhook_urls=[u for u in os.environ.get("HUB_WEBHOOK_URLS", "").split(",") if u],
        vision_index=int(os.environ.get("HUB_VISION_INDEX", "0")),
        vision_backend=os.environ.get("HUB_VISION_BACKEND", "auto"),
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    node.start()
    try:
        stop.wait()
    finally:
        log.info("hub stopping")
        node.stop()
    return 0
