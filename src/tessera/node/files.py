"""Files written whole or not at all: the one atomic write of Tessera.

Key files, the peers file, role configurations, the network state, deployment
records, the compiled-contract and discrete-log caches, telemetry task files: a
reader (or a crash, or a power cut) sees the old file or the new one, never part of
either.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
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
