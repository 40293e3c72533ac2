"""What several processes share: caches (built once, under a lock), loopback ports.

Parallel test workers (pytest-xdist) and roles starting together share the user cache
directory: the compiled contracts (``ledger/compile.py``) and the discrete-log table
(``node/dlog_cache.py``). ``flock`` locks belong to an open file description, so threads
that each open the lock file exclude each other as processes do; the tests use threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tessera.crypto.dlog import BabyStepTable
from tessera.ledger import compile as contracts
from tessera.node import dlog_cache, launcher
from tessera.node.files import file_lock


def test_file_lock_excludes_another_holder(tmp_path: Path) -> None:
    lock = tmp_path / "sub" / "x.lock"
    inside: list[int] = []
    overlap = threading.Event()

    def hold(i: int) -> None:
        with file_lock(lock):
            inside.append(i)
            if len(inside) > 1:
                overlap.set()
            time.sleep(0.05)
            inside.remove(i)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(hold, range(8)))
    assert not overlap.is_set()
    assert lock.exists()


def test_file_lock_is_released_when_its_holder_dies(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    code = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os.kill(os.getpid(), 9)"
    )
    subprocess.run([sys.executable, "-c", code, str(lock)], check=False, timeout=60)
    done = threading.Event()

    def take() -> None:
        with file_lock(lock):
            done.set()

    t = threading.Thread(target=take, daemon=True)
    t.start()
    t.join(10)
    assert done.is_set()


def test_contracts_are_compiled_once_by_concurrent_loaders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = contracts._compile
    calls: list[str] = []

    def slow_compile(name: str) -> contracts.Artifact:
        calls.append(name)
        time.sleep(0.3)  # long enough for every other loader to miss the cache
        return real(name)

    monkeypatch.setattr(contracts, "_compile", slow_compile)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: contracts.load_artifact("credit_token", tmp_path), range(4)))
    assert calls == ["credit_token"]
    assert all(a == got[0] for a in got)
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
    assert contracts.load_artifact("credit_token", tmp_path) == got[0]  # from the file now
    assert calls == ["credit_token"]


def test_the_dlog_table_is_built_once_by_concurrent_loaders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound = 1 << 8
    builds: list[int] = []

    def slow_build(b: int) -> BabyStepTable:
        builds.append(b)
        time.sleep(0.3)
        return BabyStepTable.build(b)

    monkeypatch.setattr(dlog_cache, "_build_parallel", slow_build)
    monkeypatch.setattr(dlog_cache, "_loaded", {})
    with ThreadPoolExecutor(4) as pool:
        tables = list(pool.map(lambda _: dlog_cache.load_table(bound, tmp_path), range(4)))
    assert builds == [bound]
    assert all(t.to_bytes() == tables[0].to_bytes() for t in tables)


def test_a_port_handed_out_is_not_handed_out_again_for_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``free_port`` is what every network start uses (chain and role ports, bound later by
    the child process): two processes must not be given one port in that window."""
    monkeypatch.setattr(launcher, "PORT_RESERVATIONS", tmp_path / "ports")
    assert launcher._reserve(40_001) and not launcher._reserve(40_001)
    old = time.time() - launcher.PORT_RESERVATION_SECONDS - 1
    os.utime(tmp_path / "ports" / "40001", (old, old))
    assert launcher._reserve(40_001)  # an old reservation is taken over
    assert not launcher._reserve(40_001)
    ports = [launcher.free_port() for _ in range(200)]
    assert len(set(ports)) == 200
    assert {p.name for p in (tmp_path / "ports").iterdir()} >= {str(p) for p in ports}
