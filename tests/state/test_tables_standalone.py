"""The task, workflow and worker tables work on their own, without a state machine, as the
lock and message tables do: each records its events into the list it was given."""

from __future__ import annotations

import pytest

from agentflow.errors import NotFoundError
from agentflow.state.commands import NewTask, RegisterWorker
from agentflow.state.events import Event, TaskChanged, WorkerChanged, WorkflowChanged
from agentflow.state.records import TaskStatus, WorkerState, WorkflowRecord
from agentflow.state.tasks import new_record
from agentflow.state.tasktable import TaskTable
from agentflow.state.workertable import WorkerTable
from agentflow.state.workflowtable import WorkflowTable


def _task(task_id: str, key: str | None = None, priority: str = "medium") -> NewTask:
    return NewTask(
        id=task_id,
        title=task_id,
        description="",
        spec={"command": "true"},
        priority=priority,
        idempotency_key=key,
    )


def test_task_table_queues_backs_off_finishes_and_evicts() -> None:
    events: list[Event] = []
    table = TaskTable(recent=1, events=events)
    for n, new in enumerate([_task("a", "k"), _task("b", priority="urgent"), _task("c")]):
        task = new_record(new, now_ms=n)
        table.add(task, keyed=True)
        table.enqueue(task, now_ms=n)
    assert table.existing("k") == "a" and table.existing("other") is None
    assert list(table.ready.ordered("default")) == ["b", "a", "c"]
    table.unqueue(table["c"])
    table.delay(table["c"], not_before_ms=50)
    assert table.next_due_ms() == 50
    assert table.release_due(now_ms=49) == 0 and table.release_due(now_ms=50) == 1
    assert list(table.ready.ordered("default")) == ["b", "a", "c"]
    for task_id in ("a", "b"):
        table.unqueue(table[task_id])
        assert table.set_status(table[task_id], TaskStatus.COMPLETED, index=9) is False
    assert [e.task_id for e in events if isinstance(e, TaskChanged)] == ["a", "b"]
    assert table.status_counts[TaskStatus.COMPLETED] == 2
    table.compact()
    assert table.frozen == 1  # "a": only the newest finished one stays a record
    evicted = list(table.evict(keep=1, still_read=lambda _: False))
    assert [task_id for task_id, _ in evicted] == ["a"]
    assert "a" not in table and table.existing("k") is None
    assert table.status_counts[TaskStatus.COMPLETED] == 1
    assert table.totals["submitted"] == 3


def test_workflow_table_counts_open_tasks_and_settles_in_order() -> None:
    events: list[Event] = []
    table = WorkflowTable(events)
    wf = WorkflowRecord(
        id="wf",
        name="n",
        failure_policy="continue",
        task_ids=["x", "y"],
        created_at=0,
        idempotency_key="wk",
    )
    table.add(wf, tasks=2)
    x, y = (new_record(_task(t), now_ms=0) for t in ("x", "y"))
    y.dependencies = ["x"]
    for task in (x, y):
        task.workflow_id = "wf"
        table.link(task)
    assert table.existing("wk") == "wf" and table.waiting_on("x") == ["y"]
    table.task_finished(x, finished=True)
    assert table.still_open("wf") and table.next_settled() == "x"
    assert table.next_settled() is None
    table.task_finished(y, finished=True)
    assert not table.still_open("wf")
    table.changed(wf, index=3)
    assert events == [WorkflowChanged(index=3, workflow_id="wf", status="running")]
    copy = WorkflowTable()
    copy.restore(table.to_wire())
    for task in (x, y):
        copy.restored_task(task)
    assert dict(copy) == dict(table) and copy.dependents == table.dependents


def test_worker_table_registers_drains_loses_and_departs() -> None:
    events: list[Event] = []
    table = WorkerTable(max_departed=1, events=events)
    hello = RegisterWorker(
        now_ms=5,
        worker_id="w",
        group="default",
        slots=1,
        resources={},
        labels={},
        hostname="h",
        secret_hash="s",
    )
    worker = table.register(hello)
    table.set_state(worker, WorkerState.OFFLINE, index=1)
    table.set_state(worker, WorkerState.ACTIVE, index=1)
    assert table.admits("w", "s") and not table.admits("w", "other")
    assert table.free_slots() == 1 and list(table.live()) == [worker]
    assert table.drain("w", draining=True, by_worker=False, index=2) == "draining"
    table.lost(worker, now_ms=9, index=3)
    assert table.admits("w", "other")  # lost: another instance may take the id
    assert [e.state for e in events if isinstance(e, WorkerChanged)] == [
        "offline",
        "active",
        "draining",
        "lost",
    ]
    assert table.depart("w", now_ms=10) is worker and "w" not in table
    assert [d["id"] for d in table.departed] == ["w"]
    with pytest.raises(NotFoundError):
        table.drain("w", draining=False, by_worker=False, index=4)
