"""state.db: the state machine's image with the applied index, in one transaction.

The image is written every so many applied entries and at shutdown, off the event loop; a
restart loads it and replays the log from the applied index on, so the log below the image can
be compacted.

The lock table of the same image is also written out as indexed tables (``locks``,
``lock_grants``, ``lock_waiters``, ``lock_events``) in that transaction, so an operator can ask
``sqlite3 state.db "SELECT * FROM lock_grants WHERE session = ..."`` of a stopped master. They
show the state at ``image.applied_index``; the image, not these tables, is what a restart loads.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agentflow.cluster.sqlite import open_sqlite

__all__ = ["StateStore"]


class StateStore:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-db")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open)

    def _open(self) -> None:
        conn = open_sqlite(self._path)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS image"
            " (id INTEGER PRIMARY KEY CHECK (id = 1), applied_index INTEGER, data BLOB)"
        )
        conn.executescript(_LOCK_SCHEMA)
        self._conn = conn

    async def load(self) -> tuple[int, bytes] | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._load)

    def _load(self) -> tuple[int, bytes] | None:
        assert self._conn is not None
        row = self._conn.execute("SELECT applied_index, data FROM image WHERE id = 1").fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    async def save(
        self, applied_index: int, data: bytes, locks: dict[str, Any] | None = None
    ) -> None:
        """Write the image; ``locks`` (the image's ``LockTable.snapshot()``) fills the lock
        tables in the same transaction (none: they are emptied)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._save, applied_index, data, locks)

    def _save(self, applied_index: int, data: bytes, locks: dict[str, Any] | None) -> None:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT OR REPLACE INTO image (id, applied_index, data) VALUES (1, ?, ?)",
                (applied_index, data),
            )
            _write_locks(conn, locks or {})
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)


_LOCK_SCHEMA = """
CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, lim INTEGER, delay_until_ms INTEGER);
CREATE TABLE IF NOT EXISTS lock_grants (
    name TEXT, session TEXT, token INTEGER, mode TEXT, expiry_ms INTEGER, ttl_ms INTEGER,
    owner TEXT, metadata TEXT, PRIMARY KEY (name, session));
CREATE INDEX IF NOT EXISTS lock_grants_by_session ON lock_grants (session);
CREATE INDEX IF NOT EXISTS lock_grants_by_expiry ON lock_grants (expiry_ms);
CREATE TABLE IF NOT EXISTS lock_waiters (
    name TEXT, position INTEGER, session TEXT, mode TEXT, since_ms INTEGER,
    deadline_ms INTEGER, owner TEXT, PRIMARY KEY (name, position));
CREATE INDEX IF NOT EXISTS lock_waiters_by_session ON lock_waiters (session);
CREATE TABLE IF NOT EXISTS lock_events (
    seq INTEGER PRIMARY KEY, log_index INTEGER, kind TEXT, name TEXT, session TEXT,
    token INTEGER, detail TEXT);
CREATE INDEX IF NOT EXISTS lock_events_by_name ON lock_events (name, seq);
"""


def _write_locks(conn: sqlite3.Connection, locks: dict[str, Any]) -> None:
    for table in ("locks", "lock_grants", "lock_waiters", "lock_events"):
        conn.execute(f"DELETE FROM {table}")
    for lock in locks.get("locks", []):
        conn.execute(
            "INSERT INTO locks VALUES (?, ?, ?)",
            (lock["name"], lock["limit"], lock["delay_until_ms"]),
        )
        conn.executemany(
            "INSERT INTO lock_grants VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    g["name"],
                    g["session"],
                    g["token"],
                    g["mode"],
                    g["expiry_ms"],
                    g["ttl_ms"],
                    g["owner"],
                    json.dumps(g["metadata"]),
                )
                for g in lock["holders"]
            ],
        )
        conn.executemany(
            "INSERT INTO lock_waiters VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (w["name"], i, w["session"], w["mode"], w["since_ms"], w["deadline_ms"], w["owner"])
                for i, w in enumerate(lock["waiters"])
            ],
        )
    conn.executemany(
        "INSERT INTO lock_events (log_index, kind, name, session, token, detail)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (e["index"], e["kind"], e["name"], e["session"], e["token"], e["detail"])
            for e in locks.get("history", [])
        ],
    )
