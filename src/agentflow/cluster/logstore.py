"""The durable log: SQLite in WAL mode with synchronous=FULL, one transaction per batch.

All calls run on one dedicated thread (SQLite connections are not shared across threads and
must never block the event loop). ``append`` writes a whole batch in one transaction, so one
fsync covers every entry in it: that is the group commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["LogStore", "StoredEntry", "open_sqlite"]

StoredEntry = tuple[int, int, bytes]  # (index, term, data)
T = TypeVar("T")


def open_sqlite(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class LogStore:
    """Log entries and a small key/value of hard state, on their own thread."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raft-db")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        conn = open_sqlite(self._path)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS entries"
            " (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, data BLOB NOT NULL)"
        )
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB)")
        self._conn = conn

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "LogStore.open() first"
        return self._conn

    async def append(self, entries: Sequence[StoredEntry]) -> None:
        """Durably write entries (replacing any at the same indexes) in one transaction."""
        await self._run(self._append, entries)

    def _append(self, entries: Sequence[StoredEntry]) -> None:
        conn = self.conn
        conn.execute("BEGIN")
        try:
            if entries:
                conn.execute("DELETE FROM entries WHERE idx >= ?", (entries[0][0],))
            conn.executemany("INSERT INTO entries (idx, term, data) VALUES (?, ?, ?)", entries)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def read(self, lo: int, hi: int | None = None) -> list[StoredEntry]:
        """Entries with ``lo <= index < hi`` (to the end when ``hi`` is None), in order."""
        result: list[StoredEntry] = await self._run(self._read, lo, hi)
        return result

    def _read(self, lo: int, hi: int | None) -> list[StoredEntry]:
        top = hi if hi is not None else 2**62
        rows: Iterable[StoredEntry] = self.conn.execute(
            "SELECT idx, term, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
            (lo, top),
        )
        return list(rows)

    async def last_index(self) -> int:
        result: int = await self._run(self._last_index)
        return result

    def _last_index(self) -> int:
        row = self.conn.execute("SELECT MAX(idx) FROM entries").fetchone()
        return int(row[0] or 0)

    async def compact(self, upto: int) -> None:
        """Drop entries with index <= ``upto`` (already captured by a snapshot)."""
        await self._run(self._compact, upto)

    def _compact(self, upto: int) -> None:
        self.conn.execute("DELETE FROM entries WHERE idx <= ?", (upto,))

    async def set_meta(self, key: str, value: bytes) -> None:
        await self._run(self._set_meta, key, value)

    def _set_meta(self, key: str, value: bytes) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    async def get_meta(self, key: str) -> bytes | None:
        result: bytes | None = await self._run(self._get_meta, key)
        return result

    def _get_meta(self, key: str) -> bytes | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)
