"""Finished tasks kept compactly: frozen rows read like records, change like records (they thaw),
and leave snapshots, restores and digests exactly as they were."""

from __future__ import annotations

import zlib

import msgpack

from agentflow.state import StateMachine, TaskStatus
from agentflow.state.commands import (
    AssignTasks,
    CancelTask,
    Command,
    NewTask,
    RegisterWorker,
    ReportAttempts,
    RetryWorkflow,
    SubmitTasks,
    SubmitWorkflow,
    TaskOutcome,
    decode_command,
    encode_command,
)
from agentflow.state.machine import StateLimits
from agentflow.state.records import Attempt, Priority, TaskRecord, TaskSpec
from agentflow.state.tasktable import TaskTable, pack_task, unpack_task


class Replica:
    def __init__(self, live: int = 2) -> None:
        self.sm = StateMachine(limits=StateLimits(live_finished_tasks=live))
        self.index = 0

    def __call__(self, command: Command) -> object:
        self.index += 1
        return self.sm.apply(self.index, decode_command(encode_command(command)))


def _new(tid: str, **kw: object) -> NewTask:
    spec = {"command": f"echo {tid}", "env": {"A": "1"}}
    return NewTask(id=tid, title=tid, description="d", spec=spec, **kw)  # type: ignore[arg-type]


def _run(log: Replica, n: int, first: int = 0, status: str = "completed") -> list[str]:
    """Submit ``n`` tasks, run each on w1 and report ``status``; returns their ids."""
    ids = [f"t{first + i}" for i in range(n)]
    log(SubmitTasks(now_ms=5, tasks=[_new(t, idempotency_key=f"k-{t}") for t in ids]))
    for tid in ids:
        log(AssignTasks(now_ms=6, assignments=[(tid, "w1")]))
        token = log.sm.tasks[tid].fencing_token or 0
        outcome = TaskOutcome(task_id=tid, fencing_token=token, status=status, exit_code=0)
        log(ReportAttempts(now_ms=7, worker_id="w1", started=[(tid, token)], outcomes=[outcome]))
    return ids


def _worker(log: Replica) -> None:
    log(
        RegisterWorker(
            now_ms=0,
            worker_id="w1",
            group="default",
            slots=4,
            resources={"cpu": 4.0},
            labels={"zone": "a"},
            hostname="h",
        )
    )


def test_a_row_reads_back_as_the_same_record() -> None:
    task = TaskRecord(
        id="t1",
        title="title",
        description="desc",
        spec=TaskSpec(function="m:f", args=[1, "x", None], kwargs={"k": [1.5]}, env={"E": "v"}),
        priority=Priority.HIGH,
        group="gpu",
        timeout_s=2.5,
        max_retries=3,
        retry_backoff_s=0.5,
        resources={"cpu": 1.0},
        labels={"zone": "a"},
        idempotency_key="key",
        created_at=10,
        status=TaskStatus.FAILED,
        retries=2,
        attempts=[Attempt(number=1, fencing_token=7, worker_id="w1", assigned_at=11)],
        exit_code=1,
        reason="boom",
        workflow_id="wf",
        key="a",
        dependencies=["t0"],
        estimate_s=1.0,
        result='{"r": 1}',
    )
    row = pack_task(task)
    assert unpack_task(row) == task
    assert pack_task(unpack_task(row)) == row
    assert len(row) < 400


def test_finished_tasks_beyond_the_bound_are_frozen_and_read_alike() -> None:
    log = Replica(live=2)
    _worker(log)
    ids = _run(log, 6)
    assert log.sm.tasks.frozen == 4
    assert list(log.sm.tasks) == ids  # submission order, frozen or not
    peeked = log.sm.tasks.peek("t0")
    assert peeked is not None and peeked.status is TaskStatus.COMPLETED
    assert log.sm.tasks.frozen == 4  # peeking does not thaw
    frozen_row = log.sm.tasks._rows["t1"]
    assert isinstance(frozen_row, bytes) and len(frozen_row) < len(pack_task(peeked)) // 2
    assert peeked.attempts[0].worker_id == "w1" and peeked.spec.env == {"A": "1"}
    assert log.sm.tasks["t0"] == peeked  # reading through the mapping thaws it
    assert log.sm.tasks.frozen == 3
    assert log(SubmitTasks(now_ms=8, tasks=[_new("again", idempotency_key="k-t1")])) == [
        ("t1", False)
    ]


def test_the_form_a_task_is_kept_in_does_not_change_the_digest() -> None:
    compact, roomy = Replica(live=1), Replica(live=1_000)
    for log in (compact, roomy):
        _worker(log)
        _run(log, 5)
    assert compact.sm.tasks.frozen == 4 and roomy.sm.tasks.frozen == 0
    assert compact.sm.digest() == roomy.sm.digest()
    compact.sm.tasks.get("t2")  # a read on one replica thaws a task there only
    assert compact.sm.digest() == roomy.sm.digest()


def test_snapshot_restore_and_replay_agree() -> None:
    log = Replica(live=2)
    _worker(log)
    _run(log, 5)
    restored = StateMachine(limits=StateLimits(live_finished_tasks=2))
    restored.restore(log.sm.snapshot())
    assert restored.digest() == log.sm.digest()
    assert restored.tasks.frozen == 5  # every finished task comes back frozen
    assert restored.tasks.idempotency["k-t3"] == "t3"
    assert restored.tasks["t3"] == log.sm.tasks["t3"]
    # Both go on alike from there.
    follower = Replica(live=2)
    follower.sm, follower.index = restored, log.index
    for replica in (log, follower):
        _run(replica, 3, first=10)
    assert follower.sm.digest() == log.sm.digest()


def test_a_snapshot_from_before_rows_restores() -> None:
    log = Replica(live=2)
    _worker(log)
    _run(log, 3)
    body = msgpack.unpackb(zlib.decompress(log.sm.snapshot()), raw=False, strict_map_key=False)
    rows = body.pop("task_rows")
    body["tasks"] = [unpack_task(row).to_wire() for row in rows]
    old = StateMachine()
    old.restore(msgpack.packb(body, use_bin_type=True))
    assert old.digest() == log.sm.digest()


def test_a_late_report_of_a_cancelled_attempt_reaches_its_frozen_task() -> None:
    log = Replica(live=1)
    _worker(log)
    log(SubmitTasks(now_ms=5, tasks=[_new("slow")]))
    log(AssignTasks(now_ms=6, assignments=[("slow", "w1")]))
    token = log.sm.tasks["slow"].fencing_token or 0
    log(CancelTask(now_ms=7, task_id="slow"))
    _run(log, 3)  # others finish after it: "slow" is frozen while its attempt still runs
    assert isinstance(log.sm.tasks._rows["slow"], bytes)
    outcome = TaskOutcome(task_id="slow", fencing_token=token, status="cancelled", exit_code=-15)
    assert log(ReportAttempts(now_ms=9, worker_id="w1", outcomes=[outcome])) == [True]
    task = log.sm.tasks["slow"]
    assert task.status is TaskStatus.CANCELLED
    assert task.attempts[-1].status == "cancelled" and task.attempts[-1].finished_at == 9
    assert "slow" not in log.sm.workers["w1"].running


def test_retrying_a_workflow_thaws_its_frozen_tasks() -> None:
    log = Replica(live=1)
    _worker(log)
    tasks = [
        NewTask(id="a", title="a", description="", spec={"command": "true"}, key="a"),
        NewTask(
            id="b",
            title="b",
            description="",
            spec={"command": "true"},
            key="b",
            dependencies=["a"],
        ),
    ]
    log(
        SubmitWorkflow(now_ms=1, workflow_id="wf", name="w", failure_policy="continue", tasks=tasks)
    )
    log(AssignTasks(now_ms=2, assignments=[("a", "w1")]))
    token = log.sm.tasks["a"].fencing_token or 0
    failed = TaskOutcome(task_id="a", fencing_token=token, status="failed", exit_code=1)
    log(ReportAttempts(now_ms=3, worker_id="w1", outcomes=[failed]))
    _run(log, 3)
    assert log.sm.tasks.frozen >= 2  # a (failed) and b (upstream_failed) among them
    log(RetryWorkflow(now_ms=4, workflow_id="wf"))
    assert log.sm.tasks["a"].status is TaskStatus.QUEUED
    assert log.sm.tasks["b"].status is TaskStatus.PENDING
    assert log.sm.workflows["wf"].runs == 2


def test_table_keeps_counts_when_rows_are_replaced_or_deleted() -> None:
    table = TaskTable(recent=0)
    log = Replica()
    _worker(log)
    _run(log, 2)
    for tid in ("t0", "t1"):
        table[tid] = log.sm.tasks[tid]
    table.compact()
    assert table.frozen == 2
    del table["t0"]
    table["t1"] = log.sm.tasks["t1"]
    assert table.frozen == 0 and len(table) == 1
