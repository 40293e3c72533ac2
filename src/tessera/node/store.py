"""A role's own durable state: one SQLite file, JSON values by (kind, key).

Writes are transactions (a crash leaves a value either as it was or as it was
written), the journal is WAL, and the file is created private to its owner.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tessera.errors import ConfigError


class Store:
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
        """Everything written inside commits together or not at all."""
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
        text = json.dumps(value, sort_keys=True, allow_nan=False)
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
