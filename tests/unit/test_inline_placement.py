"""Placement inline with the entry that adds work or frees room (issue 14's fast path)."""

from __future__ import annotations

from typing import Any

from agentflow.state import StateMachine
from agentflow.state.commands import (
    AssignTasks,
    Command,
    NewTask,
    RegisterWorker,
    ReportAttempts,
    SubmitTasks,
    SubmitWorkflow,
    TaskOutcome,
    decode_command,
    encode_command,
)
from agentflow.state.events import TaskAssigned
from agentflow.state.records import TaskStatus


class Log:
    """One state machine fed through the wire form, as a replica is."""

    def __init__(self) -> None:
        self.sm = StateMachine()
        self.index = 0
        self.entries: list[bytes] = []

    def apply(self, command: Command) -> Any:
        self.index += 1
        data = encode_command(command)
        self.entries.append(data)
        return self.sm.apply_entry(self.index, data)

    def worker(self, wid: str, slots: int, prefetch: int = 0) -> None:
        self.apply(
            RegisterWorker(
                now_ms=0,
                worker_id=wid,
                group="default",
                slots=slots,
                resources={},
                labels={},
                hostname="h",
                prefetch=prefetch,
            )
        )

    def submit(self, tid: str, at_ms: int, priority: str = "medium", place: bool = True) -> None:
        self.apply(SubmitTasks(now_ms=at_ms, tasks=[_task(tid, priority)], place=place))

    def finish(self, wid: str, tid: str, at_ms: int, status: str = "completed") -> None:
        token = self.sm.tasks[tid].fencing_token
        assert token is not None
        outcome = TaskOutcome(task_id=tid, fencing_token=token, status=status)
        self.apply(ReportAttempts(now_ms=at_ms, worker_id=wid, outcomes=[outcome], place=True))

    def assigned(self) -> list[TaskAssigned]:
        return [e for e in self.sm.drain_events() if isinstance(e, TaskAssigned)]


def _task(tid: str, priority: str = "medium", deps: list[str] | None = None) -> NewTask:
    return NewTask(
        id=tid,
        title=tid,
        description="",
        spec={"command": "true"},
        priority=priority,
        key=tid if deps is not None else None,
        dependencies=deps or [],
    )


def test_a_submit_that_finds_a_free_slot_is_assigned_in_its_own_entry() -> None:
    log = Log()
    log.worker("w1", slots=1)
    log.sm.drain_events()
    log.submit("t1", at_ms=5)
    [event] = log.assigned()
    task = log.sm.tasks["t1"]
    assert task.status is TaskStatus.ASSIGNED
    assert event.fencing_token == log.index == task.fencing_token  # the submit's own index
    assert (event.task_id, event.worker_id) == ("t1", "w1")
    assert task.attempts[-1].assigned_at == 5


def test_an_entry_without_place_leaves_its_task_to_the_scheduler() -> None:
    """Old log entries (no ``place`` field) replay exactly as they applied before."""
    log = Log()
    log.worker("w1", slots=1)
    log.submit("t1", at_ms=0, place=False)
    assert log.sm.tasks["t1"].status is TaskStatus.QUEUED
    log.apply(AssignTasks(now_ms=1, assignments=[("t1", "w1")]))
    assert log.sm.tasks["t1"].fencing_token == log.index


def test_the_report_that_frees_a_slot_assigns_the_most_urgent_waiting_task() -> None:
    log = Log()
    log.worker("w1", slots=1)
    log.submit("first", at_ms=0)
    log.submit("low", at_ms=1, priority="low")
    log.submit("urgent", at_ms=2, priority="urgent")
    assert log.sm.tasks["low"].status is TaskStatus.QUEUED  # no room: they wait
    log.sm.drain_events()
    log.finish("w1", "first", at_ms=3)
    [event] = log.assigned()
    assert event.task_id == "urgent" and event.fencing_token == log.index
    assert log.sm.tasks["first"].status is TaskStatus.COMPLETED
    log.finish("w1", "urgent", at_ms=4)
    assert log.sm.tasks["low"].fencing_token == log.index


def test_a_retry_with_no_backoff_gets_a_new_higher_token_in_the_report_entry() -> None:
    log = Log()
    log.worker("w1", slots=1)
    log.apply(
        SubmitTasks(
            now_ms=0,
            tasks=[
                NewTask(
                    id="flaky",
                    title="flaky",
                    description="",
                    spec={"command": "false"},
                    max_retries=1,
                    retry_backoff_s=0.0,
                )
            ],
            place=True,
        )
    )
    first = log.sm.tasks["flaky"].fencing_token
    assert first is not None
    log.finish("w1", "flaky", at_ms=1, status="failed")
    task = log.sm.tasks["flaky"]
    assert task.status is TaskStatus.ASSIGNED and task.fencing_token == log.index > first
    assert [a.fencing_token for a in task.attempts] == [first, log.index]


def test_a_finished_parent_places_its_child_in_the_same_entry() -> None:
    log = Log()
    log.worker("w1", slots=1)
    log.apply(
        SubmitWorkflow(
            now_ms=0,
            workflow_id="wf-1",
            name="chain",
            failure_policy="fail_fast",
            tasks=[_task("a", deps=[]), _task("b", deps=["a"])],
            place=True,
        )
    )
    assert log.sm.tasks["a"].status is TaskStatus.ASSIGNED
    log.finish("w1", "a", at_ms=1)
    assert log.sm.tasks["b"].status is TaskStatus.ASSIGNED
    assert log.sm.tasks["b"].fencing_token == log.index


def test_replicas_applying_the_same_entries_agree() -> None:
    log = Log()
    log.worker("w1", slots=2, prefetch=1)
    log.worker("w2", slots=1)
    for i in range(12):
        log.submit(f"t{i}", at_ms=i, priority=("low", "high", "urgent")[i % 3])
    for i in range(12):
        task = log.sm.tasks[f"t{i}"]
        if task.status is TaskStatus.ASSIGNED and task.worker_id is not None:
            log.finish(task.worker_id, task.id, at_ms=100 + i)
    replica = StateMachine()
    for index, data in enumerate(log.entries, start=1):
        replica.apply_entry(index, data)
    assert replica.digest() == log.sm.digest()


def test_place_survives_the_wire() -> None:
    for command in (
        SubmitTasks(now_ms=1, tasks=[_task("x")], place=True),
        ReportAttempts(now_ms=1, worker_id="w", place=True),
    ):
        assert decode_command(encode_command(command)) == command
    assert "place" not in SubmitTasks(now_ms=1, tasks=[]).to_wire()  # old form, byte for byte
