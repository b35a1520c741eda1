"""Where event clips live on disk, and which of them the retention purge removes.

A clip is ``clips/<category>/<camera>/<YYYYmmddTHHMMSSffffff>-<tag>.mp4`` under the
data directory: the category and the alarm's time are in the path, so the purge
needs no database and an API replica finds the file by the path the incident's
evidence names. An encoder writes ``<name>.mp4.part`` and renames it when done, so a
half-written clip is never served; a ``.part`` left by a crash is purged after
``STALE_PART_S``.

Only the standard library here: the alert worker imports it for the purge, and it
loads no codec.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger(__name__)

CLIPS = "clips"
SUFFIX = ".mp4"
PART = ".part"
STALE_PART_S = 3600.0
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_STAMP = "%Y%m%dT%H%M%S%f"


def safe(name: str) -> str:
    return _SAFE.sub("_", name) or "_"


def clip_path(category: str, camera_id: str, ts: datetime, tag: str) -> str:
    """The clip's path relative to the data directory (POSIX separators)."""
    return (f"{CLIPS}/{safe(category)}/{safe(camera_id)}/"
            f"{ts.astimezone(UTC).strftime(_STAMP)}-{safe(tag)}{SUFFIX}")


@dataclass(frozen=True, slots=True)
class StoredClip:
    rel: str  # relative to the data directory
    category: str
    ts: datetime  # the alarm's time, from the name
    size: int
    partial: bool = False  # an encoder's unfinished .part


def parse(rel: str, size: int) -> StoredClip | None:
    """A stored clip from its relative path, or None when the name is not one of ours."""
    parts = rel.split("/")
    if len(parts) != 4 or parts[0] != CLIPS:
        return None
    name, partial = parts[3], parts[3].endswith(PART)
    if partial:
        name = name[: -len(PART)]
    if not name.endswith(SUFFIX):
        return None
    try:
        ts = datetime.strptime(name.split("-", 1)[0], _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None
    return StoredClip(rel, parts[1], ts, size, partial)


def scan(data_dir: Path) -> list[StoredClip]:
    """Every clip (and unfinished clip) under ``data_dir``; foreign files are left alone."""
    root = Path(data_dir) / CLIPS
    out: list[StoredClip] = []
    if not root.is_dir():
        return out
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            try:
                size = p.stat().st_size
            except OSError:
                continue  # removed meanwhile
            c = parse(p.relative_to(data_dir).as_posix(), size)
            if c is not None:
                out.append(c)
    return out


def to_purge(clips: Iterable[StoredClip], now: datetime, days: float,
             days_by_category: Mapping[str, float], max_total_bytes: int) -> list[StoredClip]:
    """The clips to remove at ``now``: each past its category's retention (``days``
    where the category is not named), an unfinished one older than ``STALE_PART_S``,
    then the oldest of the rest until the total is under ``max_total_bytes``."""
    gone: list[StoredClip] = []
    kept: list[StoredClip] = []
    for c in clips:
        keep_for = timedelta(days=days_by_category.get(c.category, days))
        if c.partial:
            # An encode in progress takes seconds; one this old was left by a crash.
            expired = now - c.ts > keep_for or now - c.ts > timedelta(seconds=STALE_PART_S)
        else:
            expired = now - c.ts > keep_for
        (gone if expired else kept).append(c)
    total = sum(c.size for c in kept)
    for c in sorted(kept, key=lambda c: (c.ts, c.rel)):
        if total <= max_total_bytes:
            break
        if c.partial:
            continue  # its encoder is still writing it
        gone.append(c)
        total -= c.size
    return gone


def purge(data_dir: Path, now: datetime, days: float, days_by_category: Mapping[str, float],
          max_total_bytes: int) -> dict[str, int]:
    """Remove what :func:`to_purge` names; returns how many clips and bytes went."""
    removed, freed = 0, 0
    for c in to_purge(scan(data_dir), now, days, days_by_category, max_total_bytes):
        try:
            (Path(data_dir) / c.rel).unlink()
        except FileNotFoundError:
            continue
        except OSError as e:
            log.error("clip not purged", extra={"clip": c.rel, "error": str(e)})
            continue
        removed += 1
        freed += c.size
    return {"clips": removed, "clip_bytes": freed}
