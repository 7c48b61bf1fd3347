"""One connection to the history tables: write a batch, prune old rows, read tasks back.

A :class:`~agentflow.cluster.sql.store.LogStore` (the same connect, reconnect and error
mapping: the database not answering is StoreUnavailable) with the history's operations. Like
it, synchronous: the history calls it on a thread of its own, one for writing and another
connection on another thread for reading, never on the event loop.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from agentflow.cluster.sql.historyrows import TableRows
from agentflow.cluster.sql.historysql import HistorySql
from agentflow.cluster.sql.store import LogStore
from agentflow.cluster.sql.url import StoreUrl

__all__ = ["HistoryStore", "PageQuery", "PageRow"]

PageQuery = tuple[int, tuple[str, ...], str | None, str | None, str | tuple[int, str] | None, int]
"""(applied, statuses, group, priority, after, limit): one page of the listing; ``after`` is a
task id of the history, or the (evicted index, id) the page goes on below."""

PageRow = tuple[int, str, bytes]
"""(evicted index, task id, packed row): one task of the listing."""


class HistoryStore(LogStore):
    """The history's statements over one connection (see the module's docstring)."""

    def __init__(self, url: StoreUrl, *, timeout_s: float = 5.0) -> None:
        super().__init__(url, timeout_s=timeout_s)
        self.hsql = HistorySql.of(url.dialect)

    def write(self, rows: TableRows, mark: int) -> None:
        """Upsert ``rows`` and raise the written mark to ``mark``, in one transaction."""
        sql = self.hsql

        def work(cur: Any) -> None:
            for statement, batch in (
                (sql.upsert_task, rows.tasks),
                (sql.upsert_attempt, rows.attempts),
                (sql.upsert_workflow, rows.workflows),
                (sql.insert_lock_event, rows.locks),
                (sql.insert_message_event, rows.messages),
            ):
                if batch:
                    cur.executemany(statement, batch)
            if mark > 0:
                cur.execute(sql.raise_mark, (mark,))

        self._tx(work)

    def mark(self) -> int:
        """Every event of an entry at or below this index is written."""

        def work(cur: Any) -> int:
            cur.execute(self.hsql.read_mark)
            row = cur.fetchone()
            return 0 if row is None else int(row[0])

        return self._tx(work)

    def prune(self, cutoff_ms: int, batch: int, batches: int) -> tuple[int, bool]:
        """Delete rows older than ``cutoff_ms``, at most ``batch`` a transaction and
        ``batches`` transactions a table; (rows deleted, whether some may remain)."""
        deleted, more = 0, False
        for _table, statement in self.hsql.prune:
            for _ in range(batches):
                gone = self._tx(
                    functools.partial(_rowcount, statement=statement, params=(cutoff_ms, batch))
                )
                deleted += gone
                if gone < batch:
                    break
            else:
                more = True
        return deleted, more

    # -- reads --------------------------------------------------------------------------------

    def task_row(self, task_id: str) -> bytes | None:
        def work(cur: Any) -> bytes | None:
            cur.execute(self.hsql.task_row, (task_id,))
            row = cur.fetchone()
            return None if row is None else bytes(row[0])

        return self._tx(work)

    def evicted_at(self, task_id: str, applied: int) -> int | None:
        """Where ``task_id`` was evicted, if it was by ``applied``."""

        def work(cur: Any) -> int | None:
            cur.execute(self.hsql.evicted_at, (task_id, applied))
            row = cur.fetchone()
            return None if row is None else int(row[0])

        return self._tx(work)

    def any_evicted(self, applied: int) -> bool:
        def work(cur: Any) -> bool:
            cur.execute(self.hsql.any_evicted, (applied,))
            return cur.fetchone() is not None

        return self._tx(work)

    def page(self, query: PageQuery) -> tuple[tuple[int, str] | None, list[PageRow]] | None:
        """Where the page starts (below ``after``'s place, None for the top) and its rows, the
        last evicted first; None when ``after`` is no longer an evicted task (retention deleted
        it)."""
        applied, statuses, group, priority, after, limit = query

        def work(cur: Any) -> tuple[tuple[int, str] | None, list[PageRow]] | None:
            below = after if isinstance(after, tuple) else None
            if isinstance(after, str):
                cur.execute(self.hsql.evicted_at, (after, applied))
                row = cur.fetchone()
                if row is None:
                    return None
                below = (int(row[0]), after)
            args: list[Any] = [applied]
            if below is not None:
                args += [below[0], below[0], below[1]]
            args += statuses
            args += [v for v in (group, priority) if v is not None]
            text = self.hsql.page(
                len(statuses), group is not None, priority is not None, below is not None
            )
            cur.execute(text, [*args, limit])
            return below, [(int(r[1]), str(r[2]), bytes(r[0])) for r in cur.fetchall()]

        return self._tx(work)


def _rowcount(cur: Any, *, statement: str, params: Sequence[Any]) -> int:
    cur.execute(statement, params)
    return max(0, int(cur.rowcount))
