"""The alert worker: the adapter that runs the pure incident engine against the
database and the notifiers.

Threads:

* the **applier** drains alarms queued by ``on_alarm`` (vision workers) and applies
  them in small batches, one transaction each (``hub.store.incidents``);
* the **ticker** calls the sensing engine's ``tick`` and fires due escalations every
  second; timers live in the incidents table, so a restarted service picks them up;
* the **dispatcher** delivers the outbox (MQTT to grid workers' apps, signed
  webhooks) at least once, rate-limited per recipient, with retries and backoff.

The console's live stream is fed straight after each commit (``broadcaster``): it
is a view of the database, so it needs no outbox.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client import Counter, Histogram
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from hub.alerts.model import Action, Incident, Notification, Transition
from hub.alerts.notifiers import webhook
from hub.alerts.notifiers.ratelimit import TokenBuckets
from hub.alerts.notifiers.sse import Broadcaster
from hub.alerts.policy import Policy, Silence
from hub.clock import Clock, SystemClock
from hub.config import Settings, Site
from hub.domain import Alarm, Category, Severity
from hub.grid.tree import GridTree
from hub.protocol import AlertNotification, Message, alerts_topic
from hub.sensing import SensingEngine
from hub.services import Broker
from hub.store import incidents as incidents_store
from hub.store import outbox
from hub.store.incidents import Applied, Changed, IncidentStore
from hub.store.outbox import OutboxItem, OutboxRow

log = logging.getLogger(__name__)

ALARMS = Counter("hub_alarms_total", "Alarms received by the alert worker", ["outcome"])
INCIDENTS = Counter("hub_incidents_opened_total", "Incidents opened", ["category"])
ESCALATIONS = Counter("hub_escalations_total", "Time limits that ran out", ["category"])
DELIVERIES = Counter("hub_notifications_total", "Outbox deliveries", ["channel", "result"])
APPLY_SECONDS = Histogram(
    "hub_alarm_batch_seconds", "Time to apply and commit one batch of alarms",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ALARM_TO_STREAM = Histogram(
    "hub_alarm_to_stream_seconds", "Alarm received to incident change on the live stream",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10),
)
BAD_ALARMS = Counter("hub_alarms_rejected_total", "Alarms that could not be applied", ["reason"])
SENSING_PROBLEMS = Counter(
    "hub_sensing_problems_total",
    "Problems the sensing rules contained to one device or household (device_failed,"
    " subject_failed, future_ts_repaired, message_ignored)", ["kind"],
)


_FIELDS = tuple(f.name for f in dataclasses.fields(Incident))


def incident_view(inc: Incident) -> dict[str, Any]:
    """The JSON shape of an incident in notifications and the live stream (the same
    as ``Incident.to_dict``, without its deep copy: this runs for every change)."""
    d: dict[str, Any] = {}
    for name in _FIELDS:
        v = getattr(inc, name)
        if isinstance(v, datetime):
            v = v.isoformat()
        elif isinstance(v, Severity):
            v = v.name.lower()
        elif isinstance(v, enum.Enum):
            v = v.value
        d[name] = v
    d["evidence_url"] = f"/api/incidents/{inc.id}/evidence" if inc.evidence_image else None
    return d


def _summary_title(items: Sequence[OutboxItem]) -> str:
    parts = [f"#{i.payload.get('incident_id')} {i.payload.get('title', '')}" for i in items[:5]]
    more = f"; +{len(items) - 5}" if len(items) > 5 else ""
    return f"{len(items)} 条告警（限流合并）: " + "; ".join(parts) + more


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
    ) -> None:
        """``max_clock_skew_s``: the device-time bound of the sensing rules
        (``HUB_MAX_CLOCK_SKEW_S`` when None), the same as the ingest's."""
        if webhook_urls and not webhook_secret:
            raise ValueError("webhooks need a secret to sign with (HUB_WEBHOOK_SECRET)")
        self.pool = pool
        self.site = site
        self.tree = tree
        self.clock: Clock = clock or SystemClock()
        self.broker = broker
        self.data_dir = Path(data_dir)
        self.webhook_urls = list(webhook_urls)
        self.webhook_secret = webhook_secret
        self.policy = Policy()
        self.engine = engine if engine is not None else _default_engine(
            site, tree, self.clock, self.policy)
        if sensing is None:
            if max_clock_skew_s is None:
                max_clock_skew_s = Settings().max_clock_skew_s
            sensing = SensingEngine(site, tree, max_skew_s=max_clock_skew_s,
                                    on_problem=_count_sensing_problem)
        self.sensing = sensing
        # Where this worker saves its sensing state: one row per site and partition,
        # so alert workers of different sites never overwrite each other's.
        self.sensing_key = f"{site.site.id}/{sensing_partition}"
        self.broadcaster = broadcaster or Broadcaster()
        self.rate = rate or TokenBuckets()
        self.batch_max = batch_max
        self.tick_s = tick_s
        self.retry_base_s = retry_base_s
        self.max_attempts = max_attempts
        self.retention = timedelta(days=retention_days)
        self.public_url = public_url.rstrip("/")
        self.store = IncidentStore(pool, self.engine.decide, self._to_outbox,
                                   self.engine.related_filter)
        self._mqtt = mqtt_publisher
        self._queue: queue.Queue[tuple[Alarm, float]] = queue.Queue()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Condition()
        self._busy = 0
        self._sensing_lock = threading.Lock()
        self._pool_http = ThreadPoolExecutor(4, thread_name_prefix="webhook")
        self._relay_ready = threading.Event()
        self._owns_sensing = False
        self.reload_silences()

    # ------------------------------------------------------------ lifecycle

    def start(self, *, applier: bool = True, ticker: bool = True,
              dispatcher: bool = True, relay: bool = True) -> AlertService:
        """``relay``: also stream incident changes committed by other hub processes
        (alert workers, API replicas) to this process's live-stream clients."""
        if self.broker is not None and self._mqtt is None:
            from hub.alerts.notifiers.mqtt import MqttNotifier

            self._mqtt = MqttNotifier(self.broker)
        # The process that runs the timers owns the sensing state; an API replica must
        # neither load it nor overwrite it with its own empty one.
        self._owns_sensing = ticker
        if ticker:
            self._restore_sensing()
        for name, target, on in (("alert-applier", self._apply_loop, applier),
                                 ("alert-ticker", self._tick_loop, ticker),
                                 ("alert-dispatcher", self._dispatch_loop, dispatcher),
                                 ("alert-relay", self._relay_loop, relay)):
            if on:
                t = threading.Thread(target=target, name=name, daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        if self._owns_sensing:
            self._save_sensing()
        if self._mqtt is not None and hasattr(self._mqtt, "close"):
            self._mqtt.close()
            self._mqtt = None
        self.broadcaster.close_all()
        self._pool_http.shutdown(wait=False)

    def health(self) -> dict[str, Any]:
        threads = {t.name: t.is_alive() for t in self._threads}
        return {"ok": all(threads.values()), "threads": threads,
                "queued_alarms": self._queue.qsize(), "sse_clients": self.broadcaster.clients}

    def __enter__(self) -> AlertService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ input

    def on_alarm(self, alarm: Alarm) -> None:
        """Queue one alarm (thread-safe, never blocks on the database)."""
        self._queue.put((alarm, time.monotonic()))

    def on_alarms(self, alarms: Iterable[Alarm]) -> None:
        t = time.monotonic()
        for a in alarms:
            self._queue.put((a, t))

    def on_messages(self, msgs: Sequence[Message]) -> None:
        """Committed Telemetry/Event/Status from the ingest (its ``on_committed``).
        The alarms they raise are applied before this returns, so the ingest
        acknowledges the messages only once the incidents they caused are committed."""
        alarms: list[Alarm] = []
        now = self.clock.now()
        with self._sensing_lock:
            for m in msgs:
                try:
                    alarms.extend(self.sensing.on_message(m, received_at=now))
                except Exception:  # noqa: BLE001 - one odd message must not stop the rest
                    BAD_ALARMS.labels("sensing_error").inc()
                    log.exception("sensing rule failed on a message",
                                  extra={"device": getattr(m, "device", None)})
        if alarms:
            try:
                self.apply_now(alarms)
            except Exception:  # noqa: BLE001 - database away: the applier keeps retrying
                log.warning("database unavailable; sensing alarms queued",
                            extra={"alarms": len(alarms)})
                self.on_alarms(alarms)

    def apply_now(self, alarms: Sequence[Alarm],
                  received: float | None = None) -> list[Applied]:
        """Apply alarms synchronously (one transaction), then notify. Raises when
        the database cannot be reached."""
        t0 = received if received is not None else time.monotonic()
        good = self._valid(alarms)
        if not good:
            return []
        start = time.perf_counter()
        results = self.store.apply(good, self.clock.now())
        APPLY_SECONDS.observe(time.perf_counter() - start)
        self._after_apply(results, [t0] * len(results))
        return results

    @staticmethod
    def _valid(alarms: Iterable[Alarm]) -> list[Alarm]:
        good = []
        for a in alarms:
            why = _invalid(a)
            if why:
                BAD_ALARMS.labels(why).inc()
                log.warning("alarm rejected", extra={"reason": why, "rule": a.rule,
                                                      "dedup_key": a.dedup_key})
            else:
                good.append(a)
        return good

    # ------------------------------------------------------------ actions

    def transition(self, incident_id: int, action: Action | str, actor: str, *,
                   expected_version: int | None = None, reason: str | None = None,
                   assignee: str | None = None, data: dict[str, Any] | None = None,
                   source: str = "api") -> Changed:
        """One lifecycle action. Raises ``lifecycle.LifecycleError`` (not allowed),
        ``lifecycle.ConflictError`` (someone else changed it first) or
        ``hub.store.incidents.NotFound``."""
        now = self.clock.now()

        def act(inc: Incident) -> Transition:
            return self.engine.transition(  # type: ignore[no-any-return]
                inc, action, actor=actor, at=now, source=source, reason=reason,
                assignee=assignee, expected_version=expected_version, data=data)

        changed = self.store.change(incident_id, expected_version, act, now)
        self._publish(changed.incident, "transition", changed.audit[0].action.value
                      if changed.audit else None)
        self._wake.set()
        return changed

    def reload_silences(self) -> None:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, device_id, zone, subject_id, category, grid_code, starts_at,"
                " ends_at, reason, created_by, maintenance FROM silences"
                " WHERE ends_at > %s ORDER BY id", (self.clock.now() - timedelta(days=1),),
            ).fetchall()
        sil = []
        for r in rows:
            try:
                sil.append(Silence(
                    id=str(r[0]), device_id=r[1], zone=r[2], subject_id=r[3],
                    category=Category(r[4]) if r[4] else None, grid_code=r[5], start=r[6],
                    end=r[7], reason=r[8], created_by=r[9], maintenance=r[10]))
            except ValueError as e:
                log.warning("ignoring an unusable silence", extra={"silence": r[0],
                                                                   "error": str(e)})
        self.engine.set_silences(sil)

    # ------------------------------------------------------------ periodic work

    def tick(self, now: datetime | None = None) -> list[Changed]:
        """Sensing timers and due escalations at ``now`` (the clock's when None)."""
        now = now or self.clock.now()
        with self._sensing_lock:
            try:
                alarms = list(self.sensing.tick(now))
            except Exception:  # noqa: BLE001
                BAD_ALARMS.labels("sensing_error").inc()
                log.exception("sensing tick failed")
                alarms = []
        if alarms:
            self.apply_now(alarms)
        out: list[Changed] = []
        for _ in range(50):  # catch up after an outage, one level per round
            changed = self.store.escalate_due(now, self.engine.due)
            if not changed:
                break
            for c in changed:
                ESCALATIONS.labels(c.incident.category.value).inc()
                log.info("incident escalated", extra={
                    "incident": c.incident.id, "level": c.incident.escalation_level,
                    "category": c.incident.category.value})
                self._publish(c.incident, "escalated")
            out.extend(changed)
        if out:
            self._wake.set()
        return out

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued alarm has been applied."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._queue.unfinished_tasks or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or not any(t.name == "alert-applier" for t in self._threads):
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    # ------------------------------------------------------------ threads

    def _apply_loop(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.batch_max:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            with self._idle:
                self._busy += 1
            try:
                self._apply_batch(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _apply_batch(self, batch: list[tuple[Alarm, float]]) -> None:
        good = [(a, t) for a, t in batch if self._valid([a])]
        attempt = 0
        while good:
            try:
                start = time.perf_counter()
                results = self.store.apply([a for a, _ in good], self.clock.now())
                APPLY_SECONDS.observe(time.perf_counter() - start)
                self._after_apply(results, [t for _, t in good])
                return
            except Exception:  # noqa: BLE001 - the database is away; keep the alarms
                log.exception("database unavailable; alarms kept and retried",
                              extra={"alarms": len(good), "attempt": attempt})
                if self._stop.wait(min(5.0, 0.2 * 2 ** min(attempt, 5))):
                    return
                attempt += 1

    def _tick_loop(self) -> None:
        last_save = last_purge = time.monotonic()
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
                if time.monotonic() - last_save > 60:
                    self._save_sensing()
                    self.reload_silences()
                    self.rate.forget_idle(self.clock.now().timestamp())
                    last_save = time.monotonic()
                if time.monotonic() - last_purge > 3600:
                    self.purge()
                    last_purge = time.monotonic()
            except Exception:  # noqa: BLE001 - the next tick tries again
                log.exception("alert tick failed")

    def purge(self) -> dict[str, int]:
        """Drop delivered notifications and alarm records past the retention time."""
        before = self.clock.now() - self.retention
        with self.pool.connection() as conn:
            n = {"outbox": outbox.purge(conn, before),
                 "alarms": incidents_store.purge_alarms(conn, before)}
        if any(n.values()):
            log.info("purged old records", extra=n)
        return n

    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                while self.dispatch_once() and not self._stop.is_set():
                    pass
            except Exception:  # noqa: BLE001 - database away: try again later
                log.exception("outbox dispatch failed")
                self._stop.wait(1.0)

    def _relay_loop(self) -> None:
        """LISTEN for change notices of other processes and stream those incidents."""
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.pool.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {incidents_store.CHANGES_CHANNEL}")
                    self._relay_ready.set()
                    while not self._stop.is_set():
                        # Collect first: the connection is busy while notifies() runs.
                        notes = list(conn.notifies(timeout=0.5, stop_after=1))
                        for n in notes:
                            self._relay(conn, n.payload)
            except Exception:  # noqa: BLE001 - reconnect; the stream is best effort
                self._relay_ready.clear()
                log.warning("change relay lost its connection; reconnecting", exc_info=True)
                self._stop.wait(1.0)

    def _relay(self, conn: psycopg.Connection[Any], payload: str) -> None:
        try:
            doc = json.loads(payload)
            if doc.get("o") == self.store.origin:
                return  # published directly after our own commit
            changes = {int(c[0]): (str(c[1]), c[2]) for c in doc["c"]}
        except (ValueError, KeyError, TypeError, IndexError):
            log.warning("unreadable change notice", extra={"payload": payload[:200]})
            return
        for inc in incidents_store.get_many(conn, list(changes)):
            reason, action = changes[inc.id]  # type: ignore[index]
            self._publish(inc, reason, action)

    # ------------------------------------------------------------ after a commit

    def _after_apply(self, results: Sequence[Applied], received: Sequence[float]) -> None:
        notify = False
        for res, t0 in zip(results, received, strict=True):
            if res.duplicate:
                ALARMS.labels("duplicate").inc()
                continue
            if res.error is not None:
                ALARMS.labels("error").inc()
                BAD_ALARMS.labels("apply_error").inc()
                continue
            kind = res.decision.kind.value if res.decision else "none"
            ALARMS.labels(kind).inc()
            inc = res.incident
            if inc is None:
                continue
            if kind in ("create", "group"):
                INCIDENTS.labels(inc.category.value).inc()
                log.info("incident opened", extra={
                    "incident": inc.id, "category": inc.category.value,
                    "grid": inc.grid_code, "device": inc.device_id})
            reason = "new" if kind in ("create", "group") else "update"
            self._publish(inc, reason)
            ALARM_TO_STREAM.observe(time.monotonic() - t0)
            notify = notify or bool(res.notifications)
        if notify:
            self._wake.set()

    def _publish(self, inc: Incident, reason: str, action: str | None = None) -> None:
        self.broadcaster.publish("incident", {"reason": reason, "action": action,
                                              "incident": incident_view(inc)}, inc.grid_code)

    def _to_outbox(self, n: Notification, inc: Incident) -> list[OutboxRow]:
        """Rows for one notification: one MQTT message per grid unit whose people are
        told (the topic their app listens on) and one webhook call per person and URL."""
        rows: list[OutboxRow] = []
        urgent = n.reason == "new" and n.severity >= Severity.CRITICAL
        units = sorted({r.unit_code for r in n.recipients if r.unit_code}) or (
            [n.grid_code] if n.grid_code else [])
        note = {
            "incident_id": n.incident_id, "grid_code": n.grid_code or "",
            "category": n.category.value, "severity": n.severity.name.lower(),
            "state": n.state.value, "title": n.title, "ts": n.at.isoformat(),
            "level": n.level, "reason": n.reason,
            "url": f"{self.public_url}/api/incidents/{n.incident_id}" if self.public_url
            else f"/api/incidents/{n.incident_id}",
        }
        if self.broker is not None or self._mqtt is not None:
            for u in units:
                rows.append(OutboxRow("mqtt", u, {**note, "urgent": urgent},
                                      incident_id=n.incident_id))
        for url in self.webhook_urls:
            for r in n.recipients:
                rows.append(OutboxRow(
                    "webhook", r.person_id,
                    {"type": "incident", "urgent": urgent, "notification": note,
                     "recipient": r.to_dict(), "incident": incident_view(inc)},
                    incident_id=n.incident_id, target=url))
        return rows

    # ------------------------------------------------------------ delivery

    def dispatch_once(self, now: datetime | None = None, limit: int = 500) -> int:
        """Deliver what is due; returns how many outbox rows were settled
        (delivered, postponed by the rate limit or scheduled for a retry)."""
        now = now or self.clock.now()
        with self.pool.connection() as conn:
            items = outbox.lease(conn, now, limit)
        if not items:
            return 0
        groups: dict[str, list[OutboxItem]] = defaultdict(list)
        for it in items:
            groups[it.key].append(it)
        ts = now.timestamp()
        messages: list[list[OutboxItem]] = []  # each becomes one message
        held: dict[datetime, list[int]] = defaultdict(list)
        for key, group in groups.items():
            urgent = [i for i in group if i.payload.get("urgent")]
            normal = [i for i in group if not i.payload.get("urgent")]
            # Life-safety news never waits for a token; it still spends one.
            for i in urgent:
                self.rate.take(key, ts)
                messages.append([i])
            if not normal:
                continue
            free = 0
            while free < len(normal) and self.rate.take(key, ts):
                free += 1
            if free == 0:
                until = datetime.fromtimestamp(self.rate.next_free(key, ts), now.tzinfo)
                held[until].extend(i.id for i in normal)
                DELIVERIES.labels(normal[0].channel, "rate_limited").inc(len(normal))
                continue
            if free >= len(normal):
                messages.extend([i] for i in normal)
            else:
                # Spend the last token on one summary of everything else waiting.
                messages.extend([i] for i in normal[: free - 1])
                messages.append(normal[free - 1:])
        errors = self._deliver(messages, now)
        ok_single = [m[0].id for m, e in zip(messages, errors, strict=True)
                     if e is None and len(m) == 1]
        ok_summary = [m for m, e in zip(messages, errors, strict=True)
                      if e is None and len(m) > 1]
        with self.pool.connection() as conn:
            if ok_single:
                outbox.delivered(conn, ok_single, now)
            for m in ok_summary:
                outbox.delivered(conn, [i.id for i in m], now, summary_of=len(m))
            for until, ids in held.items():
                outbox.postpone(conn, ids, until)
            for m, e in zip(messages, errors, strict=True):
                if e is None:
                    DELIVERIES.labels(m[0].channel, "summary" if len(m) > 1 else "ok").inc()
                    continue
                DELIVERIES.labels(m[0].channel, "failed").inc(len(m))
                gave_up = outbox.failed(conn, [i.id for i in m], e, now, self.retry_base_s,
                                        self.max_attempts)
                log.warning("notification given up after repeated failures" if gave_up else
                            "notification not delivered; will retry",
                            extra={"channel": m[0].channel, "recipient": m[0].recipient,
                                   "incident": m[0].incident_id, "error": e})
        return len(items)

    def _deliver(self, messages: list[list[OutboxItem]], now: datetime) -> list[str | None]:
        """Send every message; an error text or None for each, in order."""
        errors: list[str | None] = [None] * len(messages)
        mq = [(k, m) for k, m in enumerate(messages) if m[0].channel == "mqtt"]
        if mq:
            if self._mqtt is None:
                for k, _ in mq:
                    errors[k] = "no MQTT broker configured"
            else:
                res = self._mqtt.publish_many([self._mqtt_message(m) for _, m in mq])
                for (k, _), e in zip(mq, res, strict=True):
                    errors[k] = e
        hooks = [(k, m) for k, m in enumerate(messages) if m[0].channel == "webhook"]
        if hooks:
            # Endpoints answer slowly or not at all; do not make each wait for the last.
            futures = [(k, self._pool_http.submit(self._send_webhook, m, now)) for k, m in hooks]
            for k, f in futures:
                try:
                    f.result()
                except webhook.DeliveryError as e:
                    errors[k] = str(e)
        for k, m in enumerate(messages):
            if m[0].channel not in ("mqtt", "webhook"):
                errors[k] = f"unknown channel {m[0].channel!r}"
        return errors

    def _mqtt_message(self, items: list[OutboxItem]) -> tuple[str, bytes]:
        p = dict(max(items, key=lambda i: (_sev(i), i.id)).payload)
        if len(items) > 1:
            p["reason"] = "summary"
            p["title"] = _summary_title(items)
        p.pop("urgent", None)
        note = AlertNotification.model_validate(p)
        return alerts_topic(items[0].recipient), note.model_dump_json(exclude_none=True).encode()

    def _send_webhook(self, items: list[OutboxItem], now: datetime) -> None:
        first = items[0]
        if len(items) == 1:
            payload = first.payload
        else:
            payload = {"type": "summary", "count": len(items),
                       "recipient": first.payload.get("recipient"),
                       "notifications": [i.payload for i in items]}
        body = webhook.build_body(payload, first.id, now)
        webhook.post(first.target or "", body, self.webhook_secret, first.id, now)

    # ------------------------------------------------------------ sensing state

    def _save_sensing(self) -> None:
        snap = getattr(self.sensing, "snapshot", None)
        if snap is None:
            return
        try:
            with self._sensing_lock:
                doc = snap()
            with self.pool.connection() as conn:
                conn.execute(
                    "INSERT INTO sensing_state (name, saved_at, snapshot) VALUES (%s, %s, %s)"
                    " ON CONFLICT (name) DO UPDATE SET saved_at = excluded.saved_at,"
                    " snapshot = excluded.snapshot",
                    (self.sensing_key, self.clock.now(), Jsonb(doc)))
        except Exception:  # noqa: BLE001 - losing a snapshot only delays inactivity alarms
            log.exception("could not save the sensing state")

    def _restore_sensing(self) -> None:
        restore = getattr(self.sensing, "restore", None)
        if restore is None:
            return
        with self.pool.connection() as conn:
            row = conn.execute("SELECT snapshot FROM sensing_state WHERE name = %s",
                               (self.sensing_key,)).fetchone()
        if row:
            try:
                with self._sensing_lock:
                    restore(row[0])
            except Exception:  # noqa: BLE001 - start fresh rather than not at all
                log.exception("could not restore the sensing state; starting fresh")


def _count_sensing_problem(kind: str, _ident: str) -> None:
    # The engine logs the device or household; the metric counts by kind only, so
    # that its label set stays bounded.
    SENSING_PROBLEMS.labels(kind).inc()


def _sev(item: OutboxItem) -> int:
    try:
        return int(Severity.parse(item.payload.get("severity", "info")))
    except (KeyError, ValueError):
        return 0


def _invalid(a: Alarm) -> str | None:
    if a.ts.tzinfo is None:
        return "naive_ts"
    if not a.dedup_key or len(a.dedup_key) > 500:
        return "bad_dedup_key"
    return None


def _default_engine(site: Site, tree: GridTree, clock: Clock, policy: Policy) -> Any:
    from hub.alerts.engine import IncidentEngine

    return IncidentEngine(site, tree, clock, policy)
