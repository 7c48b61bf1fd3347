"""The history in SQL (design 20 §5) on real PostgreSQL and MariaDB: what applied entries
leave in the history tables, read back with plain SQL as a user's reporting tool would;
retention; the listing paged with a filter; a task read by id on a master that never applied
it; a new writer rewriting the tail harmlessly and writing what the old one had not; and a
database that went down mid-run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from agentflow.cluster.history import HistoryFilter
from agentflow.cluster.sql import LogStore, StoreUrl, migrations
from agentflow.cluster.sql.dialect import dialect_for
from agentflow.cluster.sql.history import DAY_MS, HistorySettings, SqlHistory
from agentflow.cluster.sql.historyrows import Item, table_rows
from agentflow.cluster.sql.historystore import HistoryStore
from agentflow.state import StateLimits, StateMachine, TaskStatus
from agentflow.state.commands import (
    AcquireLock,
    CancelTask,
    CancelWorkflow,
    Command,
    ConnectAgent,
    NewTask,
    RegisterWorker,
    ReleaseLock,
    ReportAttempts,
    SendMessage,
    SubmitTasks,
    SubmitWorkflow,
    TaskOutcome,
    decode_command,
    encode_command,
)
from agentflow.state.taskrows import pack_task
from agentflow.testing.sqlserve import MariaDbServer, PostgresServer
from tests.sql.conftest import WAIT_S

FAST = HistorySettings(tick_s=0.02, retry_s=0.05, prune_every_s=0.05)


def query(url: StoreUrl, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """What a user's reporting tool sees: plain SQL on a connection of its own."""
    conn = dialect_for(url).connect(url, 10.0)
    try:
        cur = conn.cursor()
        cur.execute(sql, params)
        rows = [tuple(r) for r in cur.fetchall()]
        conn.commit()
        return rows
    finally:
        conn.close()


class Feed:
    """A state machine applying commands by hand, its events feeding a SqlHistory (as the
    SQL log's sink does after each applied batch)."""

    def __init__(
        self,
        url: StoreUrl,
        *,
        bound: int = 1000,
        leads: bool = True,
        settings: HistorySettings = FAST,
        clock_ms: Callable[[], int] = lambda: DAY_MS,  # nothing is older than retention
    ) -> None:
        self.sm = StateMachine(limits=StateLimits(max_finished_tasks=bound, live_finished_tasks=1))
        self.index = 0
        self.leading = leads
        self.history = SqlHistory(
            self.sm,
            lambda: self.leading,
            HistoryStore(url),
            HistoryStore(url),
            settings=settings,
            clock_ms=clock_ms,
        )

    def __call__(self, command: Command) -> Any:
        self.index += 1
        result = self.sm.apply(self.index, decode_command(encode_command(command)))
        self.history.on_events(self.sm.drain_events())
        return result


@asynccontextmanager
async def running(feed: Feed) -> AsyncIterator[Feed]:
    task = asyncio.get_running_loop().create_task(feed.history.run())
    try:
        yield feed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await feed.history.aclose()


async def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT_S}s: {what}"
        await asyncio.sleep(0.02)


def migrated(url: StoreUrl) -> StoreUrl:
    store = LogStore(url)
    store.migrate("c1")
    store.close()
    return url


def new(tid: str, **kw: Any) -> NewTask:
    return NewTask(
        id=tid, title=f"title {tid}", description="", spec={"command": f"run {tid}"}, **kw
    )


def cancel_many(feed: Feed, ids: list[str], *, at_ms: int = 1000, **kw: Any) -> None:
    for tid in ids:
        feed(SubmitTasks(now_ms=at_ms, tasks=[new(tid, **kw)]))
        feed(CancelTask(now_ms=at_ms + 1, task_id=tid))


def a_day_of_work(feed: Feed) -> tuple[int, int, int]:
    """Two tasks run on a worker (one completes, one fails), a workflow cancelled, a lock
    taken and released, a message delivered; the two attempts' tokens and the lock's."""
    feed(RegisterWorker(now_ms=1000, worker_id="w1", group="gpu", slots=2, resources={},
                        labels={}, hostname="h1"))  # fmt: skip
    tasks = [new("t1", group="gpu"), new("t2", group="gpu", priority="high")]
    feed(SubmitTasks(now_ms=2000, tasks=tasks, place=True))
    tok1, tok2 = feed.sm.tasks["t1"].fencing_token, feed.sm.tasks["t2"].fencing_token
    assert tok1 is not None and tok2 is not None
    feed(ReportAttempts(now_ms=3000, worker_id="w1", started=[("t1", tok1), ("t2", tok2)]))
    outcomes = [
        TaskOutcome(task_id="t1", fencing_token=tok1, status="completed", exit_code=0),
        TaskOutcome(task_id="t2", fencing_token=tok2, status="failed", exit_code=3),
    ]
    feed(ReportAttempts(now_ms=4000, worker_id="w1", outcomes=outcomes))
    workflow = [new("wa", key="a"), new("wb", key="b")]
    feed(SubmitWorkflow(now_ms=5000, workflow_id="wf1", name="nightly",
                        failure_policy="continue", tasks=workflow))  # fmt: skip
    feed(CancelWorkflow(now_ms=6000, workflow_id="wf1"))
    granted = feed(AcquireLock(now_ms=7000, name="db", session="s1", ttl_ms=60_000))
    feed(ReleaseLock(now_ms=8000, name="db", session="s1", token=granted.token))
    feed(ConnectAgent(now_ms=9000, agent_id="bob", ttl_ms=60_000))
    feed(SendMessage(now_ms=9500, id="m1", sender="alice", to="bob", type="Notification",
                     content="hi", size=2))  # fmt: skip
    return tok1, tok2, granted.token


async def written(url: StoreUrl) -> tuple[int, int, int]:
    feed = Feed(migrated(url))
    tokens = a_day_of_work(feed)
    async with running(feed):
        await eventually(lambda: feed.history.backlog == 0, "the history written")
    return tokens


async def test_finished_tasks_and_attempts_land_in_their_tables(url: StoreUrl) -> None:
    tok1, tok2, _ = await written(url)
    tasks = query(url, "SELECT id, workflow_id, status, grp, priority, title, command,"
                  " created_ms, started_ms, finished_ms, exit_code, attempts, worker,"
                  " evicted_idx FROM agentflow_tasks ORDER BY id")  # fmt: skip
    assert tasks == [
        ("t1", None, "completed", "gpu", "medium", "title t1", "run t1", 2000, 3000, 4000, 0, 1,
         "w1", None),
        ("t2", None, "failed", "gpu", "high", "title t2", "run t2", 2000, 3000, 4000, 3, 1,
         "w1", None),
        ("wa", "wf1", "cancelled", "default", "medium", "title wa", "run wa", 5000, None, 6000,
         None, 0, None, None),
        ("wb", "wf1", "cancelled", "default", "medium", "title wb", "run wb", 5000, None, 6000,
         None, 0, None, None),
    ]  # fmt: skip
    columns = "task_id, attempt, token, worker_id, assigned_ms, started_ms, finished_ms, status"
    attempts = query(url, f"SELECT {columns}, exit_code FROM agentflow_attempts ORDER BY task_id")
    assert attempts == [
        ("t1", 1, tok1, "w1", 2000, 3000, 4000, "completed", 0),
        ("t2", 1, tok2, "w1", 2000, 3000, 4000, "failed", 3),
    ]
    # a report users run: failures by group since a time, on (status, finished_ms)
    failures = "SELECT grp, COUNT(*) FROM agentflow_tasks WHERE status = %s AND finished_ms >= %s"
    assert query(url, failures + " GROUP BY grp", ("failed", 0)) == [("gpu", 1)]


async def test_workflows_lock_and_message_events_land_in_their_tables(url: StoreUrl) -> None:
    *_, lock_token = await written(url)
    workflows = query(url, "SELECT id, name, status, created_ms, finished_ms, tasks,"
                      " tasks_finished FROM agentflow_workflows")  # fmt: skip
    assert workflows == [("wf1", "nightly", "cancelled", 5000, 6000, 2, 2)]
    locks = query(url, "SELECT name, lock_session, kind, token, at_ms FROM agentflow_lock_events"
                  " ORDER BY idx, pos")  # fmt: skip
    assert locks == [
        ("db", "s1", "granted", lock_token, 7000),
        ("db", "s1", "released", lock_token, 8000),
    ]
    messages = query(url, "SELECT agent_id, inbox_cursor, message_id, sender, msg_type,"
                     " size_bytes, at_ms FROM agentflow_message_events")  # fmt: skip
    assert messages == [("bob", 1, "m1", "alice", "Notification", 2, 9500)]


async def test_retention_deletes_old_rows_only_in_bounded_batches(url: StoreUrl) -> None:
    now_ms = 40 * DAY_MS
    settings = HistorySettings(
        retention_ms=30 * DAY_MS,
        tick_s=0.02,
        retry_s=0.05,
        prune_every_s=0.05,
        prune_batch=2,
        prune_batches=1,
    )
    feed = Feed(migrated(url), settings=settings, clock_ms=lambda: now_ms)
    old, recent = 5 * DAY_MS, 39 * DAY_MS
    cancel_many(feed, [f"old{i}" for i in range(5)], at_ms=old)
    cancel_many(feed, [f"new{i}" for i in range(3)], at_ms=recent)
    lock = feed(AcquireLock(now_ms=old, name="l-old", session="s", ttl_ms=60_000))
    feed(ReleaseLock(now_ms=old, name="l-old", session="s", token=lock.token))
    feed(AcquireLock(now_ms=recent, name="l-new", session="s", ttl_ms=60_000))

    def left() -> list[tuple[Any, ...]]:
        return query(url, "SELECT id FROM agentflow_tasks ORDER BY id")

    async with running(feed):
        await eventually(lambda: feed.history.backlog == 0, "the history written")
        await eventually(lambda: len(left()) == 3, "old tasks deleted, two per DELETE")
    assert left() == [("new0",), ("new1",), ("new2",)]
    assert query(url, "SELECT name FROM agentflow_lock_events") == [("l-new",)]


async def test_the_listing_pages_with_a_filter_the_last_evicted_first(url: StoreUrl) -> None:
    feed = Feed(migrated(url), bound=2)
    ids = [f"t{i:02}" for i in range(20)]
    for i, tid in enumerate(ids):
        cancel_many(feed, [tid], group="a" if i % 2 == 0 else "b")
    evicted_a = [t for i, t in enumerate(ids[:18]) if i % 2 == 0]  # the 2 newest stay in memory
    keep = HistoryFilter(group="a", statuses=frozenset({TaskStatus.CANCELLED}))
    async with running(feed):
        await eventually(lambda: feed.history.backlog == 0, "the history written")
        pages: list[list[str]] = []
        after: str | None = None
        while True:
            page = [t.id for t in await feed.history.find_page(keep, 4, after)]
            if not page:
                break
            pages.append(page)
            after = page[-1]
        assert pages == [evicted_a[::-1][0:4], evicted_a[::-1][4:8], evicted_a[::-1][8:]]
        assert await feed.history.holds("t00")
        assert not await feed.history.holds("t19")  # finished, still in memory
        assert not await feed.history.is_empty()
        none = HistoryFilter(group="a", statuses=frozenset({TaskStatus.COMPLETED}))
        assert await feed.history.find_page(none, 4, None) == []


async def test_the_listing_holds_evictions_the_writer_has_not_written_yet(url: StoreUrl) -> None:
    """Between leaving a master's memory and the writer's next batch, a task stays in the
    listing: the tables' page is merged with the evictions the master holds unwritten."""
    feed = Feed(migrated(url), bound=2)
    ids = [f"t{i:02}" for i in range(12)]
    cancel_many(feed, ids[:6], group="a")
    async with running(feed):
        await eventually(lambda: feed.history.backlog == 0, "the first six written")
        feed.leading = False  # the writer stops: what follows stays pending
        await eventually(lambda: not feed.history.leading, "the writer loop sees it")
        cancel_many(feed, ids[6:], group="a")
        assert feed.history.backlog > 0
        evicted = ids[:10][::-1]  # the 2 newest stay in memory
        keep = HistoryFilter(group="a")
        pages, after = [], None
        while page := [t.id for t in await feed.history.find_page(keep, 3, after)]:
            pages.append(page)
            after = page[-1]
        assert pages == [evicted[0:3], evicted[3:6], evicted[6:9], evicted[9:]]
        assert await feed.history.holds("t09") and await feed.history.holds("t00")
        assert not await feed.history.holds("t11")  # still in memory
        feed.leading = True
        await eventually(lambda: feed.history.backlog == 0, "the rest written")
        listed = [t.id for t in await feed.history.find_page(keep, 20, None)]
        assert listed == evicted  # once each, from the tables now


async def test_closing_the_writer_writes_what_its_loop_never_got_to(url: StoreUrl) -> None:
    """A master stopped within a tick of becoming the writer: its loop never saw the lease,
    but it is the writer when it closes (before its log), so what it holds is written."""
    feed = Feed(migrated(url), bound=1)
    cancel_many(feed, ["t1", "t2", "t3"])
    assert not feed.history.leading and feed.history.backlog > 0
    await feed.history.aclose()
    assert [r[0] for r in query(url, "SELECT id FROM agentflow_tasks ORDER BY id")] == [
        "t1", "t2", "t3"
    ]  # fmt: skip


async def test_an_evicted_task_is_read_on_a_master_that_never_applied_it(url: StoreUrl) -> None:
    writer = Feed(migrated(url), bound=1)
    cancel_many(writer, ["t1", "t2", "t3"])
    async with running(writer):
        await eventually(lambda: writer.history.backlog == 0, "the history written")
    # A new master starts from a snapshot taken after the evictions: it never saw t1 or t2.
    other = Feed(url, leads=False)
    other.sm.restore(writer.sm.snapshot())
    assert "t1" not in other.sm.tasks
    async with running(other):
        task = await other.history.find("t1")
        assert task is not None and task.status is TaskStatus.CANCELLED
        assert task.title == "title t1"
        assert await other.history.holds("t1")
        listed = await other.history.find_page(HistoryFilter(), 10, None)
        assert [t.id for t in listed] == ["t2", "t1"]
        assert await other.history.find("nope") is None


def dump(url: StoreUrl) -> dict[str, list[tuple[Any, ...]]]:
    tables = {
        "agentflow_tasks": "id",
        "agentflow_attempts": "task_id, attempt",
        "agentflow_workflows": "id",
        "agentflow_lock_events": "idx, pos",
        "agentflow_message_events": "idx, pos",
    }
    return {t: query(url, f"SELECT * FROM {t} ORDER BY {k}") for t, k in tables.items()}


def scenario(feed: Feed) -> None:
    cancel_many(feed, ["t1", "t2", "t3", "t4"])
    token = feed(AcquireLock(now_ms=50, name="l", session="s", ttl_ms=1000)).token
    feed(ReleaseLock(now_ms=60, name="l", session="s", token=token))
    feed(
        SubmitWorkflow(
            now_ms=70,
            workflow_id="wf",
            name="w",
            failure_policy="continue",
            tasks=[new("wa", key="a")],
        )
    )
    feed(CancelWorkflow(now_ms=80, workflow_id="wf"))


async def test_a_new_writer_rewrites_the_tail_harmlessly(url: StoreUrl) -> None:
    old = Feed(migrated(url), bound=2)
    scenario(old)
    async with running(old):
        await eventually(lambda: old.history.backlog == 0, "the history written")
    before = dump(url)
    assert len(before["agentflow_tasks"]) == 5 and before["agentflow_lock_events"]
    new_writer = Feed(url, bound=2)  # applies the whole log again and writes it all again
    scenario(new_writer)
    async with running(new_writer):
        await eventually(lambda: new_writer.history.backlog == 0, "the tail rewritten")
    assert dump(url) == before
    # A deposed writer's late batch (t1 as it was before it was evicted) changes nothing.
    stale = new_writer.sm  # any machine: only the row's bytes and its older index matter
    assert "t1" not in stale.tasks
    evicted_row = query(url, "SELECT packed_row, idx FROM agentflow_tasks WHERE id = 't1'")[0]
    store = HistoryStore(url)
    fresh = Feed(url, bound=2)
    fresh(SubmitTasks(now_ms=1, tasks=[new("t1")]))
    store.write(table_rows([Item(1, "task", ("t1", pack_task(fresh.sm.tasks["t1"])))]), 0)
    store.close()
    assert dump(url) == before
    assert evicted_row[1] > 1


async def test_a_follower_forgets_what_the_writer_wrote_and_a_new_writer_writes_the_rest(
    url: StoreUrl,
) -> None:
    writer, follower = Feed(migrated(url), bound=2), Feed(url, bound=2, leads=False)
    cancel_many(writer, ["t1", "t2"])
    cancel_many(follower, ["t1", "t2"])
    async with running(writer), running(follower):
        await eventually(lambda: writer.history.backlog == 0, "the writer wrote")
        await eventually(lambda: follower.history.backlog == 0, "the follower forgot it")
        writer.leading = False  # the writer is deposed (or dies) before writing what follows
        for feed in (writer, follower):
            cancel_many(feed, ["t3", "t4"])
        read = follower.history.marks_read
        await eventually(lambda: follower.history.marks_read > read + 1, "the mark read again")
        assert follower.history.backlog == 4  # t3 and t4 finished, t1 and t2 evicted: kept
        assert query(url, "SELECT id FROM agentflow_tasks WHERE id = 't4'") == []
        follower.leading = True  # takes the lease over
        await eventually(lambda: follower.history.backlog == 0, "the new writer wrote")
    assert query(url, "SELECT id, evicted_idx IS NOT NULL FROM agentflow_tasks ORDER BY id") == [
        ("t1", True),
        ("t2", True),
        ("t3", False),
        ("t4", False),
    ]


async def test_a_down_database_keeps_the_batch_and_writes_it_after_restart(
    server: PostgresServer | MariaDbServer, url: StoreUrl
) -> None:
    feed = Feed(migrated(url))
    async with running(feed):
        cancel_many(feed, ["before"])
        await eventually(lambda: feed.history.backlog == 0, "the first batch written")
        server.stop()
        try:
            failed = feed.history.failed_rounds
            cancel_many(feed, ["during1", "during2"])
            await eventually(lambda: feed.history.failed_rounds > failed + 1, "a failed write")
            assert feed.history.backlog > 0 and feed.history.dropped == 0
        finally:
            server.start()
        await eventually(lambda: feed.history.backlog == 0, "the kept batch written")
    rows = query(url, "SELECT id, status FROM agentflow_tasks ORDER BY id")
    assert rows == [("before", "cancelled"), ("during1", "cancelled"), ("during2", "cancelled")]


def test_a_store_made_by_a_master_before_the_history_is_upgraded(url: StoreUrl) -> None:
    conn = dialect_for(url).connect(url, 10.0)
    try:
        migrations.migrate(conn, dialect_for(url), "c1", latest=1)  # an older master's schema
    finally:
        conn.close()
    assert query(url, "SELECT MAX(version) FROM agentflow_schema") == [(1,)]
    migrated(url)
    assert query(url, "SELECT MAX(version) FROM agentflow_schema") == [(2,)]
    assert query(url, "SELECT applied_idx FROM agentflow_history_mark") == [(0,)]
    assert query(url, "SELECT COUNT(*) FROM agentflow_tasks") == [(0,)]
