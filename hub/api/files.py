"""Files the API serves from a directory by a name it was given.

Every route that turns a name into a file (static pages, evidence snapshots, photo
attachments) asks :func:`file_inside`, so none of them can be made to serve a file
outside its directory or to fail with a traceback: a NUL byte makes ``Path.resolve``
raise ``ValueError`` and a name longer than the file system takes raises ``OSError``
(ENAMETOOLONG), and each was a 500 from ``GET /static/js/%00.js``.
"""

from __future__ import annotations

from pathlib import Path

from hub.storage import BadKey, FileStorage, Storage


def file_inside(root: Path, name: str) -> Path | None:
    """The regular file ``name`` names under ``root``, or None when there is none: a
    name that leaves ``root`` (``..``, a symlink out), a missing file, a directory, or
    a name the operating system refuses (NUL, too long). Never raises for the name."""
    try:
        base = root.resolve()
        f = (base / name).resolve()
        if f.is_relative_to(base) and f.is_file():
            return f
    except (OSError, ValueError):
        pass
    return None


def storage_of(data_dir: Path | str) -> Storage:
    """The deployment's file store: evidence, attachments and clips by key under the
    data directory, which every replica mounts (hub.storage)."""
    return FileStorage(data_dir)


def stored_file(store: Storage, key: str) -> Path | None:
    """The local file of ``key`` to serve, or None: a missing file or a key that is
    not one (a detector's or a database row's path is not trusted). Never raises."""
    try:
        return store.local_path(key)
    except BadKey:
        return None
