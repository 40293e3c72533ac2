"""An aggregator's store on a PostgreSQL server (the same tables and SQL as SQLite's)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from tessera.node.store_postgres import TELEMETRY_STORE_LOCK, Connection
from tessera.node.telemetry.store import Cursor, Sql, TelemetryStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS report_ids (
    task_id BYTEA NOT NULL, scope BYTEA NOT NULL, report_id BYTEA NOT NULL,
    PRIMARY KEY (task_id, scope, report_id)
);
CREATE TABLE IF NOT EXISTS pending_reports (
    task_id BYTEA NOT NULL, report_id BYTEA NOT NULL, time BIGINT NOT NULL,
    report BYTEA NOT NULL,
    PRIMARY KEY (task_id, report_id)
);
CREATE INDEX IF NOT EXISTS pending_by_time ON pending_reports (task_id, time);
CREATE TABLE IF NOT EXISTS batch_aggregates (
    task_id BYTEA NOT NULL, agg_param BYTEA NOT NULL, bucket BIGINT NOT NULL,
    agg_share BYTEA NOT NULL, report_count BIGINT NOT NULL, checksum BYTEA NOT NULL,
    PRIMARY KEY (task_id, agg_param, bucket)
);
CREATE TABLE IF NOT EXISTS releases (
    task_id BYTEA NOT NULL, bucket BIGINT NOT NULL, seq BIGINT NOT NULL,
    agg_param BYTEA NOT NULL, batch_start BIGINT NOT NULL, batch_duration BIGINT NOT NULL,
    PRIMARY KEY (task_id, bucket, seq)
);
CREATE TABLE IF NOT EXISTS responses (
    task_id BYTEA NOT NULL, batch_start BIGINT NOT NULL, batch_duration BIGINT NOT NULL,
    agg_param BYTEA NOT NULL, report_count BIGINT NOT NULL, checksum BYTEA NOT NULL,
    response BYTEA NOT NULL,
    PRIMARY KEY (task_id, batch_start, batch_duration, agg_param)
)
"""


class _Postgres:
    """The shared SQL's ``?`` parameters as psycopg's ``%s``."""

    def __init__(self, db: psycopg.Connection[tuple[Any, ...]]) -> None:
        self._db = db

    def execute(self, sql: str, params: Sequence[Any], /) -> Cursor:
        return self._db.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]], /) -> object:
        with self._db.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), params)
        return None


class PostgresTelemetryStore(TelemetryStore):
    """The store in a PostgreSQL database (one per aggregator, or one schema each)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn = Connection(dsn, "telemetry store", TELEMETRY_STORE_LOCK, _SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[Sql]:
        with self._lock, self._conn.write() as db:
            yield _Postgres(db)

    @contextmanager
    def _read(self) -> Iterator[Sql]:
        # one snapshot for every row read, whatever other processes commit meanwhile
        with self._lock, self._conn.use() as db, db.transaction():
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield _Postgres(db)
