"""A master's task history on disk: finished tasks the state machine evicted, in SQLite.

The state machine keeps at most ``max_finished_tasks`` finished tasks; beyond that it drops the
oldest, each with a :class:`TaskEvicted` event carrying its packed row. This store, fed by those
events (:meth:`TaskHistory.on_events`, a sink of the Raft driver), keeps the rows in
``history.db`` in the master's data directory, indexed by task id and by the order they were
evicted (``seq``, which is their finish order), so that a task read by id or listed with
``history=true`` still answers after it left memory.

Writing never runs on the driver's path: the sink only appends the rows to ``pending`` (read
from there until written), and :meth:`run` writes everything pending in one transaction on its
own thread. The database is in WAL mode with ``synchronous=NORMAL``: a write survives the
master's process being killed, though not a power loss, and no write waits for an fsync. An
eviction not yet written when the process dies is evicted again when the entry is applied again
after the restart, unless a snapshot taken in between already covers that entry (a window of the
few milliseconds a batch takes, against a snapshot that takes longer to image and save).

What a master's history holds: the tasks it evicted while applying the log itself. On restart
it applies again the entries after its snapshot, and their evictions already written are not
written twice (rows are written whole per applied batch, so every eviction at or below the
highest index on disk is there). A master that installs a snapshot from its leader (a new
member, a follower far behind) skips the entries that snapshot covers, and so lacks the tasks
evicted in them; they are in the history of the masters that applied those entries.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agentflow.cluster.sqlite import open_sqlite
from agentflow.state.events import Event, TaskEvicted
from agentflow.state.records import TaskRecord, TaskStatus
from agentflow.state.tasktable import unpack_task

__all__ = ["HISTORY_FILE", "History", "HistoryFilter", "HistoryStats", "TaskHistory"]

log = logging.getLogger(__name__)

HISTORY_FILE = "history.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY,      -- eviction order, which is finish order
    id TEXT NOT NULL UNIQUE,      -- the task id
    idx INTEGER NOT NULL,         -- log index of the entry that evicted it
    status TEXT NOT NULL,
    grp TEXT NOT NULL,
    priority TEXT NOT NULL,
    row BLOB NOT NULL             -- the task's packed row (agentflow.state.tasktable)
)
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryFilter:
    """What a history listing keeps (all when empty)."""

    statuses: frozenset[TaskStatus] = frozenset()
    group: str | None = None
    priority: str | None = None

    def keeps(self, task: TaskRecord) -> bool:
        return (
            (not self.statuses or task.status in self.statuses)
            and (self.group is None or task.group == self.group)
            and (self.priority is None or task.priority.value == self.priority)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryStats:
    """How a master's history writer is doing, for its metrics."""

    backlog: int  # items applied here and not yet known to be written
    written: int  # items this master wrote since it started
    dropped: int  # items dropped unwritten (a bound on the backlog, a refused batch)
    failed_rounds: int  # write rounds that failed (the items were kept and tried again)


class History(Protocol):
    """What a master's service needs of a task history: this module's :class:`TaskHistory`
    (SQLite, the embedded Raft log's) or a SQL store's
    (:class:`agentflow.cluster.sql.history.SqlHistory`). Reads are awaited: a database's may
    not run on the event loop."""

    def on_events(self, events: list[Event]) -> None: ...
    async def run(self) -> None: ...
    async def aclose(self) -> None: ...
    def stats(self) -> HistoryStats: ...
    async def find(self, task_id: str) -> TaskRecord | None: ...
    async def holds(self, task_id: str) -> bool: ...
    async def is_empty(self) -> bool: ...
    async def find_page(
        self, keep: HistoryFilter, limit: int, after: str | None
    ) -> list[TaskRecord]: ...


@dataclass(frozen=True, slots=True)
class _Evicted:
    seq: int
    task_id: str
    index: int
    row: bytes


class TaskHistory:
    """Evicted tasks by id and in eviction order: in memory until written, then on disk."""

    def __init__(self, path: Path, *, keep: int = 10_000_000) -> None:
        self._keep = keep  # rows on disk at most: the oldest are deleted past it
        self._writer = open_sqlite(path)
        self._writer.execute("PRAGMA synchronous=NORMAL")  # WAL: kill -9 safe, no fsync wait
        self._writer.execute(_SCHEMA)
        self._reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        top = self._writer.execute("SELECT MAX(seq), MAX(idx) FROM history").fetchone()
        self._seq: int = top[0] or 0
        self._written_index: int = top[1] or 0  # every eviction up to here is on disk
        self._pending: dict[str, _Evicted] = {}  # evicted, not yet written (oldest first)
        self._wake = asyncio.Event()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="history")
        self.written = 0  # rows written since start (for tests and metrics)
        self.failed_rounds = 0
        self._closed = False

    # -- fed by the driver: no I/O here ------------------------------------------------------

    def on_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, TaskEvicted) and event.index > self._written_index:
                self._seq += 1
                self._pending[event.task_id] = _Evicted(
                    self._seq, event.task_id, event.index, event.row
                )
                self._wake.set()

    # -- writing, off the driver ---------------------------------------------------------------

    async def run(self) -> None:
        """Write what is pending, batch after batch, until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch = list(self._pending.values())
            try:
                await loop.run_in_executor(self._thread, self._write, batch)
            except sqlite3.Error:
                self.failed_rounds += 1
                log.exception("writing %d tasks to the history failed; kept for later", len(batch))
                continue
            self._written(batch)

    def close(self) -> None:
        """Write what is still pending, then close (after the driver stopped). A batch the
        cancelled writer left on its thread finishes first (rows written twice are ignored)."""
        if self._closed:
            return
        self._closed = True
        self._thread.shutdown(wait=True)
        batch = list(self._pending.values())
        try:
            if batch:
                self._write(batch)
                self._written(batch)
        except sqlite3.Error:
            log.exception("writing %d tasks to the history failed at shutdown", len(batch))
        finally:
            self._writer.close()
            self._reader.close()

    def _write(self, batch: list[_Evicted]) -> None:
        if not batch:
            return
        rows = []
        for item in batch:
            task = unpack_task(item.row)
            columns = (task.status.value, task.group, task.priority.value)
            rows.append((item.seq, item.task_id, item.index, *columns, item.row))
        self._writer.execute("BEGIN")
        try:
            self._writer.executemany(
                "INSERT OR IGNORE INTO history VALUES (?, ?, ?, ?, ?, ?, ?)", rows
            )
            self._writer.execute(
                "DELETE FROM history WHERE seq <= ?", (batch[-1].seq - self._keep,)
            )
            self._writer.execute("COMMIT")
        except BaseException:
            if self._writer.in_transaction:  # SQLite may have ended it itself (disk full)
                self._writer.execute("ROLLBACK")
            raise

    def _written(self, batch: list[_Evicted]) -> None:
        for item in batch:
            if self._pending.get(item.task_id) is item:
                del self._pending[item.task_id]
        self.written += len(batch)

    def stats(self) -> HistoryStats:
        return HistoryStats(
            backlog=len(self._pending),
            written=self.written,
            dropped=0,  # nothing is: an eviction stays pending until it is written
            failed_rounds=self.failed_rounds,
        )

    # -- reads (the event loop's thread) -------------------------------------------------------

    # The History protocol's awaitable reads: this file's queries are quick enough to run on
    # the loop, as they always did.
    async def find(self, task_id: str) -> TaskRecord | None:
        return self.get(task_id)

    async def holds(self, task_id: str) -> bool:
        return task_id in self

    async def is_empty(self) -> bool:
        return self.empty

    async def find_page(
        self, keep: HistoryFilter, limit: int, after: str | None
    ) -> list[TaskRecord]:
        return list(self.page(keep, limit, after))

    async def aclose(self) -> None:
        self.close()

    def get(self, task_id: str) -> TaskRecord | None:
        """The evicted task ``task_id``, or None if this master's history lacks it."""
        pending = self._pending.get(task_id)
        if pending is not None:
            return unpack_task(pending.row)
        found = self._reader.execute("SELECT row FROM history WHERE id = ?", (task_id,)).fetchone()
        return None if found is None else unpack_task(found[0])

    @property
    def empty(self) -> bool:
        """Nothing was ever evicted on this master."""
        return self._seq == 0

    def __contains__(self, task_id: object) -> bool:
        if task_id in self._pending:
            return True
        query = "SELECT 1 FROM history WHERE id = ?"
        return self._reader.execute(query, (task_id,)).fetchone() is not None

    def page(self, keep: HistoryFilter, limit: int, after: str | None) -> Iterator[TaskRecord]:
        """Up to ``limit`` tasks kept by ``keep``, the last evicted first; with ``after`` (a
        task id of this history), those evicted before it."""
        below = self._seq_of(after) if after is not None else self._seq + 1
        count = 0
        for item in reversed(self._pending.values()):
            if count == limit:
                return
            if item.seq < below:
                task = unpack_task(item.row)
                if keep.keeps(task):
                    count += 1
                    yield task
        yield from self._stored(keep, limit - count, below)

    def _stored(self, keep: HistoryFilter, limit: int, below: int) -> Iterator[TaskRecord]:
        if limit <= 0:
            return
        where: list[str] = ["seq < ?"]
        args: list[object] = [below]
        if keep.statuses:
            where.append(f"status IN ({', '.join('?' * len(keep.statuses))})")
            args.extend(sorted(s.value for s in keep.statuses))
        if keep.group is not None:
            where.append("grp = ?")
            args.append(keep.group)
        if keep.priority is not None:
            where.append("priority = ?")
            args.append(keep.priority)
        query = f"SELECT row FROM history WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?"
        for (row,) in self._reader.execute(query, [*args, limit]).fetchall():
            yield unpack_task(row)

    def _seq_of(self, task_id: str) -> int:
        pending = self._pending.get(task_id)
        if pending is not None:
            return pending.seq
        found = self._reader.execute("SELECT seq FROM history WHERE id = ?", (task_id,)).fetchone()
        if found is None:
            raise KeyError(task_id)
        seq: int = found[0]
        return seq
