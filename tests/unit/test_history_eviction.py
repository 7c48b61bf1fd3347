"""Eviction of finished tasks in the pure state machine: beyond ``max_finished_tasks`` the
oldest finished task leaves the state with a :class:`TaskEvicted` event carrying its row."""

from __future__ import annotations

from agentflow.state import StateLimits, StateMachine, TaskStatus
from agentflow.state.commands import (
    CancelTask,
    Command,
    NewTask,
    SubmitTasks,
    SubmitWorkflow,
    decode_command,
    encode_command,
)
from agentflow.state.events import TaskEvicted
from agentflow.state.tasktable import unpack_task


class Replica:
    def __init__(self, bound: int, live: int = 1) -> None:
        limits = StateLimits(max_finished_tasks=bound, live_finished_tasks=live)
        self.sm = StateMachine(limits=limits)
        self.index = 0

    def __call__(self, command: Command) -> object:
        self.index += 1
        return self.sm.apply(self.index, decode_command(encode_command(command)))

    def evicted(self) -> list[TaskEvicted]:
        return [e for e in self.sm.drain_events() if isinstance(e, TaskEvicted)]


def new(tid: str, **kw: object) -> NewTask:
    return NewTask(id=tid, title=tid, description="", spec={"command": "true"}, **kw)  # type: ignore[arg-type]


def finish(log: Replica, tid: str, key: str | None = None) -> None:
    log(SubmitTasks(now_ms=log.index, tasks=[new(tid, idempotency_key=key)]))
    log(CancelTask(now_ms=log.index, task_id=tid))


def test_oldest_finished_task_leaves_with_its_row() -> None:
    log = Replica(bound=2)
    for tid in ("t1", "t2"):
        finish(log, tid)
    rows = dict(zip(log.sm.tasks, log.sm.tasks.rows(), strict=True))
    assert log.evicted() == []
    finish(log, "t3")
    [event] = log.evicted()
    assert event.task_id == "t1"
    assert event.index == log.index  # the entry whose finish pushed it out
    assert event.row == rows["t1"]  # the bytes a snapshot held for it (it was frozen)
    assert unpack_task(event.row).status is TaskStatus.CANCELLED
    assert list(log.sm.tasks) == ["t2", "t3"]
    assert log.sm.tasks.status_counts[TaskStatus.CANCELLED] == 2


def test_a_live_record_evicted_gives_the_row_a_snapshot_would() -> None:
    log = Replica(bound=1, live=10)  # nothing frozen: the row is packed from the record
    finish(log, "t1")
    expected = log.sm.tasks.rows()[0]
    finish(log, "t2")
    assert [(e.task_id, e.row) for e in log.evicted()] == [("t1", expected)]


def test_replicas_evict_alike() -> None:
    a, b = Replica(bound=2), Replica(bound=2, live=0)  # freezing differs; eviction may not
    for log in (a, b):
        for i in range(6):
            finish(log, f"t{i}")
        log.sm.tasks["t5"]  # a read thaws on one replica only
    assert a.evicted() == b.evicted()
    assert a.sm.digest() == b.sm.digest()


def test_an_evicted_tasks_idempotency_key_is_forgotten() -> None:
    log = Replica(bound=1)
    finish(log, "t1", key="k")
    assert log(SubmitTasks(now_ms=9, tasks=[new("t2", idempotency_key="k")])) == [("t1", False)]
    finish(log, "t3")
    assert [e.task_id for e in log.evicted()] == ["t1"]
    assert log(SubmitTasks(now_ms=9, tasks=[new("t4", idempotency_key="k")])) == [("t4", True)]


def test_tasks_of_an_open_workflow_are_not_evicted() -> None:
    log = Replica(bound=1)
    tasks = [new("wa", key="a"), new("wb", key="b")]
    log(
        SubmitWorkflow(now_ms=1, workflow_id="wf", name="w", failure_policy="continue", tasks=tasks)
    )
    log(CancelTask(now_ms=2, task_id="wa"))  # wb still queued: the workflow is open
    finish(log, "t1")
    finish(log, "t2")
    assert "wa" in log.sm.tasks
    assert [e.task_id for e in log.evicted()] == ["t1"]
