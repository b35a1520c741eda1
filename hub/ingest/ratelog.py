"""Logging that a flood cannot turn into a flood of log lines."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any


class RateLimitedLog:
    """At most ``burst`` records per key every ``period`` seconds; when a period
    ends with records held back, one line says how many."""

    def __init__(self, logger: logging.Logger, burst: int = 5, period: float = 60.0) -> None:
        self._log = logger
        self._burst = burst
        self._period = period
        self._lock = threading.Lock()
        self._window: dict[str, tuple[float, int, int]] = {}  # key -> (start, sent, held)

    def warning(self, key: str, msg: str, *, extra: dict[str, Any] | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            start, sent, held = self._window.get(key, (now, 0, 0))
            if now - start >= self._period:
                if held:
                    self._log.warning(
                        "log records suppressed", extra={"key": key, "suppressed": held}
                    )
                start, sent, held = now, 0, 0
            if sent < self._burst:
                self._window[key] = (start, sent + 1, held)
                emit = True
            else:
                self._window[key] = (start, sent, held + 1)
                emit = False
        if emit:
            self._log.warning(msg, extra=extra)
