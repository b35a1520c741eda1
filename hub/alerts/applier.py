"""The alarm applier: alarms in, incidents committed, the live stream told.

Alarms from vision workers are queued (``enqueue`` never blocks on the database) and
applied by the applier's thread in batches, one transaction each; while the
database is away the batch is kept and retried with backoff. ``apply_now`` applies
synchronously, for callers that must not go on before the incidents committed (the
ingest acknowledges a message only after the incidents it caused)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Container, Iterable, Sequence

from hub.alerts.live import LiveFeed
from hub.alerts.metrics import ALARM_TO_STREAM, ALARMS, APPLY_SECONDS, BAD_ALARMS, INCIDENTS
from hub.clock import Clock
from hub.domain import Alarm
from hub.store.incidents import Applied, IncidentStore

log = logging.getLogger(__name__)


def invalid_reason(a: Alarm, categories: Container[str] | None = None) -> str | None:
    """Why an alarm cannot be applied (a metric label), or None. ``categories``: the
    registered category codes (the site's ``registry``)."""
    if categories is not None and a.category not in categories:
        return "unknown_category"
    if a.ts.tzinfo is None:
        return "naive_ts"
    if not a.dedup_key or len(a.dedup_key) > 500:
        return "bad_dedup_key"
    return None


def valid_alarms(alarms: Iterable[Alarm],
                 categories: Container[str] | None = None) -> list[Alarm]:
    """The alarms that can be applied; the others are counted and logged."""
    good = []
    for a in alarms:
        why = invalid_reason(a, categories)
        if why:
            BAD_ALARMS.labels(why).inc()
            log.warning("alarm rejected", extra={"reason": why, "rule": a.rule,
                                                  "dedup_key": a.dedup_key,
                                                  "category": str(a.category)[:64],
                                                  "device": a.device_id})
        else:
            good.append(a)
    return good


class AlarmApplier:
    """``on_notify`` is called after a commit that queued notifications (it wakes
    the dispatcher)."""

    def __init__(self, store: IncidentStore, clock: Clock, live: LiveFeed,
                 on_notify: Callable[[], None], batch_max: int = 200,
                 categories: Callable[[], Container[str]] | None = None) -> None:
        self.store = store
        # The registered categories, asked per batch (a plug-in may register later).
        self.categories = categories
        self.clock = clock
        self.live = live
        self.on_notify = on_notify
        self.batch_max = batch_max
        self._queue: queue.Queue[tuple[Alarm, float]] = queue.Queue()
        self._idle = threading.Condition()
        self._busy = 0

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def enqueue(self, alarms: Iterable[Alarm]) -> None:
        """Queue alarms (thread-safe, never blocks on the database)."""
        t = time.monotonic()
        for a in alarms:
            self._queue.put((a, t))

    def apply_now(self, alarms: Sequence[Alarm],
                  received: float | None = None) -> list[Applied]:
        """Apply alarms synchronously (one transaction), then notify. Raises when
        the database cannot be reached."""
        t0 = received if received is not None else time.monotonic()
        good = valid_alarms(alarms, self.categories() if self.categories else None)
        if not good:
            return []
        start = time.perf_counter()
        results = self.store.apply(good, self.clock.now())
        APPLY_SECONDS.observe(time.perf_counter() - start)
        self._after_apply(results, [t0] * len(results))
        return results

    def flush(self, timeout: float, running: Callable[[], bool]) -> bool:
        """Wait until every queued alarm has been applied; False at the timeout or
        when no applier thread runs (``running``)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._queue.unfinished_tasks or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or not running():
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    def run(self, stop: threading.Event) -> None:
        """The applier thread: drain the queue in batches until ``stop``."""
        while not stop.is_set():
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
                self._apply_batch(batch, stop)
            finally:
                for _ in batch:
                    self._queue.task_done()
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _apply_batch(self, batch: list[tuple[Alarm, float]], stop: threading.Event) -> None:
        known = self.categories() if self.categories else None
        good = [(a, t) for a, t in batch if valid_alarms([a], known)]
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
                if stop.wait(min(5.0, 0.2 * 2 ** min(attempt, 5))):
                    return
                attempt += 1

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
                INCIDENTS.labels(str(inc.category)).inc()
                log.info("incident opened", extra={
                    "incident": inc.id, "category": str(inc.category),
                    "grid": inc.grid_code, "device": inc.device_id})
            reason = "new" if kind in ("create", "group") else "update"
            self.live.publish(inc, reason)
            ALARM_TO_STREAM.observe(time.monotonic() - t0)
            notify = notify or bool(res.notifications)
        if notify:
            self.on_notify()
