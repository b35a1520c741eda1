"""The alert worker: the pure incident engine run against the database and the
notifiers, composed of parts of one job each.

* :mod:`hub.alerts.applier` applies alarms through the engine, one transaction a
  batch (alarms queued by ``on_alarm`` from vision workers run on its thread);
* :mod:`hub.alerts.sensing_host` hosts the sensing rules (``on_messages`` from the
  ingest, their timers) and saves their state;
* :mod:`hub.alerts.timers` runs the sensing timers and fires due escalations every
  second, and the housekeeping (silences, sensing state, retention);
* :mod:`hub.alerts.dispatcher` delivers the outbox (MQTT to grid workers' apps,
  signed webhooks) at least once, rate-limited per recipient, with retries;
* :mod:`hub.alerts.relay` streams incident changes committed by other processes;
* :mod:`hub.alerts.live` feeds the console's live stream straight after each commit
  (a view of the database, so it needs no outbox).

``start`` runs the threads a process's roles need (``hub.node``): an API replica
needs transitions and the live relay, not the applier, timers or dispatcher.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from hub.alerts.applier import AlarmApplier
from hub.alerts.dispatcher import Dispatcher
from hub.alerts.live import LiveFeed, incident_view
from hub.alerts.metrics import SENSING_PROBLEMS
from hub.alerts.model import Action, Incident, Transition
from hub.alerts.notifiers import webpush
from hub.alerts.notifiers.plan import ChannelPlan
from hub.alerts.notifiers.sender import ChannelSender
from hub.alerts.notifiers.sse import Broadcaster
from hub.alerts.outbox_rows import OutboxRows
from hub.alerts.policy import Policy
from hub.alerts.relay import ChangeRelay
from hub.alerts.retention import Retention
from hub.alerts.sensing_host import SensingHost, count_sensing_problem
from hub.alerts.sensing_partitions import SensingPartitions, default_worker_id
from hub.alerts.silences import load_silences
from hub.alerts.timers import Timers
from hub.clock import Clock, SystemClock
from hub.config import Settings, Site
from hub.domain import Alarm
from hub.family.worker import FamilyCascades
from hub.grid.tree import GridTree
from hub.intake import StatusRows
from hub.protocol import Message
from hub.ratelimit import TokenBuckets
from hub.sensing import SensingEngine
from hub.services import Broker
from hub.store.incidents import Applied, Changed, IncidentStore

__all__ = ["SENSING_PROBLEMS", "AlertService", "incident_view"]

log = logging.getLogger(__name__)


class AlertService:
    def __init__(
        self,
        pool: ConnectionPool,
        site: Site,
        tree: GridTree,
        clock: Clock | None = None,
        broker: Broker | None = None,
        data_dir: Path | str = Path("var"),
        webhook_urls: Sequence[str] = (),
        webhook_secret: str = "",
        intake_status_url: str = "",
        *,
        engine: Any = None,
        sensing: Any = None,
        broadcaster: Broadcaster | None = None,
        rate: TokenBuckets | None = None,
        batch_max: int = 200,
        tick_s: float = 1.0,
        retry_base_s: float = 2.0,
        max_attempts: int = 12,
        retention_days: float = 30.0,
        public_url: str = "",
        mqtt_publisher: Any = None,
        sensing_partition: str = "main",
        max_clock_skew_s: float | None = None,
        sensing_parts: int = 0,
        worker_id: str = "",
        lease_ttl_s: float = 6.0,
    ) -> None:
        """``broker``: where the dispatcher publishes to grid workers' apps (its own
        connection, made at ``start``) unless ``mqtt_publisher`` is given (the
        process's shared one). ``max_clock_skew_s``: the device-time bound of the
        sensing rules (``HUB_MAX_CLOCK_SKEW_S`` when None), the same as the ingest's.

        ``sensing_parts``: run the sensing rules as the owner of leased partitions
        of the households, fed from what the ingest committed
        (``hub.alerts.sensing_partitions``; ``worker_id`` names this worker in the
        leases). 0: host them in this process on the messages given to
        ``on_messages`` (one process holding every household)."""
        if webhook_urls and not webhook_secret:
            raise ValueError("webhooks need a secret to sign with (HUB_WEBHOOK_SECRET)")
        self.pool = pool
        self.site = site
        self.tree = tree
        self.clock: Clock = clock or SystemClock()
        self.broker = broker
        self.data_dir = Path(data_dir)
        self.policy = Policy()
        self.engine = engine if engine is not None else _default_engine(
            site, tree, self.clock, self.policy)
        if sensing is None:
            if max_clock_skew_s is None:
                max_clock_skew_s = Settings().max_clock_skew_s
            sensing = SensingEngine(site, tree, max_skew_s=max_clock_skew_s,
                                    on_problem=count_sensing_problem)
        self.sensing = sensing
        self.broadcaster = broadcaster or Broadcaster()
        self.rate = rate or TokenBuckets()
        self.live = LiveFeed(self.broadcaster)
        self.outbox_rows = OutboxRows(
            mqtt=broker is not None or mqtt_publisher is not None,
            webhook_urls=webhook_urls, public_url=public_url,
            channels=ChannelPlan(site, public_url) if site.channels else None)
        self.store = IncidentStore(pool, self.engine.decide, self.outbox_rows,
                                   self.engine.related_filter)
        if intake_status_url:
            if not webhook_secret:
                raise ValueError("the intake status webhook needs a secret to sign with "
                                 "(HUB_WEBHOOK_SECRET)")
            self.store.status_rows = StatusRows(intake_status_url)
        self.dispatcher = Dispatcher(pool, self.clock, rate=self.rate,
                                     webhook_secret=webhook_secret, publisher=mqtt_publisher,
                                     retry_base_s=retry_base_s, max_attempts=max_attempts,
                                     channels=ChannelSender({c.name: c for c in site.channels},
                                                            public_url))
        # Web Push to the phone view's service worker: its rows and its sender.
        self.webpush = webpush.attach(self.outbox_rows, self.dispatcher, pool, site,
                                      self.data_dir, Settings())
        # The family-first cascade of life-safety incidents about care subjects.
        self.family = FamilyCascades(pool, site, self.clock, public_url,
                                     on_notify=self.dispatcher.wake)
        self.applier = AlarmApplier(self.store, self.clock, self.live,
                                    on_notify=self.dispatcher.wake, batch_max=batch_max,
                                    categories=lambda: self.site.registry)
        # One row per site and partition, so alert workers of different sites never
        # overwrite each other's sensing state.
        self.sensing_host = SensingHost(sensing, f"{site.site.id}/{sensing_partition}")
        self.partitions: SensingPartitions | None = None
        if sensing_parts > 0:
            skew = max_clock_skew_s if max_clock_skew_s is not None else Settings().max_clock_skew_s
            self.partitions = SensingPartitions(
                pool, site, me=worker_id or default_worker_id(), parts=sensing_parts,
                make_engine=lambda s: SensingEngine(s, tree, max_skew_s=skew,
                                                    on_problem=count_sensing_problem),
                apply=self.apply_now, clock=self.clock, ttl_s=lease_ttl_s, tick_s=tick_s)
        self.retention = Retention(pool, self.clock, retention_days, self.data_dir, site.clips)
        self.timers = Timers(
            clock=self.clock, sensing=None if self.partitions else self.sensing_host,
            applier=self.applier,
            store=self.store, due=self.engine.due, live=self.live,
            on_escalated=self.dispatcher.wake, tick_s=tick_s,
            every_minute=(self._save_sensing, self.reload_silences,
                          lambda: self.rate.forget_idle(self.clock.now().timestamp())),
            every_hour=(self.purge,), review=self.engine.review_due)
        self.relay = ChangeRelay(pool.conninfo, self.store.origin, self.live)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._owns_sensing = False
        self.reload_silences()

    # ------------------------------------------------------------ lifecycle

    def start(self, *, applier: bool = True, ticker: bool = True,
              dispatcher: bool = True, relay: bool = True) -> AlertService:
        """``relay``: also stream incident changes committed by other hub processes
        (alert workers, API replicas) to this process's live-stream clients."""
        if self.broker is not None and self.dispatcher.publisher is None:
            from hub.alerts.notifiers.mqtt import MqttNotifier

            self.dispatcher.publisher = MqttNotifier(self.broker)
        # The process that runs the timers owns the sensing state; an API replica must
        # neither load it nor overwrite it with its own empty one.
        self._owns_sensing = ticker and self.partitions is None
        if self._owns_sensing:
            self.sensing_host.restore(self.pool)
        if ticker and self.partitions is not None:
            self.partitions.prepare()
        parts: tuple[tuple[str, Callable[[threading.Event], None], bool], ...] = (
            ("alert-applier", self.applier.run, applier),
            ("alert-sensing", self.partitions.run if self.partitions else _idle,
             ticker and self.partitions is not None),
            ("alert-ticker", self.timers.run, ticker),
            ("alert-dispatcher", self.dispatcher.run, dispatcher),
            ("alert-family", self.family.run, ticker and self.site.family.channel is not None),
            ("alert-relay", self.relay.run, relay))
        for name, target, on in parts:
            if on:
                t = threading.Thread(target=target, args=(self._stop,), name=name, daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self._stop.set()
        self.dispatcher.wake()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        if self._owns_sensing:
            self._save_sensing()
        publisher = self.dispatcher.publisher
        if publisher is not None and hasattr(publisher, "close"):
            publisher.close()
            self.dispatcher.publisher = None
        self.broadcaster.close_all()
        self.dispatcher.close()

    def health(self) -> dict[str, Any]:
        threads = {t.name: t.is_alive() for t in self._threads}
        return {"ok": all(threads.values()), "threads": threads,
                "queued_alarms": self.applier.queued, "sse_clients": self.broadcaster.clients}

    def __enter__(self) -> AlertService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ input

    def on_alarm(self, alarm: Alarm) -> None:
        """Queue one alarm (thread-safe, never blocks on the database)."""
        self.applier.enqueue((alarm,))

    def on_alarms(self, alarms: Iterable[Alarm]) -> None:
        self.applier.enqueue(alarms)

    def on_messages(self, msgs: Sequence[Message]) -> None:
        """Committed Telemetry/Event/Status from the ingest (its ``on_committed``).
        The alarms they raise are applied before this returns, so the ingest
        acknowledges the messages only once the incidents they caused are committed."""
        alarms = self.sensing_host.on_messages(msgs, self.clock.now())
        if alarms:
            try:
                self.applier.apply_now(alarms)
            except Exception:  # noqa: BLE001 - database away: the applier keeps retrying
                log.warning("database unavailable; sensing alarms queued",
                            extra={"alarms": len(alarms)})
                self.applier.enqueue(alarms)

    def apply_now(self, alarms: Sequence[Alarm],
                  received: float | None = None) -> list[Applied]:
        """Apply alarms synchronously (one transaction), then notify. Raises when
        the database cannot be reached."""
        return self.applier.apply_now(alarms, received)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued alarm has been applied."""
        return self.applier.flush(
            timeout, lambda: any(t.name == "alert-applier" for t in self._threads))

    # ------------------------------------------------------------ actions

    def transition(self, incident_id: int, action: Action | str, actor: str, *,
                   expected_version: int | None = None, reason: str | None = None,
                   assignee: str | None = None, data: dict[str, Any] | None = None,
                   source: str = "api", review_at: datetime | None = None) -> Changed:
        """One lifecycle action. Raises ``lifecycle.LifecycleError`` (not allowed),
        ``lifecycle.ConflictError`` (someone else changed it first) or
        ``hub.store.incidents.NotFound``."""
        now = self.clock.now()

        def act(inc: Incident) -> Transition:
            return self.engine.transition(  # type: ignore[no-any-return]
                inc, action, actor=actor, at=now, source=source, reason=reason,
                assignee=assignee, expected_version=expected_version, data=data,
                review_at=review_at)

        changed = self.store.change(incident_id, expected_version, act, now)
        self.live.publish(changed.incident, "transition", changed.audit[0].action.value
                          if changed.audit else None)
        self.dispatcher.wake()
        return changed

    def reload_silences(self) -> None:
        with self.pool.connection() as conn:
            silences = load_silences(conn, self.clock.now())
        self.engine.set_silences(silences)

    # ------------------------------------------------------------ periodic work

    def tick(self, now: datetime | None = None) -> list[Changed]:
        """Sensing timers and due escalations at ``now`` (the clock's when None)."""
        return self.timers.tick(now)

    def purge(self) -> dict[str, int]:
        """Drop delivered notifications, alarm records and event clips past their
        retention."""
        return self.retention.purge()

    def dispatch_once(self, now: datetime | None = None, limit: int = 500) -> int:
        """Deliver what is due; returns how many outbox rows were settled."""
        return self.dispatcher.dispatch_once(now, limit)

    def _save_sensing(self) -> None:
        if self.partitions is None:  # partition owners save with every cursor move
            self.sensing_host.save(self.pool, self.clock.now())


def _idle(_stop: threading.Event) -> None:
    return None


def _default_engine(site: Site, tree: GridTree, clock: Clock, policy: Policy) -> Any:
    from hub.alerts.engine import IncidentEngine

    return IncidentEngine(site, tree, clock, policy)
