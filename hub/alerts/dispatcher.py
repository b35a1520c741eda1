"""The outbox dispatcher: delivers what the incident transactions queued in the
outbox (MQTT to grid workers' apps, signed webhooks, the registered chat and SMS
channels of ``hub.alerts.notifiers.registry``) at least once, rate-limited per
recipient, with retries and backoff. A chat or SMS delivery that fails is noted in
the incident's timeline (``notify_failed``, ``notify_given_up``).

Life-safety news (``urgent``) never waits for a token. When a recipient's tokens
run out, the last one is spent on one summary of everything else waiting, and what
finds no token is postponed to when the next one is free."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol

from psycopg_pool import ConnectionPool

from hub.alerts.metrics import DELIVERIES
from hub.alerts.notifiers import timeline, webhook
from hub.alerts.notifiers.sender import ChannelSender
from hub.clock import Clock
from hub.domain import Severity
from hub.protocol import AlertNotification, alerts_topic
from hub.ratelimit import TokenBuckets
from hub.store import outbox
from hub.store.outbox import OutboxItem

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish_many(self, messages: list[tuple[str, bytes]]) -> list[str | None]:
        """Publish (topic, payload) pairs at QoS 1; an error text or None for each."""
        ...


def summary_title(items: Sequence[OutboxItem]) -> str:
    parts = [f"#{i.payload.get('incident_id')} {i.payload.get('title', '')}" for i in items[:5]]
    more = f"; +{len(items) - 5}" if len(items) > 5 else ""
    return f"{len(items)} 条告警（限流合并）: " + "; ".join(parts) + more


def _sev(item: OutboxItem) -> int:
    try:
        return int(Severity.parse(item.payload.get("severity", "info")))
    except (KeyError, ValueError):
        return 0


class Dispatcher:
    """``publisher``: the MQTT side (None: MQTT rows fail and are retried, as with no
    broker configured); it may be set after construction, before ``run``."""

    def __init__(self, pool: ConnectionPool, clock: Clock, *, rate: TokenBuckets,
                 webhook_secret: str = "", publisher: Publisher | None = None,
                 retry_base_s: float = 2.0, max_attempts: int = 12,
                 webhook_threads: int = 4, channels: ChannelSender | None = None) -> None:
        self.pool = pool
        self.clock = clock
        self.rate = rate
        self.webhook_secret = webhook_secret
        self.publisher = publisher
        self.retry_base_s = retry_base_s
        self.max_attempts = max_attempts
        self.channels = channels
        self._http = ThreadPoolExecutor(webhook_threads, thread_name_prefix="webhook")
        self._wake = threading.Event()

    def wake(self) -> None:
        """Something new is in the outbox: deliver now rather than at the next poll."""
        self._wake.set()

    def close(self) -> None:
        self._wake.set()
        self._http.shutdown(wait=False)

    def run(self, stop: threading.Event) -> None:
        """The dispatcher thread, until ``stop`` (``close`` wakes it)."""
        while not stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                while self.dispatch_once() and not stop.is_set():
                    pass
            except Exception:  # noqa: BLE001 - database away: try again later
                log.exception("outbox dispatch failed")
                stop.wait(1.0)

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
                    if (m[0].attempts and self.channels is not None
                            and self.channels.handles(m[0].channel)):
                        self._note(conn, m, "notify_delivered", None, now)
                    continue
                DELIVERIES.labels(m[0].channel, "failed").inc(len(m))
                gave_up = outbox.failed(conn, [i.id for i in m], e, now, self.retry_base_s,
                                        self.max_attempts)
                log.warning("notification given up after repeated failures" if gave_up else
                            "notification not delivered; will retry",
                            extra={"channel": m[0].channel, "recipient": m[0].recipient,
                                   "incident": m[0].incident_id, "error": e})
                if self.channels is not None and self.channels.handles(m[0].channel):
                    self._note(conn, m, "notify_given_up" if gave_up else "notify_failed",
                               e, now)
        return len(items)

    def _deliver(self, messages: list[list[OutboxItem]], now: datetime) -> list[str | None]:
        """Send every message; an error text or None for each, in order."""
        errors: list[str | None] = [None] * len(messages)
        mq = [(k, m) for k, m in enumerate(messages) if m[0].channel == "mqtt"]
        if mq:
            if self.publisher is None:
                for k, _ in mq:
                    errors[k] = "no MQTT broker configured"
            else:
                res = self.publisher.publish_many([self._mqtt_message(m) for _, m in mq])
                for (k, _), e in zip(mq, res, strict=True):
                    errors[k] = e
        hooks = [(k, m) for k, m in enumerate(messages) if m[0].channel == "webhook"]
        if hooks:
            # Endpoints answer slowly or not at all; do not make each wait for the last.
            futures = [(k, self._http.submit(self._send_webhook, m, now)) for k, m in hooks]
            for k, f in futures:
                try:
                    f.result()
                except webhook.DeliveryError as e:
                    errors[k] = str(e)
        chats = [(k, m) for k, m in enumerate(messages)
                 if m[0].channel not in ("mqtt", "webhook")]
        if chats and self.channels is not None:
            futures = [(k, self._http.submit(self.channels.deliver, m, now))
                       for k, m in chats if self.channels.handles(m[0].channel)]
            for k, f in futures:
                try:
                    f.result()
                except webhook.DeliveryError as e:
                    errors[k] = str(e)
                except Exception as e:  # noqa: BLE001 - a channel's bug must not stop the rest
                    log.exception("channel failed", extra={"channel": messages[k][0].channel})
                    errors[k] = f"{type(e).__name__}: {e}"[:300]
        for k, m in chats:
            if self.channels is None or not self.channels.handles(m[0].channel):
                errors[k] = f"unknown channel {m[0].channel!r}"
        return errors

    @staticmethod
    def _note(conn: Any, items: list[OutboxItem], action: str, error: str | None,
              now: datetime) -> None:
        """The operator sees in the timeline that a channel did not get through (and
        when it did after all)."""
        first = items[0]
        for inc in sorted({i.incident_id for i in items if i.incident_id is not None}):
            with conn.transaction():
                timeline.note(conn, inc, now, action, reason=error[:300] if error else None,
                              data={"channel": first.target, "kind": first.channel,
                                    "delivery": first.id, "attempt": first.attempts + 1})

    @staticmethod
    def _mqtt_message(items: list[OutboxItem]) -> tuple[str, bytes]:
        p = dict(max(items, key=lambda i: (_sev(i), i.id)).payload)
        if len(items) > 1:
            p["reason"] = "summary"
            p["title"] = summary_title(items)
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
