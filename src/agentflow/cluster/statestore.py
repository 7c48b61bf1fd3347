"""state.db: the state machine's image with the applied index, in one transaction.

The image is written every so many applied entries and at shutdown, off the event loop; a
restart loads it and replays the log from the applied index on, so the log below the image can
be compacted.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
        self._conn = conn

    async def load(self) -> tuple[int, bytes] | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._load)

    def _load(self) -> tuple[int, bytes] | None:
        assert self._conn is not None
        row = self._conn.execute("SELECT applied_index, data FROM image WHERE id = 1").fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    async def save(self, applied_index: int, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._save, applied_index, data)

    def _save(self, applied_index: int, data: bytes) -> None:
        assert self._conn is not None
        self._conn.execute(
            "INSERT OR REPLACE INTO image (id, applied_index, data) VALUES (1, ?, ?)",
            (applied_index, data),
        )

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)
