"""Where evidence images, photo attachments and event clips are kept: a store of
files by key, shared by every process of a deployment.

A key is a relative POSIX path (``evidence/cam-1/20260101T...-fall.jpg``,
``clips/fall/cam-1/....mp4``, ``attachments/12/<uuid>.jpg``); incidents name their
files by key, so whichever API replica answers a request finds the file another
process wrote. :class:`FileStorage` keeps the files under one directory: a district
mounts the same directory (NFS or another shared file system) as ``HUB_DATA_DIR`` on
every API replica, vision worker and alert worker (docs/operations.md).

Writes are atomic: the bytes go to a hidden temporary file in the key's folder,
are flushed to disk, and are renamed onto the key, so no reader on any host sees a
half-written file, and two writers of one key leave one whole file. Keys that could
leave the directory (``..``, absolute, NUL, hidden names) are refused with
:class:`BadKey`, never resolved.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

log = logging.getLogger(__name__)

KEY_MAX = 512
# Each level: letters, digits and _ . - ; not starting with a dot (temporary files
# and "." / ".." are hidden that way).
_LEVEL = r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}"
_KEY = re.compile(rf"^{_LEVEL}(/{_LEVEL})*$")
TMP_PREFIX = ".tmp-"


class BadKey(ValueError):
    """A key that is not a relative path of safe names."""


def check_key(key: str) -> str:
    if not isinstance(key, str) or len(key) > KEY_MAX or not _KEY.fullmatch(key):
        raise BadKey(f"storage key {str(key)[:80]!r} is not a relative path of names"
                     f" made of letters, digits, '_', '.', '-' (at most {KEY_MAX} characters)")
    return key


@dataclass(frozen=True, slots=True)
class Stored:
    key: str
    size: int
    mtime: float  # seconds since the epoch


class Storage(Protocol):
    """What the hub asks of a file store. ``open`` and ``size`` raise
    ``FileNotFoundError`` / return None for a missing key; every method raises
    :class:`BadKey` for a key that is not one."""

    def put(self, key: str, data: bytes) -> int:
        """Store ``data`` under ``key`` atomically (replacing any); returns its size."""
        ...

    def put_file(self, key: str, src: Path) -> int:
        """Move the finished local file ``src`` in under ``key`` atomically."""
        ...

    def open(self, key: str) -> BinaryIO: ...

    def local_path(self, key: str) -> Path | None:
        """The file on this host's file system, for a response that answers Range
        requests from it; None when the key has no file."""
        ...

    def size(self, key: str) -> int | None: ...

    def delete(self, key: str) -> bool:
        """True when a file was removed."""
        ...

    def list(self, prefix: str = "") -> Iterator[Stored]:
        """Every stored file whose key starts with the folder ``prefix`` (empty: all)."""
        ...


class FileStorage:
    """Files under ``root``: a local directory or a shared mount."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _tmp(self, final: Path) -> Path:
        final.parent.mkdir(parents=True, exist_ok=True)
        return final.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}-{final.name}"

    def put(self, key: str, data: bytes) -> int:
        final = self._path(key)
        tmp = self._tmp(final)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                # On NFS, close-to-open consistency: after fsync and rename another
                # host that opens the key reads the whole file.
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)
        return len(data)

    def put_file(self, key: str, src: Path) -> int:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        src = Path(src)
        size = src.stat().st_size
        try:
            os.replace(src, final)
        except OSError:
            # Another file system (a local scratch file, a shared mount): copy next to
            # the key, then rename there.
            self.put(key, src.read_bytes())
            src.unlink(missing_ok=True)
            return size
        _fsync_dir(final.parent)
        return size

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def local_path(self, key: str) -> Path | None:
        p = self._path(key)
        try:
            # A symlink planted under the root must not lead out of it.
            base = self.root.resolve()
            if p.resolve().is_relative_to(base) and p.is_file():
                return p
        except (OSError, ValueError):
            pass
        return None

    def size(self, key: str) -> int | None:
        p = self.local_path(key)
        try:
            return p.stat().st_size if p is not None else None
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[Stored]:
        top = self._path(prefix) if prefix else self.root
        if not top.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue  # a writer's temporary file
                p = Path(dirpath) / name
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue  # deleted while listing
                yield Stored(p.relative_to(self.root).as_posix(), st.st_size, st.st_mtime)


def _fsync_dir(folder: Path) -> None:
    """The rename itself survives a crash once its directory is flushed."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (and NFS clients) refuse fsync on a directory
    finally:
        os.close(fd)
