"""An aggregator's store: claimed report ids, per-bucket aggregates, releases.

:class:`TelemetryStore` holds the logic; :class:`SqliteTelemetryStore` (the
default) and :class:`~tessera.node.telemetry.store_postgres.PostgresTelemetryStore`
give it a database. Every method that writes runs in one serialised write
transaction (SQLite's ``BEGIN IMMEDIATE``, or PostgreSQL's advisory lock), so a
failure leaves nothing half-written and the replay and release checks are atomic
across threads and processes. Aggregate shares are opaque encoded bytes; the
caller passes the VDAF's merge function.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tessera.errors import ConfigError
from tessera.node.store import is_dsn
from tessera.protocol.telemetry.collection import ZERO_CHECKSUM, Release, xor_checksums
from tessera.protocol.telemetry.messages import BatchInterval

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS report_ids (
    task_id BLOB NOT NULL, scope BLOB NOT NULL, report_id BLOB NOT NULL,
    PRIMARY KEY (task_id, scope, report_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending_reports (
    task_id BLOB NOT NULL, report_id BLOB NOT NULL, time INTEGER NOT NULL,
    report BLOB NOT NULL,
    PRIMARY KEY (task_id, report_id)
);
CREATE INDEX IF NOT EXISTS pending_by_time ON pending_reports (task_id, time);
CREATE TABLE IF NOT EXISTS batch_aggregates (
    task_id BLOB NOT NULL, agg_param BLOB NOT NULL, bucket INTEGER NOT NULL,
    agg_share BLOB NOT NULL, report_count INTEGER NOT NULL, checksum BLOB NOT NULL,
    PRIMARY KEY (task_id, agg_param, bucket)
);
CREATE TABLE IF NOT EXISTS releases (
    task_id BLOB NOT NULL, bucket INTEGER NOT NULL, seq INTEGER NOT NULL,
    agg_param BLOB NOT NULL, batch_start INTEGER NOT NULL, batch_duration INTEGER NOT NULL,
    PRIMARY KEY (task_id, bucket, seq)
);
CREATE TABLE IF NOT EXISTS responses (
    task_id BLOB NOT NULL, batch_start INTEGER NOT NULL, batch_duration INTEGER NOT NULL,
    agg_param BLOB NOT NULL, report_count INTEGER NOT NULL, checksum BLOB NOT NULL,
    response BLOB NOT NULL,
    PRIMARY KEY (task_id, batch_start, batch_duration, agg_param)
);
"""


@dataclass(frozen=True)
class BucketDelta:
    """What one aggregation job adds to one time bucket."""

    agg_share: bytes
    report_count: int
    checksum: bytes


@dataclass(frozen=True)
class Released:
    """A batch's release as stored: the answer given, and the count and checksum it had."""

    fresh: bool
    response: bytes
    report_count: int
    checksum: bytes


@dataclass(frozen=True)
class BatchTotals:
    """The stored aggregate of a set of buckets, before merging the shares."""

    agg_shares: list[bytes]
    report_count: int
    checksum: bytes


class Cursor(Protocol):
    """What a statement returns (``sqlite3.Cursor``, ``psycopg.Cursor``)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Sql(Protocol):
    """A connection the shared SQL runs on; parameters are written ``?``."""

    def execute(self, sql: str, params: Sequence[Any], /) -> Cursor: ...

    def executemany(self, sql: str, params: Sequence[Sequence[Any]], /) -> object: ...


class TelemetryStore(ABC):
    """One aggregator's durable state; a subclass gives it a database."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Sql]:
        """A write transaction, serialised with every other writer of this store."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Sql]:
        """A consistent view for reading several rows."""

    # -- report ids -------------------------------------------------------------------

    def claim_report_ids(self, task_id: bytes, scope: bytes, ids: Sequence[bytes]) -> list[bool]:
        """Claim each id for ``scope``; ``False`` where it was claimed before (a replay)."""
        out: list[bool] = []
        with self._tx() as db:
            for rid in ids:
                cur = db.execute(
                    "INSERT INTO report_ids VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    (task_id, scope, rid),
                )
                out.append(cur.rowcount == 1)
        return out

    def unclaim_report_ids(self, task_id: bytes, scope: bytes, ids: Sequence[bytes]) -> None:
        """Release ids whose reports were not aggregated after all (the job failed)."""
        with self._tx() as db:
            db.executemany(
                "DELETE FROM report_ids WHERE task_id = ? AND scope = ? AND report_id = ?",
                [(task_id, scope, rid) for rid in ids],
            )

    # -- pending reports (aggregated when the collector names an aggregation parameter) --

    def put_pending(self, task_id: bytes, rows: Sequence[tuple[bytes, int, bytes]]) -> None:
        """Keep ``(report_id, time, encoded report)`` rows until collection."""
        with self._tx() as db:
            db.executemany(
                "INSERT INTO pending_reports VALUES (?, ?, ?, ?)",
                [(task_id, rid, t, blob) for rid, t, blob in rows],
            )

    def pending_reports(self, task_id: bytes, start: int, end: int) -> list[bytes]:
        """Encoded reports with ``start <= time < end``, in report-id order."""
        with self._read() as db:
            cur = db.execute(
                "SELECT report FROM pending_reports WHERE task_id = ? AND time >= ? AND time < ?"
                " ORDER BY report_id",
                (task_id, start, end),
            )
            return [bytes(r[0]) for r in cur.fetchall()]

    # -- aggregates ---------------------------------------------------------------------

    def released(self, task_id: bytes, buckets: Sequence[int]) -> dict[int, list[Release]]:
        """Releases so far (batch and aggregation parameter), per bucket (empty if none)."""
        with self._read() as db:
            return self._released(db, task_id, buckets)

    @staticmethod
    def _released(db: Sql, task_id: bytes, buckets: Sequence[int]) -> dict[int, list[Release]]:
        out: dict[int, list[Release]] = {b: [] for b in buckets}
        for b in buckets:
            cur = db.execute(
                "SELECT agg_param, batch_start, batch_duration FROM releases"
                " WHERE task_id = ? AND bucket = ? ORDER BY seq",
                (task_id, b),
            )
            out[b] = [(BatchInterval(int(r[1]), int(r[2])), bytes(r[0])) for r in cur.fetchall()]
        return out

    def accumulate(
        self,
        task_id: bytes,
        agg_param: bytes,
        deltas: Mapping[int, BucketDelta],
        merge: Callable[[bytes, bytes], bytes],
        allows: Callable[[list[Release]], bool],
    ) -> set[int]:
        """Add each bucket's delta unless ``allows(earlier releases)`` refuses the bucket.

        Returns the refused buckets.
        """
        refused: set[int] = set()
        with self._tx() as db:
            released = self._released(db, task_id, list(deltas))
            for bucket, delta in deltas.items():
                if not allows(released[bucket]):
                    refused.add(bucket)
                    continue
                row = db.execute(
                    "SELECT agg_share, report_count, checksum FROM batch_aggregates"
                    " WHERE task_id = ? AND agg_param = ? AND bucket = ?",
                    (task_id, agg_param, bucket),
                ).fetchone()
                if row is None:
                    share, count, checksum = delta.agg_share, delta.report_count, delta.checksum
                else:
                    share = merge(bytes(row[0]), delta.agg_share)
                    count = int(row[1]) + delta.report_count
                    checksum = xor_checksums(bytes(row[2]), delta.checksum)
                db.execute(
                    "INSERT INTO batch_aggregates VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (task_id, agg_param, bucket) DO UPDATE SET"
                    " agg_share = excluded.agg_share, report_count = excluded.report_count,"
                    " checksum = excluded.checksum",
                    (task_id, agg_param, bucket, share, count, checksum),
                )
        return refused

    def totals(self, task_id: bytes, agg_param: bytes, buckets: Sequence[int]) -> BatchTotals:
        """The stored shares, report count and checksum over ``buckets``."""
        shares: list[bytes] = []
        count = 0
        checksum = ZERO_CHECKSUM
        with self._read() as db:
            for b in buckets:
                row = db.execute(
                    "SELECT agg_share, report_count, checksum FROM batch_aggregates"
                    " WHERE task_id = ? AND agg_param = ? AND bucket = ?",
                    (task_id, agg_param, b),
                ).fetchone()
                if row is not None:
                    shares.append(bytes(row[0]))
                    count += int(row[1])
                    checksum = xor_checksums(checksum, bytes(row[2]))
        return BatchTotals(shares, count, checksum)

    def response(
        self, task_id: bytes, interval: BatchInterval, agg_param: bytes
    ) -> Released | None:
        """The kept answer of a batch already released under ``agg_param``, if any."""
        with self._read() as db:
            row = db.execute(
                "SELECT report_count, checksum, response FROM responses WHERE task_id = ?"
                " AND batch_start = ? AND batch_duration = ? AND agg_param = ?",
                (task_id, interval.start, interval.duration, agg_param),
            ).fetchone()
        if row is None:
            return None
        return Released(False, bytes(row[2]), int(row[0]), bytes(row[1]))

    def release(
        self,
        task_id: bytes,
        interval: BatchInterval,
        agg_param: bytes,
        buckets: Sequence[int],
        check: Callable[[dict[int, list[Release]], BatchTotals], None],
        respond: Callable[[BatchTotals], bytes],
    ) -> Released:
        """Release a batch once, atomically; a repeated request gets the stored answer.

        The first time, ``check`` runs the batch rules on the earlier releases and the
        totals (it raises to refuse), ``respond`` makes the answer (noise drawn once),
        and the buckets are marked released with the answer kept. Afterwards the kept
        answer comes back unchanged (``fresh`` false), with the count and checksum it
        was made from, so a lost response can be retried without a second release.
        """
        key = (task_id, interval.start, interval.duration, agg_param)
        with self._tx() as db:
            row = db.execute(
                "SELECT report_count, checksum, response FROM responses WHERE task_id = ?"
                " AND batch_start = ? AND batch_duration = ? AND agg_param = ?",
                key,
            ).fetchone()
            if row is not None:
                return Released(False, bytes(row[2]), int(row[0]), bytes(row[1]))
            released = self._released(db, task_id, buckets)
            # Read the totals inside the same transaction: nothing can slip in between.
            shares: list[bytes] = []
            count = 0
            checksum = ZERO_CHECKSUM
            for b in buckets:
                agg = db.execute(
                    "SELECT agg_share, report_count, checksum FROM batch_aggregates"
                    " WHERE task_id = ? AND agg_param = ? AND bucket = ?",
                    (task_id, agg_param, b),
                ).fetchone()
                if agg is not None:
                    shares.append(bytes(agg[0]))
                    count += int(agg[1])
                    checksum = xor_checksums(checksum, bytes(agg[2]))
            totals = BatchTotals(shares, count, checksum)
            check(released, totals)
            response = respond(totals)
            for b in buckets:
                db.execute(
                    "INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?)",
                    (task_id, b, len(released[b]), agg_param, interval.start, interval.duration),
                )
            db.execute(
                "INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*key, count, checksum, response),
            )
        return Released(True, response, count, checksum)


class SqliteTelemetryStore(TelemetryStore):
    """The store in one SQLite file (``":memory:"`` for tests)."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SQLITE_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(f"cannot open telemetry store {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[Sql]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[Sql]:
        with self._lock:
            yield self._db


def open_telemetry_store(location: Path | str) -> TelemetryStore:
    """The store an aggregator's ``store`` setting names: a ``postgresql://`` DSN or a path."""
    if is_dsn(location):
        from tessera.node.telemetry.store_postgres import PostgresTelemetryStore

        return PostgresTelemetryStore(str(location))
    return SqliteTelemetryStore(location)
