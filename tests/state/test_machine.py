"""The state machine: deterministic transitions, fencing, retries, loss, snapshots."""

from agentflow.errors import ConflictError, NotFoundError
from agentflow.state import StateMachine, TaskStatus, WorkerState
from agentflow.state.commands import (
    AssignTasks,
    CancelTask,
    MarkWorkersLost,
    NewTask,
    RegisterWorker,
    ReleaseDueTasks,
    ReportAttempts,
    SetPriority,
    SubmitTasks,
    TaskOutcome,
)
from tests.state.replica import Log


def new(tid: str, **kw: object) -> NewTask:
    return NewTask(id=tid, title=tid, description="", spec={"command": "true"}, **kw)  # type: ignore[arg-type]


def worker(log: Log, wid: str = "w1", slots: int = 1, running: list | None = None) -> object:
    return log(
        RegisterWorker(
            now_ms=0,
            worker_id=wid,
            group="default",
            slots=slots,
            resources={},
            labels={},
            hostname="h",
            running=running or [],
        )
    )


def done(
    log: Log, tid: str, token: int, status: str = "completed", code: int = 0, wid: str = "w1"
) -> object:
    outcome = TaskOutcome(task_id=tid, fencing_token=token, status=status, exit_code=code)
    return log(ReportAttempts(now_ms=10, worker_id=wid, outcomes=[outcome]))


def test_submit_assign_run_complete() -> None:
    log = Log()
    worker(log)
    assert log(SubmitTasks(now_ms=1, tasks=[new("t1")])) == [("t1", True)]
    assert log(AssignTasks(now_ms=2, assignments=[("t1", "w1")])) == ["t1"]
    task = log.sm.tasks["t1"]
    token = task.fencing_token
    assert token == 3  # the Assign entry's log index
    assert log.sm.workers["w1"].state is WorkerState.BUSY
    log(ReportAttempts(now_ms=3, worker_id="w1", started=[("t1", token)]))
    assert task.status is TaskStatus.RUNNING
    assert done(log, "t1", token) == [True]
    assert task.status is TaskStatus.COMPLETED
    assert task.exit_code == 0
    assert log.sm.workers["w1"].free_slots == 1
    assert log.sm.workers["w1"].state is WorkerState.ACTIVE


def test_idempotency_key_returns_first_task() -> None:
    log = Log()
    log(SubmitTasks(now_ms=1, tasks=[new("t1", idempotency_key="k")]))
    assert log(SubmitTasks(now_ms=2, tasks=[new("t2", idempotency_key="k")])) == [("t1", False)]
    assert list(log.sm.tasks) == ["t1"]


def test_retry_with_backoff_then_final_failure_keeps_every_attempt() -> None:
    log = Log()
    worker(log)
    log(SubmitTasks(now_ms=0, tasks=[new("t1", max_retries=1, retry_backoff_s=2.0)]))
    log(AssignTasks(now_ms=0, assignments=[("t1", "w1")]))
    task = log.sm.tasks["t1"]
    done(log, "t1", task.fencing_token or 0, "failed", 3)
    assert task.status is TaskStatus.QUEUED
    assert task.not_before == 10 + 2000
    # Not due yet: an assign is refused and a release at 2009 ms moves nothing.
    assert log(AssignTasks(now_ms=11, assignments=[("t1", "w1")])) == []
    assert log(ReleaseDueTasks(now_ms=2009)) == 0
    assert log(ReleaseDueTasks(now_ms=2010)) == 1
    log(AssignTasks(now_ms=2011, assignments=[("t1", "w1")]))
    done(log, "t1", task.fencing_token or 0, "timed_out", None)  # type: ignore[arg-type]
    assert task.status is TaskStatus.TIMED_OUT
    assert [(a.status, a.exit_code) for a in task.attempts] == [("failed", 3), ("timed_out", None)]


def test_superseded_attempt_cannot_overwrite_newer_one() -> None:
    log = Log()
    worker(log, "w1")
    worker(log, "w2")
    log(SubmitTasks(now_ms=0, tasks=[new("t1")]))
    log(AssignTasks(now_ms=0, assignments=[("t1", "w1")]))
    old_token = log.sm.tasks["t1"].fencing_token or 0
    log(MarkWorkersLost(now_ms=30_000, worker_ids=["w1"]))
    assert log.sm.tasks["t1"].status is TaskStatus.QUEUED
    log(AssignTasks(now_ms=30_001, assignments=[("t1", "w2")]))
    new_token = log.sm.tasks["t1"].fencing_token or 0
    assert new_token > old_token
    # The zombie attempt reports success: refused.
    assert done(log, "t1", old_token) == [False]
    assert log.sm.tasks["t1"].status is TaskStatus.ASSIGNED
    # Another worker reporting the live attempt: refused too; only its holder may.
    assert done(log, "t1", new_token) == [False]
    assert log.sm.tasks["t1"].status is TaskStatus.ASSIGNED
    assert done(log, "t1", new_token, wid="w2") == [True]


def test_reconnect_reconciles_running_attempts() -> None:
    log = Log()
    worker(log, slots=2)
    log(SubmitTasks(now_ms=0, tasks=[new("a"), new("b")]))
    log(AssignTasks(now_ms=0, assignments=[("a", "w1"), ("b", "w1")]))
    token = log.sm.tasks["a"].fencing_token or 0
    # The worker comes back running only "a" plus a zombie attempt it should kill.
    result = worker(log, slots=2, running=[("a", token), ("zzz", 1)])
    assert result == {"worker_id": "w1", "cancel": [("zzz", 1)], "drain": "none"}
    assert log.sm.tasks["a"].status is TaskStatus.ASSIGNED
    assert log.sm.tasks["b"].status is TaskStatus.QUEUED


def test_cancel_running_waits_for_the_kill_then_frees_slot() -> None:
    log = Log()
    worker(log)
    log(SubmitTasks(now_ms=0, tasks=[new("t1")]))
    log(AssignTasks(now_ms=0, assignments=[("t1", "w1")]))
    token = log.sm.tasks["t1"].fencing_token or 0
    log(CancelTask(now_ms=5, task_id="t1"))
    assert log.sm.tasks["t1"].status is TaskStatus.CANCELLED
    assert log.sm.workers["w1"].free_slots == 0
    assert done(log, "t1", token, "cancelled", -9) == [True]
    assert log.sm.tasks["t1"].status is TaskStatus.CANCELLED
    assert log.sm.workers["w1"].free_slots == 1


def test_refusals_are_returned_not_raised_and_change_nothing() -> None:
    log = Log()
    assert isinstance(log(CancelTask(now_ms=0, task_id="nope")), NotFoundError)
    assert log.sm.tasks == {}
    log(SubmitTasks(now_ms=0, tasks=[new("t1")]))
    log(CancelTask(now_ms=0, task_id="t1"))
    before = log.sm.tasks["t1"].to_wire()
    assert isinstance(log(SetPriority(now_ms=0, task_id="t1", priority="high")), ConflictError)
    assert isinstance(log(CancelTask(now_ms=0, task_id="t1")), ConflictError)
    assert log.sm.tasks["t1"].to_wire() == before


def test_snapshot_restore_gives_identical_state_and_queue() -> None:
    log = Log()
    worker(log)
    log(SubmitTasks(now_ms=0, tasks=[new(f"t{i}", priority="low") for i in range(5)]))
    log(SubmitTasks(now_ms=0, tasks=[new("u", priority="urgent")]))
    log(AssignTasks(now_ms=0, assignments=[("t0", "w1")]))
    copy = StateMachine()
    copy.restore(log.sm.snapshot())
    assert copy.digest() == log.sm.digest()
    assert list(copy.tasks.ready.ordered("default")) == list(log.sm.tasks.ready.ordered("default"))
    assert copy.applied_index == log.sm.applied_index


def test_output_tail_is_bounded() -> None:
    log = Log()
    worker(log)
    log(SubmitTasks(now_ms=0, tasks=[new("t1")]))
    log(AssignTasks(now_ms=0, assignments=[("t1", "w1")]))
    token = log.sm.tasks["t1"].fencing_token or 0
    chunk = b"x" * 400_000
    for _ in range(3):
        log(ReportAttempts(now_ms=1, worker_id="w1", output=[("t1", token, "stdout", chunk)]))
    tail = log.sm.outputs["t1"]["stdout"]
    assert len(tail.data) == log.sm.limits.output_tail_bytes
    assert tail.dropped == 3 * 400_000 - log.sm.limits.output_tail_bytes


def test_submit_tells_the_scheduler_once_per_batch() -> None:
    from agentflow.state.events import TasksQueued

    log = Log()
    log(SubmitTasks(now_ms=0, tasks=[new("a"), new("b")]))
    events = [e for e in log.sm.drain_events() if isinstance(e, TasksQueued)]
    assert [e.task_ids for e in events] == [("a", "b")]


def test_deregistered_worker_leaves_history_and_gpus_are_recorded() -> None:
    from agentflow.state.commands import DeregisterWorker

    log = Log()
    log(
        RegisterWorker(
            now_ms=0,
            worker_id="g",
            group="default",
            slots=1,
            resources={"gpu": 1},
            labels={},
            hostname="h",
            gpus=[{"index": 0, "name": "NVIDIA H100", "memory_mb": 81559}],
        )
    )
    assert log.sm.workers["g"].gpus[0]["name"] == "NVIDIA H100"
    log(MarkWorkersLost(now_ms=30_000, worker_ids=["g"]))
    log(DeregisterWorker(now_ms=99_000, worker_id="g", force=True))
    assert "g" not in log.sm.workers
    assert [d["id"] for d in log.sm.workers.departed] == ["g"]
    copy = StateMachine()
    copy.restore(log.sm.snapshot())
    assert list(copy.workers.departed) == list(log.sm.workers.departed)
