"""The alert worker's clock-driven work: every ``tick_s`` the sensing rules' timers,
the escalations whose time limit ran out and the parked incidents whose review date
came (back to the dispatcher, with a reminder); every minute and every hour the
housekeeping it is given (saving the sensing state, reloading silences, purging).

Deadlines live in the incidents table (``deadline_at``), so a restarted worker
picks up what fell due while it was down; ``tick`` catches up one escalation level
per round."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from hub.alerts.applier import AlarmApplier
from hub.alerts.live import LiveFeed
from hub.alerts.metrics import ESCALATIONS
from hub.alerts.sensing_host import SensingHost
from hub.clock import Clock
from hub.store.incidents import Changed, IncidentStore

log = logging.getLogger(__name__)

CATCH_UP_ROUNDS = 50  # escalation levels one tick may climb after an outage


class Timers:
    """``due`` is the engine's ``due(incident, now)``; ``on_escalated`` is called
    after a tick that escalated something (it wakes the dispatcher)."""

    def __init__(self, *, clock: Clock, sensing: SensingHost | None, applier: AlarmApplier,
                 store: IncidentStore, due: Callable[..., Any], live: LiveFeed,
                 on_escalated: Callable[[], None], tick_s: float = 1.0,
                 every_minute: Sequence[Callable[[], None]] = (),
                 every_hour: Sequence[Callable[[], None]] = (),
                 review: Callable[..., Any] | None = None) -> None:
        self.clock = clock
        self.sensing = sensing
        self.applier = applier
        self.store = store
        self.due = due
        self.live = live
        self.on_escalated = on_escalated
        self.tick_s = tick_s
        self.every_minute = list(every_minute)
        self.every_hour = list(every_hour)
        self.review = review  # the engine's review_due(incident, now): parked ones back

    def tick(self, now: datetime | None = None) -> list[Changed]:
        """Sensing timers and due escalations at ``now`` (the clock's when None)."""
        now = now or self.clock.now()
        # None: the sensing rules run as partition owners (hub.alerts.sensing_partitions).
        alarms = self.sensing.tick(now) if self.sensing is not None else []
        if alarms:
            self.applier.apply_now(alarms)
        out: list[Changed] = []
        for _ in range(CATCH_UP_ROUNDS):
            changed = self.store.escalate_due(now, self.due)
            if not changed:
                break
            for c in changed:
                ESCALATIONS.labels(str(c.incident.category)).inc()
                log.info("incident escalated", extra={
                    "incident": c.incident.id, "level": c.incident.escalation_level,
                    "category": str(c.incident.category)})
                self.live.publish(c.incident, "escalated")
            out.extend(changed)
        if self.review is not None:
            for c in self.store.review_due(now, self.review):
                log.info("parked incident due for review", extra={
                    "incident": c.incident.id, "category": str(c.incident.category)})
                self.live.publish(c.incident, "transition", "review")
                out.append(c)
        if out:
            self.on_escalated()
        return out

    def run(self, stop: threading.Event) -> None:
        """The ticker thread, until ``stop``."""
        last_minute = last_hour = time.monotonic()
        while not stop.wait(self.tick_s):
            try:
                self.tick()
                if time.monotonic() - last_minute > 60:
                    for job in self.every_minute:
                        job()
                    last_minute = time.monotonic()
                if time.monotonic() - last_hour > 3600:
                    for job in self.every_hour:
                        job()
                    last_hour = time.monotonic()
            except Exception:  # noqa: BLE001 - the next tick tries again
                log.exception("alert tick failed")
