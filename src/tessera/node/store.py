"""A role's own durable state: JSON values by (kind, key), in SQLite or PostgreSQL.

:class:`Store` is the interface the roles use. :class:`SqliteStore` (one file,
the default) and :class:`~tessera.node.store_postgres.PostgresStore` (a server)
implement it with the same semantics, checked by one contract test
(``tests/store/test_store_contract.py``):

- a write is a transaction: a crash leaves a value either as it was or as it was
  written;
- everything written inside :meth:`Store.transaction` commits together or not at
  all, and is rolled back if the block raises;
- transactions are serialised, across threads and across processes, so a
  read-modify-write inside one never loses another's write.

:func:`open_store` picks the implementation from a role's ``store`` setting.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from tessera.errors import ConfigError

#: The schemes of a ``store`` setting that names a PostgreSQL server.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_dsn(location: Path | str) -> bool:
    """Whether a ``store`` setting is a PostgreSQL DSN rather than an SQLite path."""
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


class Store(ABC):
    """JSON values by ``(kind, key)``; see the module docstring for the guarantees."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Store]:
        """Everything written inside commits together or not at all."""

    @abstractmethod
    def get(self, kind: str, key: str) -> Any:
        """The value at ``(kind, key)``, or ``None``."""

    @abstractmethod
    def put(self, kind: str, key: str, value: Any) -> None:
        """Set ``(kind, key)`` to ``value`` (JSON; NaN and infinities refused)."""

    @abstractmethod
    def items(self, kind: str) -> dict[str, Any]:
        """Every key of ``kind`` with its value."""

    @abstractmethod
    def close(self) -> None: ...


def encode_value(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False)


class SqliteStore(Store):
    """One SQLite file (or ``":memory:"``), WAL journal, created private to its owner."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS items ("
                " kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
                " PRIMARY KEY (kind, key))"
            )
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"store {self.path}: {exc}") from exc
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def get(self, kind: str, key: str) -> Any:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM items WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, kind: str, key: str, value: Any) -> None:
        text = encode_value(value)
        with self._lock:
            self._db.execute(
                "INSERT INTO items (kind, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
                (kind, key, text),
            )

    def items(self, kind: str) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM items WHERE kind = ?", (kind,))
            return {k: json.loads(v) for k, v in rows.fetchall()}

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_store(location: Path | str) -> Store:
    """The store a ``store`` setting names: a ``postgresql://`` DSN, else an SQLite path.

    An unreadable file, a malformed DSN or an unreachable server is a
    :class:`ConfigError` naming the store.
    """
    if is_dsn(location):
        from tessera.node.store_postgres import PostgresStore

        return PostgresStore(str(location))
    return SqliteStore(location)
