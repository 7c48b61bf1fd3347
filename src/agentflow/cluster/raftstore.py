"""raft.db: the Raft log, hard state and cluster identity, in SQLite on a thread of its own.

One Ready is one transaction (hard state and entries together), so one fsync covers every
entry of the batch, and nothing that depends on it is sent or acknowledged before the commit
returns. A Ready that only moves the commit index is not written on its own
(:mod:`agentflow.cluster.hardstate`): it rides along with the next durable write, or with
close(), saving a hop to the store's thread per commit. The state image that doubles as the
Raft snapshot lives in state.db (:mod:`agentflow.cluster.statestore`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgpack

from agentflow.cluster.diskthread import DiskThread
from agentflow.cluster.hardstate import CommitDeferral
from agentflow.cluster.sqlite import open_sqlite
from agentflow.histograms import Histogram
from agentflow.raft import Entry, EntryType, HardState

__all__ = ["RaftStore"]

_TYPES = {EntryType.NORMAL: 0, EntryType.CONF_CHANGE: 1}
_TYPES_BACK = {v: k for k, v in _TYPES.items()}


class RaftStore:
    def __init__(self, path: Path, fsync: Histogram | None = None) -> None:
        self._path = path
        self._fsync = fsync  # each write's seconds, observed on the disk thread
        self._thread = DiskThread("raft-db")
        self._conn: sqlite3.Connection | None = None
        self._deferral = CommitDeferral()  # a commit index alone waits for the next write

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await self._thread.run(fn, *args)

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        conn = open_sqlite(self._path)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL,"
            " type INTEGER NOT NULL, data BLOB NOT NULL)"
        )
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB)")
        self._conn = conn

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "RaftStore.open() first"
        return self._conn

    async def load(self, after: int) -> tuple[HardState | None, list[Entry]]:
        """The hard state, and the entries after index ``after`` (the snapshot's)."""
        result: tuple[HardState | None, list[Entry]] = await self._run(self._load, after)
        return result

    def _load(self, after: int) -> tuple[HardState | None, list[Entry]]:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'hard_state'").fetchone()
        hard = None
        if row is not None:
            term, vote, commit = msgpack.unpackb(row[0])
            hard = HardState(term=term, vote=vote, commit=commit)
        self._queued = hard
        rows = self.conn.execute(
            "SELECT idx, term, type, data FROM entries WHERE idx > ? ORDER BY idx", (after,)
        )
        entries = [
            Entry(index=i, term=t, type=_TYPES_BACK[k], data=bytes(d)) for i, t, k, d in rows
        ]
        return hard, entries

    async def save(
        self, hard: HardState | None, entries: Sequence[Entry], *, sync: bool = False
    ) -> None:
        """Durably write a Ready's hard state and entries (truncating a conflicting suffix).

        ``sync``: the Ready's ``sync_commit`` (see :mod:`agentflow.cluster.hardstate`).
        """
        write, hard = self._deferral.plan(hard, other=bool(entries), sync=sync)
        if write:
            await self._run(self._save, hard, entries)

    def _save(self, hard: HardState | None, entries: Sequence[Entry]) -> None:
        started = time.perf_counter()
        self._write(self.conn, hard, entries)
        if self._fsync is not None:
            self._fsync.observe(time.perf_counter() - started)

    def _write(
        self, conn: sqlite3.Connection, hard: HardState | None, entries: Sequence[Entry]
    ) -> None:
        conn.execute("BEGIN")
        try:
            if entries:
                conn.execute("DELETE FROM entries WHERE idx >= ?", (entries[0].index,))
                conn.executemany(
                    "INSERT INTO entries (idx, term, type, data) VALUES (?, ?, ?, ?)",
                    [(e.index, e.term, _TYPES[e.type], e.data) for e in entries],
                )
            if hard is not None:
                packed = msgpack.packb([hard.term, hard.vote, hard.commit])
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('hard_state', ?)", (packed,)
                )
            conn.execute("COMMIT")
        except BaseException:
            # SQLite ends the transaction itself on some errors (SQLITE_FULL): a ROLLBACK then
            # fails and would hide the error that matters ("database or disk is full").
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def compact(self, upto: int) -> None:
        await self._run(self._compact, upto)

    def _compact(self, upto: int) -> None:
        self.conn.execute("DELETE FROM entries WHERE idx <= ?", (upto,))

    async def reset_after_snapshot(self, index: int) -> None:
        """A snapshot from the leader replaces the log: drop every entry up to its index."""
        await self._run(self._compact, index)

    async def get_meta(self, key: str) -> Any:
        return await self._run(self._get_meta, key)

    def _get_meta(self, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else msgpack.unpackb(row[0], raw=False)

    async def set_meta(self, key: str, value: Any) -> None:
        await self._run(self._set_meta, key, value)

    def _set_meta(self, key: str, value: Any) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            (key, msgpack.packb(value, use_bin_type=True)),
        )

    async def close(self) -> None:
        if self._conn is not None:
            hard = self._deferral.take_unwritten()
            if hard is not None:  # the last commit index, kept for the next write
                await self._run(self._save, hard, ())
            conn, self._conn = self._conn, None
            await self._run(conn.close)
        self._thread.shutdown()
