"""Per-camera latest-frame mailbox.

Each camera has one slot. Putting a frame into a full slot replaces the older frame
(counted as dropped stale) instead of queueing it, so a camera whose frames come in
faster than they can be analysed falls behind by at most one frame, never by a
growing backlog. Consumers take cameras in the order they became ready, so one busy
camera cannot starve the others.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class SlotStats:
    put: int = 0
    taken: int = 0
    dropped_stale: int = 0


class LatestMailbox(Generic[K, T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._slots: dict[K, T] = {}
        self._ready: deque[K] = deque()  # cameras with a frame waiting, oldest first
        self._busy: set[K] = set()  # cameras a consumer is working on now
        self._closed = False
        self.stats: dict[K, SlotStats] = {}

    def put(self, key: K, item: T) -> bool:
        """Store ``item`` as the camera's latest; True when it replaced a stale one."""
        with self._cond:
            st = self.stats.setdefault(key, SlotStats())
            st.put += 1
            replaced = key in self._slots
            self._slots[key] = item
            if replaced:
                st.dropped_stale += 1
            elif key not in self._busy:
                self._ready.append(key)
                self._cond.notify()
            return replaced

    def get(self, timeout: float | None = None) -> tuple[K, T] | None:
        """The next camera's latest frame, or None on timeout or close.

        A camera handed out stays *busy* until :meth:`done`, so two consumers never
        analyse the same camera at once (tracking is sequential per camera)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready or self._closed, timeout):
                return None
            if not self._ready:
                return None
            key = self._ready.popleft()
            item = self._slots.pop(key)
            self._busy.add(key)
            self.stats[key].taken += 1
            return key, item

    def done(self, key: K) -> None:
        with self._cond:
            self._busy.discard(key)
            if key in self._slots:
                self._ready.append(key)
                self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._slots)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
