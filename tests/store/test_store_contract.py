"""One contract for every store implementation: SQLite (the default) and PostgreSQL.

Each test runs on both (``location`` is an SQLite path or a PostgreSQL DSN with a
schema of its own). The role store (:class:`~tessera.node.store.Store`) and the
aggregators' store (:class:`~tessera.node.telemetry.store.TelemetryStore`) are
opened through the same functions the role processes use.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tessera.errors import BatchTooSmall, ConfigError, TransportError
from tessera.node.store import SqliteStore, Store, open_store
from tessera.node.store_postgres import PostgresStore
from tessera.node.telemetry.store import (
    BatchTotals,
    BucketDelta,
    TelemetryStore,
    open_telemetry_store,
)
from tessera.protocol.telemetry.collection import Release, xor_checksums
from tessera.protocol.telemetry.messages import BatchInterval

TASK = bytes(range(32))
OTHER_TASK = bytes(32)
THREADS = 8
ROUNDS = 25


@pytest.fixture
def store(location: str) -> Iterator[Store]:
    st = open_store(location)
    yield st
    st.close()


@pytest.fixture
def tstore(location: str) -> Iterator[TelemetryStore]:
    st = open_telemetry_store(location)
    yield st
    st.close()


def _in_threads(work: Callable[[int], None], n: int = THREADS) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as exc:  # collected and re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# -- the role store ------------------------------------------------------------------------


def test_open_store_picks_the_implementation(location: str, store: Store) -> None:
    expected = PostgresStore if location.startswith("postgresql://") else SqliteStore
    assert type(store) is expected


def test_get_put_items(store: Store) -> None:
    assert store.get("query", "a") is None
    assert store.items("query") == {}
    value = {"status": "done", "rho": 0.25, "parts": [1, "two", None, True], "n": 2**62}
    store.put("query", "a", value)
    store.put("query", "b", [])
    store.put("budget", "a", 1.5)
    assert store.get("query", "a") == value
    assert store.items("query") == {"a": value, "b": []}
    assert store.items("budget") == {"a": 1.5}
    store.put("query", "a", "overwritten")
    assert store.get("query", "a") == "overwritten"
    assert store.get("budget", "b") is None


def test_values_that_are_not_json_are_refused_and_nothing_is_stored(store: Store) -> None:
    for bad in (float("nan"), float("inf"), {"x": object()}):
        with pytest.raises((ValueError, TypeError)):
            store.put("k", "bad", bad)
    assert store.items("k") == {}


def test_a_transaction_commits_together(store: Store) -> None:
    with store.transaction() as st:
        st.put("budget", "t", 1.0)
        assert st.get("budget", "t") == 1.0  # its own writes are visible inside
        st.put("query", "q", {"status": "running"})
    assert store.get("budget", "t") == 1.0
    assert store.get("query", "q") == {"status": "running"}


def test_a_transaction_that_raises_is_rolled_back(store: Store) -> None:
    store.put("budget", "t", 1.0)
    with pytest.raises(RuntimeError, match="refused"), store.transaction() as st:
        st.put("budget", "t", 2.0)
        st.put("query", "q", {"status": "running"})
        raise RuntimeError("refused")
    assert store.get("budget", "t") == 1.0
    assert store.get("query", "q") is None
    with store.transaction() as st:  # the store is usable afterwards
        st.put("budget", "t", 3.0)
    assert store.get("budget", "t") == 3.0


def test_values_persist_across_reopening(location: str) -> None:
    first = open_store(location)
    with first.transaction() as st:
        st.put("dkg", "result", {"key": "ab" * 32})
    first.put("dataset", "patients", 7)
    first.close()
    again = open_store(location)
    assert again.get("dkg", "result") == {"key": "ab" * 32}
    assert again.items("dataset") == {"patients": 7}
    again.close()


def _increment(st: Store) -> None:
    with st.transaction() as tx:
        tx.put("budget", "t", (tx.get("budget", "t") or 0) + 1)


def test_concurrent_read_modify_writes_from_threads_lose_nothing(store: Store) -> None:
    _in_threads(lambda _: [_increment(store) for _ in range(ROUNDS)])
    assert store.get("budget", "t") == THREADS * ROUNDS


def test_concurrent_writers_on_separate_connections_are_serialised(location: str) -> None:
    """As separate processes would: each thread has its own connection to one store."""
    stores = [open_store(location) for _ in range(4)]
    try:
        _in_threads(lambda i: [_increment(stores[i]) for _ in range(ROUNDS)], n=len(stores))
        # a write outside a transaction is ordered before or after one, never inside
        _in_threads(
            lambda i: [
                _increment(stores[i]) if i % 2 else stores[i].put("other", str(j), j)
                for j in range(ROUNDS)
            ],
            n=len(stores),
        )
        assert stores[0].get("budget", "t") == len(stores) * ROUNDS + 2 * ROUNDS
        assert len(stores[1].items("other")) == ROUNDS
    finally:
        for st in stores:
            st.close()


_CRASH = """
import os, signal, sys
from tessera.node.store import open_store
st = open_store(sys.argv[1])
with st.transaction() as tx:
    tx.put("budget", "t", 99.0)
    tx.put("query", "q", "half-written")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_process_killed_inside_a_transaction_leaves_the_values_as_they_were(
    location: str,
) -> None:
    st = open_store(location)
    st.put("budget", "t", 1.0)
    st.close()
    proc = subprocess.run([sys.executable, "-c", _CRASH, location], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    st = open_store(location)
    assert st.get("budget", "t") == 1.0
    assert st.get("query", "q") is None
    _increment(st)  # nothing is left locked by the dead process
    assert st.get("budget", "t") == 2.0
    st.close()


def test_a_path_store_is_private_to_its_owner(tmp_path: Path) -> None:
    st = open_store(tmp_path / "sub" / "state.sqlite")
    st.close()
    assert os.stat(tmp_path / "sub" / "state.sqlite").st_mode & 0o077 == 0


# -- the aggregators' store ----------------------------------------------------------------


def _concat(a: bytes, b: bytes) -> bytes:
    return a + b


def _unreleased(earlier: list[Release]) -> bool:
    return not earlier


def _delta(share: bytes, count: int, checksum_byte: int) -> BucketDelta:
    return BucketDelta(share, count, bytes([checksum_byte]) * 32)


def test_report_ids_are_claimed_once_per_scope(tstore: TelemetryStore) -> None:
    ids = [bytes([i]) * 16 for i in range(3)]
    assert tstore.claim_report_ids(TASK, b"upload", ids[:2]) == [True, True]
    assert tstore.claim_report_ids(TASK, b"upload", ids) == [False, False, True]
    assert tstore.claim_report_ids(TASK, b"other", ids[:1]) == [True]
    assert tstore.claim_report_ids(OTHER_TASK, b"upload", ids[:1]) == [True]
    tstore.unclaim_report_ids(TASK, b"upload", ids[:1])
    assert tstore.claim_report_ids(TASK, b"upload", ids[:2]) == [True, False]


def test_concurrent_claims_of_the_same_ids_succeed_exactly_once(location: str) -> None:
    stores = [open_telemetry_store(location) for _ in range(4)]
    ids = [i.to_bytes(16, "big") for i in range(50)]
    won: list[list[bool]] = [[] for _ in stores]
    try:
        _in_threads(
            lambda i: won[i].extend(stores[i].claim_report_ids(TASK, b"up", ids)), n=len(stores)
        )
    finally:
        for st in stores:
            st.close()
    assert [sum(col) for col in zip(*won, strict=True)] == [1] * len(ids)


def test_pending_reports_by_time_in_report_id_order(tstore: TelemetryStore) -> None:
    tstore.put_pending(TASK, [(b"\x02" * 16, 60, b"r2"), (b"\x01" * 16, 70, b"r1")])
    tstore.put_pending(TASK, [(b"\x03" * 16, 120, b"r3")])
    tstore.put_pending(OTHER_TASK, [(b"\x00" * 16, 60, b"elsewhere")])
    assert tstore.pending_reports(TASK, 60, 120) == [b"r1", b"r2"]
    assert tstore.pending_reports(TASK, 0, 200) == [b"r1", b"r2", b"r3"]
    assert tstore.pending_reports(TASK, 0, 60) == []


def test_a_failed_put_pending_stores_none_of_its_rows(tstore: TelemetryStore) -> None:
    tstore.put_pending(TASK, [(b"\x01" * 16, 60, b"r1")])
    # the same report id twice: the whole batch is refused
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
        tstore.put_pending(TASK, [(b"\x02" * 16, 60, b"r2"), (b"\x01" * 16, 60, b"again")])
    assert tstore.pending_reports(TASK, 0, 120) == [b"r1"]


def test_accumulate_totals_and_release(tstore: TelemetryStore) -> None:
    d1, d2 = _delta(b"a", 2, 1), _delta(b"b", 3, 2)
    assert tstore.accumulate(TASK, b"", {0: d1, 60: d2}, _concat, _unreleased) == set()
    assert tstore.accumulate(TASK, b"", {0: d2}, _concat, _unreleased) == set()
    assert tstore.accumulate(TASK, b"p", {0: d1}, _concat, _unreleased) == set()
    totals = tstore.totals(TASK, b"", [0, 60, 120])
    assert sorted(totals.agg_shares) == [b"ab", b"b"]
    assert totals.report_count == 8
    assert totals.checksum == xor_checksums(xor_checksums(d1.checksum, d2.checksum), d2.checksum)
    assert tstore.totals(TASK, b"p", [0]).report_count == 2

    batch = BatchInterval(0, 120)
    seen: list[tuple[dict[int, list[Release]], BatchTotals]] = []
    first = tstore.release(
        TASK,
        batch,
        b"",
        [0, 60],
        lambda r, t: seen.append((r, t)),
        lambda t: b"n=%d" % t.report_count,
    )
    assert first.fresh and first.response == b"n=8" and first.report_count == 8
    assert seen[0][0] == {0: [], 60: []}
    assert tstore.released(TASK, [0, 60, 120]) == {0: [(batch, b"")], 60: [(batch, b"")], 120: []}
    # a released bucket takes no more reports; others still do
    assert tstore.accumulate(TASK, b"", {0: d1, 120: d2}, _concat, _unreleased) == {0}
    assert tstore.totals(TASK, b"", [0]).report_count == 5

    def never(*_: object) -> None:
        raise AssertionError("a repeated release must not run the checks again")

    again = tstore.release(TASK, batch, b"", [0, 60], never, lambda t: b"other")
    assert not again.fresh and again.response == b"n=8" and again.report_count == 8
    assert tstore.response(TASK, batch, b"") == again
    assert tstore.response(TASK, batch, b"p") is None


def test_a_refused_release_changes_nothing(tstore: TelemetryStore) -> None:
    tstore.accumulate(TASK, b"", {0: _delta(b"a", 1, 1)}, _concat, _unreleased)

    def refuse(_r: object, _t: object) -> None:
        raise BatchTooSmall("1 report, need 10")

    with pytest.raises(BatchTooSmall):
        tstore.release(TASK, BatchInterval(0, 120), b"", [0, 60], refuse, lambda t: b"")
    assert tstore.released(TASK, [0, 60]) == {0: [], 60: []}
    assert tstore.response(TASK, BatchInterval(0, 120), b"") is None
    assert tstore.totals(TASK, b"", [0]).report_count == 1


def test_concurrent_releases_of_a_batch_draw_one_answer(location: str) -> None:
    stores = [open_telemetry_store(location) for _ in range(4)]
    stores[0].accumulate(TASK, b"", {0: _delta(b"a", 4, 1)}, _concat, _unreleased)
    answers: list[bytes] = []
    drawn: list[int] = []

    def respond(i: int) -> Callable[[BatchTotals], bytes]:
        def make(_t: BatchTotals) -> bytes:
            drawn.append(i)
            return b"noise from %d" % i

        return make

    def release(i: int) -> None:
        out = stores[i].release(TASK, BatchInterval(0, 60), b"", [0], lambda r, t: None, respond(i))
        answers.append(out.response)

    try:
        _in_threads(release, n=len(stores))
    finally:
        for st in stores:
            st.close()
    assert len(drawn) == 1
    assert answers == [b"noise from %d" % drawn[0]] * len(stores)


def test_concurrent_accumulates_add_up(location: str) -> None:
    stores = [open_telemetry_store(location) for _ in range(4)]

    def add(i: int) -> None:
        for _ in range(ROUNDS):
            stores[i].accumulate(TASK, b"", {0: _delta(b"x", 1, 0)}, _concat, _unreleased)

    try:
        _in_threads(add, n=len(stores))
        totals = stores[0].totals(TASK, b"", [0])
    finally:
        for st in stores:
            st.close()
    assert totals.report_count == len(stores) * ROUNDS
    assert totals.agg_shares == [b"x" * (len(stores) * ROUNDS)]


def test_the_aggregators_store_persists_across_reopening(location: str) -> None:
    first = open_telemetry_store(location)
    first.claim_report_ids(TASK, b"up", [b"\x01" * 16])
    first.accumulate(TASK, b"", {0: _delta(b"a", 2, 1)}, _concat, _unreleased)
    first.release(TASK, BatchInterval(0, 60), b"", [0], lambda r, t: None, lambda t: b"kept")
    first.close()
    again = open_telemetry_store(location)
    assert again.claim_report_ids(TASK, b"up", [b"\x01" * 16]) == [False]
    assert again.totals(TASK, b"", [0]).report_count == 2
    kept = again.response(TASK, BatchInterval(0, 60), b"")
    assert kept is not None and kept.response == b"kept"
    again.close()


# -- opening -------------------------------------------------------------------------------


@pytest.mark.parametrize("opener", [open_store, open_telemetry_store])
def test_an_unreachable_server_is_a_config_error_naming_the_store(
    opener: Callable[[str], object],
) -> None:
    with socket_closed_port() as port:
        dsn = f"postgresql://tessera:secret@127.0.0.1:{port}/db"
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}/db") as info:
            opener(dsn)
    assert "cannot connect to PostgreSQL" in str(info.value)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("opener", [open_store, open_telemetry_store])
def test_a_malformed_dsn_is_a_config_error(opener: Callable[[str], object]) -> None:
    with pytest.raises(ConfigError, match="not a valid DSN"):
        opener("postgresql://127.0.0.1/db?no_such_option=1")


class socket_closed_port:
    """A loopback port nothing listens on, for the duration of a ``with``."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port: int = self._sock.getsockname()[1]
        return port

    def __exit__(self, *_: object) -> None:
        self._sock.close()


# -- a lost server (PostgreSQL only) --------------------------------------------------------


def _terminate(dsn: str, *stores: object) -> None:
    """Cut the stores' connections, as a server restart does."""
    pids = [st._conn._db.info.backend_pid for st in stores]  # type: ignore[attr-defined]
    with psycopg.connect(dsn, autocommit=True) as db:
        for pid in pids:
            db.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))  # waits for it


def test_a_lost_server_fails_the_operation_and_the_next_one_reconnects(
    postgres_dsn: str,
) -> None:
    st = open_store(postgres_dsn)
    tst = open_telemetry_store(postgres_dsn)
    try:
        st.put("budget", "t", 1.0)
        tst.claim_report_ids(TASK, b"up", [b"\x01" * 16])
        _terminate(postgres_dsn, st, tst)
        lost = pytest.raises(TransportError, match="lost the PostgreSQL server")
        with lost, st.transaction() as tx:
            tx.put("budget", "t", 2.0)
        with pytest.raises(TransportError, match="lost the PostgreSQL server"):
            tst.claim_report_ids(TASK, b"up", [b"\x02" * 16])
        assert st.get("budget", "t") == 1.0  # reconnected; nothing half-written
        assert tst.claim_report_ids(TASK, b"up", [b"\x01" * 16, b"\x02" * 16]) == [False, True]
    finally:
        st.close()
        tst.close()
