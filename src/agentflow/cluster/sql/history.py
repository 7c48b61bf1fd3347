"""The masters' shared task history in the SQL store (design 20 §5).

:class:`SqlHistory` is the SQL store's counterpart of :class:`agentflow.cluster.history.
TaskHistory`: the same sink, writer loop and reads, over the history tables of
:mod:`agentflow.cluster.sql.historysql` instead of a master's own SQLite file, so that any
master of the store reads every task evicted from memory, and users report on finished tasks,
attempts, workflows, lock and message events with their own tools.

- **Fed on every master.** The log's event sink turns each applied batch's events into items
  (:func:`~agentflow.cluster.sql.historyrows.collect`, no I/O) and queues them.
- **Written by the writer alone**, on a thread and a connection of its own, in batches of one
  transaction each that also raise the written mark (``agentflow_history_mark``). A batch the
  database did not take stays queued and is tried again. The other masters keep what they
  applied until the mark passes it, and drop it then; so a master that takes the lease over
  writes what its predecessor had not, and rewrites some rows it had, harmlessly (upserts keyed
  by id, never replacing a row by an older state).
- **Retention**: the writer deletes rows older than ``retention_ms`` in bounded batches.
- **Reads** run on another thread and connection, awaited by the API: a task by id, and the
  listing of the tasks this master no longer holds (evicted at or below its applied index),
  the last evicted first.

A master killed before writing loses nothing the others applied: they hold it until the mark
passes it. What is lost is what only the writer held when it died and that no other master
applied before a snapshot covered it (a single master killed with a batch unwritten, then
restarted from a snapshot taken after those entries).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from agentflow.cluster.diskthread import DiskThread
from agentflow.cluster.history import HistoryFilter, HistoryStats
from agentflow.cluster.sql.historyrows import Item, collect, table_rows
from agentflow.cluster.sql.historystore import HistoryStore, PageQuery, PageRow
from agentflow.errors import AgentFlowError, StoreUnavailable, ValidationError
from agentflow.state import StateMachine
from agentflow.state.events import Event
from agentflow.state.records import TaskRecord
from agentflow.state.taskrows import unpack_task

__all__ = ["HistorySettings", "SqlHistory"]

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
_DROP_AFTER_FAILURES = 3  # a batch the database refuses (not: did not answer) this often


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class HistorySettings:
    retention_ms: int = 30 * DAY_MS  # rows older than this are deleted
    tick_s: float = 1.0  # a follower reads the mark, a writer looks at retention, this often
    retry_s: float = 1.0  # after the database did not answer
    max_batch: int = 2000  # items in one transaction
    max_pending: int = 200_000  # items kept unwritten at most; beyond, the oldest are dropped
    prune_every_s: float = 60.0
    prune_batch: int = 1000  # rows one DELETE removes at most
    prune_batches: int = 10  # DELETEs per table in one round


class SqlHistory:
    """Finished tasks, attempts, workflows, lock and message events in the SQL store."""

    def __init__(
        self,
        machine: StateMachine,
        leads: Callable[[], bool],
        writer: HistoryStore,
        reader: HistoryStore,
        *,
        settings: HistorySettings | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.settings = settings or HistorySettings()
        self._machine = machine
        self._leads = leads  # is this master the store's writer now?
        self._wstore, self._rstore = writer, reader
        self._clock_ms = clock_ms
        self._wthread = DiskThread("history-writer")
        self._rthread = DiskThread("history-reader")
        self._pending: deque[Item] = deque()  # applied, not yet known to be written
        self._evicted: dict[str, bytes] = {}  # rows of pending evictions, read by id
        self._wake = asyncio.Event()
        self._failures = 0  # consecutive refusals of the first batch
        self._next_prune = 0.0
        self._next_trim = 0.0
        self._trouble: str | None = None
        self.leading = False  # as last seen by the writer loop
        self.written = 0  # items written by this master (tests, metrics)
        self.dropped = 0  # items dropped unwritten (the pending bound, a refused batch)
        self.failed_rounds = 0  # rounds the database did not answer (the items were kept)
        self.marks_read = 0  # times a follower read the written mark (tests)
        self._closed = False

    @property
    def backlog(self) -> int:
        """Items applied here and not yet known to be written (by this master or the writer)."""
        return len(self._pending)

    def stats(self) -> HistoryStats:
        return HistoryStats(
            backlog=len(self._pending),
            written=self.written,
            dropped=self.dropped,
            failed_rounds=self.failed_rounds,
        )

    # -- fed by the log: no I/O here ---------------------------------------------------------

    def on_events(self, events: list[Event]) -> None:
        items = collect(events, self._machine)
        if not items:
            return
        for item in items:
            if item.kind == "evicted":
                self._evicted[item.data[0]] = item.data[1]
        self._pending.extend(items)
        over = len(self._pending) - self.settings.max_pending
        if over > 0:
            if not self.dropped:
                log.warning("the history is %d items behind; dropping the oldest", over)
            self._drop(over, written=False)
        self._wake.set()  # a master that just became the writer writes at once, not a tick on

    # -- writing, off the loop ---------------------------------------------------------------

    async def run(self) -> None:
        """Write (the writer) or forget what the writer wrote (the others), until cancelled."""
        while True:
            try:
                await self._round()
                self._trouble = None
            except StoreUnavailable as exc:
                self.failed_rounds += 1
                if str(exc) != self._trouble:
                    log.warning("the history could not be written: %s; kept for later", exc)
                self._trouble = str(exc)
                await asyncio.sleep(self.settings.retry_s)
                continue
            await self._nap(self.settings.tick_s)

    async def _round(self) -> None:
        now = time.monotonic()
        self.leading = self._leads()
        if not self.leading:
            if now >= self._next_trim:
                self._next_trim = now + self.settings.tick_s
                self._forget(await self._wthread.run(self._wstore.mark))
                self.marks_read += 1
            return
        while self._pending and self._leads():
            await self._flush_once()
        if now >= self._next_prune:
            await self._prune()

    async def _flush_once(self) -> None:
        count = min(len(self._pending), self.settings.max_batch)
        batch = list(itertools.islice(self._pending, count))
        whole = count == len(self._pending)  # then every applied entry's events are in it
        mark = self._machine.applied_index if whole else self._pending[count].index - 1
        try:
            await self._wthread.run(self._write, batch, mark)
        except AgentFlowError:
            raise
        except Exception:
            self._failures += 1
            if self._failures < _DROP_AFTER_FAILURES:
                raise StoreUnavailable("the database refused a history batch") from None
            log.exception("the database refused a history batch of %d items: dropped", count)
            self._drop(count, written=False)
            self._failures = 0
            return
        self._failures = 0
        self._drop(count, written=True)

    def _write(self, batch: list[Item], mark: int) -> None:
        self._wstore.write(table_rows(batch), mark)

    async def _prune(self) -> None:
        cutoff = self._clock_ms() - self.settings.retention_ms
        s = self.settings
        deleted, more = await self._wthread.run(
            self._wstore.prune, cutoff, s.prune_batch, s.prune_batches
        )
        if deleted:
            log.info("history retention deleted %d rows older than %d ms", deleted, cutoff)
        self._next_prune = time.monotonic() + (s.tick_s if more else s.prune_every_s)

    def _forget(self, mark: int) -> None:
        """Drop what the writer has written (every item at or below ``mark``)."""
        count = 0
        for item in self._pending:
            if item.index > mark:
                break
            count += 1
        if count:
            self._drop(count, written=False, counted=False)

    def _drop(self, count: int, *, written: bool, counted: bool = True) -> None:
        for _ in range(count):
            item = self._pending.popleft()
            if item.kind == "evicted" and self._evicted.get(item.data[0]) is item.data[1]:
                del self._evicted[item.data[0]]
        if written:
            self.written += count
        elif counted:
            self.dropped += count

    async def _nap(self, seconds: float) -> None:
        """Sleep ``seconds``, or until the writer has items to write."""
        if self.leading and self._pending:
            return
        # asyncio.timeout, not wait_for: on 3.11 wait_for returns normally when a cancel lands
        # as the event is set, and the cancelled loop went on (a test's shutdown hung).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()

    async def aclose(self) -> None:
        """Write what is pending if this master is (or its loop last saw it as) the writer,
        then close both connections. Called before the log closes, while the lease holds."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._pending and (self.leading or self._leads()):
                while self._pending:
                    await self._flush_once()
        except AgentFlowError as exc:
            log.warning("closing the history: %d items unwritten: %s", len(self._pending), exc)
        loop = asyncio.get_running_loop()
        for thread, store in ((self._wthread, self._wstore), (self._rthread, self._rstore)):
            await loop.run_in_executor(None, thread.shutdown)
            store.close()

    # -- reads (awaited; the queries run on the reader's thread) ------------------------------

    async def find(self, task_id: str) -> TaskRecord | None:
        """The finished task ``task_id`` as the history holds it, or None."""
        row = self._evicted.get(task_id)
        if row is None:
            row = await self._rthread.run(self._rstore.task_row, task_id)
        return None if row is None else unpack_task(row)

    async def holds(self, task_id: str) -> bool:
        """Is ``task_id`` in this master's listing of the history (evicted from its memory)?"""
        if task_id in self._evicted:
            return True
        applied = self._machine.applied_index
        return await self._rthread.run(self._rstore.evicted_at, task_id, applied) is not None

    async def is_empty(self) -> bool:
        """No task this master let go of is in the history."""
        if self._evicted:
            return False
        applied = self._machine.applied_index
        return not await self._rthread.run(self._rstore.any_evicted, applied)

    async def find_page(
        self, keep: HistoryFilter, limit: int, after: str | None
    ) -> list[TaskRecord]:
        """Up to ``limit`` tasks kept by ``keep``, the last evicted first; with ``after`` (a
        task the history holds), those evicted before it.

        The tables' page is merged with the evictions this master applied and the writer has
        not written yet (or not yet as far as this master knows), so that a task leaving
        memory never drops out of the listing meanwhile."""
        mine = self._pending_evictions()
        place = next(((i, t) for i, t, _ in mine if t == after), None)
        statuses = tuple(sorted(s.value for s in keep.statuses))
        query: PageQuery = (
            self._machine.applied_index,
            statuses,
            keep.group,
            keep.priority,
            place or after,
            limit,
        )
        found = await self._rthread.run(self._rstore.page, query)
        if found is None:
            raise ValidationError(f"unknown cursor {after!r} (no longer in the history)")
        below, rows = found
        picked = _newest_kept(mine, keep, limit, below)
        seen = {task_id for _, task_id, _ in picked}
        merged = picked + [r for r in rows if r[1] not in seen]
        merged.sort(key=lambda r: (r[0], r[1]), reverse=True)
        return [unpack_task(row) for _, _, row in merged[:limit]]

    def _pending_evictions(self) -> list[PageRow]:
        """The evictions not known to be written, the last evicted first."""
        if not self._evicted:
            return []
        rows = [
            (item.index, item.data[0], item.data[1])
            for item in self._pending
            if item.kind == "evicted"
        ]
        rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
        return rows


def _newest_kept(
    rows: list[PageRow], keep: HistoryFilter, limit: int, below: tuple[int, str] | None
) -> list[PageRow]:
    """The first ``limit`` of ``rows`` (the last evicted first) below ``below`` that ``keep``
    keeps."""
    picked: list[PageRow] = []
    for index, task_id, row in rows:
        if below is not None and (index, task_id) >= below:
            continue
        if len(picked) == limit:
            break
        if keep.keeps(unpack_task(row)):
            picked.append((index, task_id, row))
    return picked
