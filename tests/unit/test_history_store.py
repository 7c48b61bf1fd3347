"""A master's history on disk (agentflow.cluster.history): evicted rows readable at once, then
written in batches off the caller, paged the last evicted first, kept across a reopen."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from agentflow.cluster.history import HISTORY_FILE, HistoryFilter, HistoryStats, TaskHistory
from agentflow.state import StateLimits, StateMachine, TaskStatus
from agentflow.state.commands import CancelTask, NewTask, SubmitTasks
from agentflow.state.events import Event


def evictions(count: int) -> list[Event]:
    """The events of ``count`` tasks finished (cancelled) with a bound of 1: all but the last
    are evicted; odd ones are in group ``odd``."""
    sm = StateMachine(limits=StateLimits(max_finished_tasks=1))
    index = 0
    for i in range(count):
        group = "odd" if i % 2 else "default"
        task = NewTask(id=f"t{i}", title="", description="", spec={"command": "true"}, group=group)
        index += 1
        sm.apply(index, SubmitTasks(now_ms=index, tasks=[task]))
        index += 1
        sm.apply(index, CancelTask(now_ms=index, task_id=f"t{i}"))
    return sm.drain_events()


async def wait_written(history: TaskHistory, count: int) -> None:
    async with asyncio.timeout(10):
        while history.written < count:
            await asyncio.sleep(0.01)


def ids(history: TaskHistory, keep: HistoryFilter, limit: int, after: str | None) -> list[str]:
    return [t.id for t in history.page(keep, limit, after)]


async def test_rows_read_before_and_after_written_and_after_reopen(tmp_path: Path) -> None:
    history = TaskHistory(tmp_path / HISTORY_FILE)
    history.on_events(evictions(6))  # t0..t4 evicted
    everything = HistoryFilter()
    assert history.stats() == HistoryStats(backlog=5, written=0, dropped=0, failed_rounds=0)
    pending = history.get("t2")
    assert pending is not None and pending.status is TaskStatus.CANCELLED
    assert ids(history, everything, 10, None) == ["t4", "t3", "t2", "t1", "t0"]
    writer = asyncio.create_task(history.run())
    await wait_written(history, 5)
    assert history.stats() == HistoryStats(backlog=0, written=5, dropped=0, failed_rounds=0)
    assert ids(history, everything, 2, None) == ["t4", "t3"]
    assert ids(history, everything, 2, "t3") == ["t2", "t1"]
    assert ids(history, HistoryFilter(group="odd"), 10, None) == ["t3", "t1"]
    cancelled = HistoryFilter(statuses=frozenset({TaskStatus.CANCELLED}))
    assert ids(history, cancelled, 10, "t1") == ["t0"]
    assert ids(history, HistoryFilter(statuses=frozenset({TaskStatus.FAILED})), 10, None) == []
    assert history.get("t5") is None and "t5" not in history
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
    history.close()

    again = TaskHistory(tmp_path / HISTORY_FILE)
    again.on_events(evictions(6))  # the same entries applied again after a restart: not twice
    assert ids(again, everything, 10, None) == ["t4", "t3", "t2", "t1", "t0"]
    task = again.get("t0")
    assert task is not None and task.group == "default"
    again.close()


async def test_beyond_its_bound_the_oldest_rows_are_deleted_from_disk(tmp_path: Path) -> None:
    history = TaskHistory(tmp_path / HISTORY_FILE, keep=3)
    history.on_events(evictions(6))  # t0..t4 evicted
    writer = asyncio.create_task(history.run())
    await wait_written(history, 5)
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
    assert ids(history, HistoryFilter(), 10, None) == ["t4", "t3", "t2"]
    assert history.get("t1") is None and history.get("t2") is not None
    history.close()
