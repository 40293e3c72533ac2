"""Files written whole or not at all: the one atomic write of Tessera.

Key files, the peers file, role configurations, the network state, deployment
records, the compiled-contract and discrete-log caches, telemetry task files: a
reader (or a crash, or a power cut) sees the old file or the new one, never part of
either. Caches that several processes may fill at once (the compiled contracts, the
discrete-log table; parallel test workers, two roles starting together) are built
under :func:`file_lock`, so one process builds and the others read its file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o600, *, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` with permissions ``mode``, atomically.

    The bytes go to a temporary file in the same directory, which is flushed to disk
    and renamed over ``path``; then the directory is flushed, so that the rename
    survives a power cut. With ``overwrite=False`` the file is linked into place
    instead: if ``path`` exists (even if it appeared meanwhile) it is left alone and
    a :class:`FileExistsError` naming it is raised. On any failure the temporary
    file is removed. The directory must exist.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # Some file systems refuse to fsync a directory: the file itself is on disk then.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on ``path``, created if missing, until the
    block ends; the lock is released with the file descriptor, also when the process dies.

    Raises :class:`OSError` if the lock file cannot be created (a read-only directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
