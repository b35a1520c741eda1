"""A fixed split of the cameras among vision workers, by index.

``hub run`` does not use it: its vision workers own cameras by lease, moved to the
others when one dies and shared with one that joins (:mod:`hub.vision.ownership`).
This split is for a ``VisionWorker`` built with ``worker_index``/``worker_count``
(tests, benchmarks), where the set of workers is fixed and known to each.

Tracking and the fire-lane models are per camera and stateful, so a camera's frames
must all go to one worker (MQTT shared subscriptions would spread them by message).
Rendezvous (highest-random-weight) hashing gives every worker the same answer with
no coordination, spreads cameras evenly, and when the worker count changes from N to
N+1 only about 1/(N+1) of the cameras move.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _weight(camera_id: str, worker: int) -> int:
    h = hashlib.blake2b(f"{camera_id}\x00{worker}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def owner(camera_id: str, worker_count: int) -> int:
    """Index (0..worker_count-1) of the worker that owns ``camera_id``."""
    if worker_count < 1:
        raise ValueError(f"worker_count must be >= 1, got {worker_count}")
    return max(range(worker_count), key=lambda w: _weight(camera_id, w))


def cameras_for(camera_ids: Iterable[str], worker_index: int, worker_count: int) -> list[str]:
    """The cameras worker ``worker_index`` of ``worker_count`` owns, sorted."""
    if not 0 <= worker_index < worker_count:
        raise ValueError(f"worker_index {worker_index} is outside 0..{worker_count - 1}")
    return sorted(c for c in set(camera_ids) if owner(c, worker_count) == worker_index)
