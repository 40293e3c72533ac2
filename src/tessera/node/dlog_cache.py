"""On-disk cache of the baby-step table of :mod:`tessera.crypto.dlog`.

The table is built once (on every core; about 15 s for the default 2^22 bound on
two cores) and kept in the
cache directory (``$TESSERA_CACHE_DIR``, else ``$XDG_CACHE_HOME/tessera``, else
``~/.cache/tessera``). A file that fails its checksum or size check is
rebuilt, never trusted; writes go to a temporary file renamed into place, so a
crash leaves either the old file or none; processes that miss at once build it once.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tessera.crypto.dlog import DEFAULT_BOUND, BabyStepTable, DiscreteLog, segment
from tessera.errors import DecodeError
from tessera.node.files import atomic_write, file_lock

_loaded: dict[tuple[Path, int], BabyStepTable] = {}


def cache_dir() -> Path:
    env = os.environ.get("TESSERA_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tessera"


def table_path(bound: int, directory: Path | None = None) -> Path:
    return (directory or cache_dir()) / f"dlog-secp256k1-{bound}.bin"


def _read_table(path: Path, bound: int) -> BabyStepTable | None:
    if not path.exists():
        return None
    try:
        table = BabyStepTable.from_bytes(path.read_bytes())
    except (DecodeError, OSError):
        return None
    return table if table.bound == bound else None


def load_table(bound: int = DEFAULT_BOUND, directory: Path | None = None) -> BabyStepTable:
    """The cached table for ``bound``, rebuilt and rewritten if missing or corrupt.

    Processes that miss at once (parallel test workers, roles starting together) build
    it once: the first under a lock on the file, the others then read what it wrote."""
    path = table_path(bound, directory)
    key = (path, bound)
    if key in _loaded:
        return _loaded[key]
    table = _read_table(path, bound)
    if table is None:
        with contextlib.ExitStack() as stack:
            with contextlib.suppress(OSError):  # a read-only cache: build without the lock
                stack.enter_context(file_lock(path.with_name(f".{path.name}.lock")))
                table = _read_table(path, bound)
            if table is None:
                table = _build_parallel(bound)
                _atomic_write(path, table.to_bytes())
    _loaded[key] = table
    return table


def _build_parallel(bound: int) -> BabyStepTable:
    """Build the table on every core: each process walks one segment of ``1..bound``."""
    workers = max(1, min(os.cpu_count() or 1, 8))
    if not 1 <= bound < 1 << 32 or bound < 1 << 16 or workers == 1:
        return BabyStepTable.build(bound)
    step = -(-bound // workers)
    starts = list(range(1, bound + 1, step))
    counts = [min(step, bound + 1 - s) for s in starts]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(segment, starts, counts))
    return BabyStepTable.from_segments(bound, parts)


def _atomic_write(path: Path, data: bytes) -> None:
    """The table file written atomically (:func:`tessera.node.files.atomic_write`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)


def discrete_log(
    max_abs: int = 1 << 32, bound: int = DEFAULT_BOUND, directory: Path | None = None
) -> DiscreteLog:
    return DiscreteLog(load_table(bound, directory), max_abs)
