"""The stores on a PostgreSQL server (psycopg 3): connections, serialised writes, the role store.

Each store keeps one connection, used by one thread at a time. A write
transaction first takes a transaction-scoped advisory lock named after the
store and the connection's schema, then runs at READ COMMITTED: writers of one
store are serialised (as SQLite's ``BEGIN IMMEDIATE`` does) across threads and
processes, and each statement after the lock sees every earlier writer's commit.
Several stores can share a database in separate schemas (``?options=-csearch_path%3Dname``).

A lost server fails the operation with a :class:`TransportError` (nothing half
written: the server rolls back the transaction) and the next operation reconnects.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import conninfo

from tessera.errors import ConfigError, TransportError
from tessera.node.store import Store, encode_value

#: Seconds to wait for the server before a store refuses to open.
CONNECT_TIMEOUT = 10

#: Advisory-lock classes, one per kind of store (the other key is the schema's hash).
ROLE_STORE_LOCK = 1
TELEMETRY_STORE_LOCK = 2


def redact(dsn: str) -> str:
    """``dsn`` with any password (``user:pw@`` or ``?password=``) replaced by ``***``."""
    parts = urlsplit(dsn)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    query = "&".join(
        "password=***" if item.split("=", 1)[0] == "password" else item
        for item in parts.query.split("&")
    )
    return urlunsplit(parts._replace(query=query))


def check_dsn(dsn: str, where: str) -> dict[str, Any]:
    """The DSN's parameters; a malformed one is a :class:`ConfigError` naming ``where``."""
    try:
        return conninfo.conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        raise ConfigError(f"{where}: store {redact(dsn)} is not a valid DSN: {exc}") from exc


def connect(dsn: str, what: str) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection; a bad DSN or an unreachable server is a :class:`ConfigError`."""
    check_dsn(dsn, what)
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise ConfigError(f"{what} {redact(dsn)}: cannot connect to PostgreSQL: {reason}") from exc


@contextmanager
def write_transaction(db: psycopg.Connection[tuple[Any, ...]], lock: int) -> Iterator[None]:
    """A transaction holding the store's write lock; rolled back if the block raises."""
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (lock,))
        yield


def setup(db: psycopg.Connection[tuple[Any, ...]], lock: int, schema: str, what: str) -> None:
    """Create the tables under the write lock (concurrent first starts do not race)."""
    try:
        with write_transaction(db, lock):
            for statement in filter(str.strip, schema.split(";")):
                db.execute(statement)
    except psycopg.Error as exc:
        db.close()
        raise ConfigError(f"{what}: cannot set up its tables: {exc}") from exc


class Connection:
    """A store's one connection: reopened after the server was lost, errors converted."""

    def __init__(self, dsn: str, what: str, lock: int, schema: str) -> None:
        self.dsn, self.what, self.lock, self.schema = dsn, what, lock, schema
        self._db = self._open()

    def _open(self) -> psycopg.Connection[tuple[Any, ...]]:
        db = connect(self.dsn, self.what)
        setup(db, self.lock, self.schema, f"{self.what} {redact(self.dsn)}")
        return db

    @contextmanager
    def use(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """The connection (reopened if it broke); a lost server is a TransportError."""
        if self._db.broken:
            try:
                self._db = self._open()
            except ConfigError as exc:
                raise TransportError(f"{exc} (the server was lost)") from exc
        try:
            yield self._db
        except psycopg.OperationalError as exc:
            if not self._db.broken:
                raise  # the server is there, and refused this statement
            raise TransportError(
                f"{self.what} {redact(self.dsn)}: lost the PostgreSQL server: {exc}"
            ) from exc

    @contextmanager
    def write(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A serialised write transaction (see the module docstring)."""
        with self.use() as db, write_transaction(db, self.lock):
            yield db

    def close(self) -> None:
        self._db.close()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (kind, key)
)
"""


class PostgresStore(Store):
    """The role store in a PostgreSQL database (same table as :class:`SqliteStore`)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn = Connection(dsn, "store", ROLE_STORE_LOCK, _SCHEMA)
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        with self._lock, self._conn.write():
            yield self

    def get(self, kind: str, key: str) -> Any:
        with self._lock, self._conn.use() as db:
            row = db.execute(
                "SELECT value FROM items WHERE kind = %s AND key = %s", (kind, key)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, kind: str, key: str, value: Any) -> None:
        text = encode_value(value)
        # a write outside a transaction takes the lock too, as SQLite's does: it is
        # ordered before or after another's read-modify-write, never in between
        with self._lock, self._conn.write() as db:
            db.execute(
                "INSERT INTO items (kind, key, value) VALUES (%s, %s, %s)"
                " ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
                (kind, key, text),
            )

    def items(self, kind: str) -> dict[str, Any]:
        with self._lock, self._conn.use() as db:
            rows = db.execute("SELECT key, value FROM items WHERE kind = %s", (kind,))
            return {k: json.loads(v) for k, v in rows.fetchall()}

    def close(self) -> None:
        with self._lock:
            self._conn.close()
