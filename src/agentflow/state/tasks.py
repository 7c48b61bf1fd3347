"""Task commands: submit, assign, report, cancel, re-prioritise, release backed-off tasks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentflow.errors import ConflictError, NotFoundError
from agentflow.state import lock_ops
from agentflow.state.commands import (
    AssignTasks,
    CancelTask,
    Command,
    NewTask,
    ReleaseDueTasks,
    ReportAttempts,
    SetPriority,
    SetUnschedulable,
    SubmitTasks,
    TaskOutcome,
)
from agentflow.state.events import (
    AttemptWithdrawn,
    CancelRequested,
    OutputAppended,
    TaskAssigned,
    TasksQueued,
)
from agentflow.state.records import (
    OUTCOME_STATUSES,
    TERMINAL_STATUSES,
    Attempt,
    Priority,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    WorkerRecord,
)

if TYPE_CHECKING:
    from agentflow.state.handlers import Handler
    from agentflow.state.machine import StateMachine

__all__ = [
    "HANDLERS",
    "assign",
    "assign_pairs",
    "cancel",
    "cancel_one",
    "has_room",
    "new_record",
    "release_due",
    "report",
    "reserved_by",
    "set_priority",
    "set_unschedulable",
    "submit",
    "withdraw",
]

MAX_RESULT_CHARS = 64 * 1024

_ACTIVE = (TaskStatus.ASSIGNED, TaskStatus.RUNNING)


def submit(sm: StateMachine, index: int, cmd: SubmitTasks) -> list[tuple[str, bool]]:
    """Returns ``(task id, created)`` per submitted task, in order."""
    results: list[tuple[str, bool]] = []
    queued: list[str] = []
    tasks = sm.tasks
    for new in cmd.tasks:
        existing = tasks.existing(new.idempotency_key)
        if existing is not None:
            results.append((existing, False))
            continue
        if new.id in tasks:
            raise ConflictError(f"task id {new.id} already exists")
        task = new_record(new, cmd.now_ms)
        tasks.add(task, keyed=True)
        tasks.enqueue(task, cmd.now_ms)
        results.append((task.id, True))
        queued.append(task.id)
    if queued:
        sm.events.append(TasksQueued(index=index, task_ids=tuple(queued)))
    return results


def new_record(new: NewTask, now_ms: int) -> TaskRecord:
    return TaskRecord(
        id=new.id,
        title=new.title,
        description=new.description,
        spec=TaskSpec(**new.spec),
        priority=Priority(new.priority),
        group=new.group,
        timeout_s=new.timeout_s,
        max_retries=new.max_retries,
        retry_backoff_s=new.retry_backoff_s,
        resources=dict(new.resources),
        labels=dict(new.labels),
        idempotency_key=new.idempotency_key,
        created_at=now_ms,
        key=new.key,
        dependencies=list(new.dependencies),
        trigger=new.trigger,
        allow_failure=new.allow_failure,
        estimate_s=new.estimate_s,
        noop=new.noop,
    )


def assign(sm: StateMachine, index: int, cmd: AssignTasks) -> list[str]:
    """Start an attempt for each still-valid pair; returns the task ids actually assigned."""
    return assign_pairs(sm, index, cmd.now_ms, cmd.assignments)


def assign_pairs(
    sm: StateMachine, index: int, now_ms: int, pairs: list[tuple[str, str]]
) -> list[str]:
    """Start an attempt for each pair still valid now, in order; the ids actually assigned.

    Every attempt started by the entry at ``index`` gets ``index`` as its fencing token, from
    an ``AssignTasks`` or from placement inline with another command. A task gets at most one
    attempt per entry (it leaves the ready queue here), so a task's tokens are unique and rise
    with the log: comparing two of one task's tokens orders its attempts.
    """
    assigned: list[str] = []
    for task_id, worker_id in pairs:
        task = sm.tasks.get(task_id)
        worker = sm.workers.get(worker_id)
        if task is None or worker is None or task.status is not TaskStatus.QUEUED:
            continue
        if task.not_before or not worker.live or worker.draining or worker.free_capacity <= 0:
            continue
        if worker.group != task.group or not has_room(sm, worker, task):
            continue
        assert task.fencing_token is None or task.fencing_token < index, (task_id, index)
        sm.tasks.unqueue(task)
        attempt = Attempt(
            number=len(task.attempts) + 1,
            fencing_token=index,
            worker_id=worker_id,
            assigned_at=now_ms,
        )
        task.attempts.append(attempt)
        task.worker_id = worker_id
        task.fencing_token = index
        worker.running[task_id] = index
        sm.set_status(task, TaskStatus.ASSIGNED, index)
        sm.workers.refresh(worker, index)
        sm.events.append(
            TaskAssigned(index=index, task_id=task_id, worker_id=worker_id, fencing_token=index)
        )
        assigned.append(task_id)
    return assigned


def report(sm: StateMachine, index: int, cmd: ReportAttempts) -> list[bool]:
    """Apply a worker's report; returns, per outcome, whether it was accepted."""
    for task_id, token in cmd.started:
        task = _current(sm, task_id, token, cmd.worker_id)
        if task is not None and task.status is TaskStatus.ASSIGNED:
            attempt = task.attempts[-1]
            attempt.started_at = cmd.now_ms
            task.started_at = task.started_at or cmd.now_ms
            sm.set_status(task, TaskStatus.RUNNING, index)
    for task_id, token, sha in cmd.bases:
        task = _current(sm, task_id, token, cmd.worker_id)
        if task is not None and task.attempts[-1].workspace is None:
            task.attempts[-1].workspace = {"base": sha}  # the first base wins: retries keep it
    for task_id, token, stream, data in cmd.output:
        if stream in ("stdout", "stderr") and _current(sm, task_id, token, cmd.worker_id):
            end = sm.outputs.append(task_id, stream, data)
            sm.events.append(
                OutputAppended(index=index, task_id=task_id, stream=stream, data=data, end=end)
            )
    return [finish_attempt(sm, index, cmd.now_ms, cmd.worker_id, o) for o in cmd.outcomes]


def _current(sm: StateMachine, task_id: str, token: int, worker_id: str) -> TaskRecord | None:
    """The task if ``token`` is its live attempt's fencing token and ``worker_id`` runs that
    attempt, else None (superseded, or another worker's)."""
    task = sm.tasks.get(task_id)
    if task is None or task.fencing_token != token or not task.attempts:
        return None
    if task.attempts[-1].worker_id != worker_id:
        return None
    if task.status not in _ACTIVE and not task.cancel_requested:
        return None
    return task


def finish_attempt(
    sm: StateMachine, index: int, now_ms: int, worker_id: str, outcome: TaskOutcome
) -> bool:
    if outcome.status not in OUTCOME_STATUSES:
        return False  # refused at the session; an old log entry may still carry one
    worker = sm.workers.get(worker_id)
    task = _current(sm, outcome.task_id, outcome.fencing_token, worker_id)
    if worker is not None and worker.running.get(outcome.task_id) == outcome.fencing_token:
        del worker.running[outcome.task_id]
        worker.completed += outcome.status == "completed"
        worker.failed += outcome.status != "completed"
        if task is not None and task.attempts[-1].started_at is not None:
            _measure(worker, now_ms - task.attempts[-1].started_at)
        sm.workers.refresh(worker, index)
    if task is None:
        return False
    lock_ops.attempt_ended(sm, index, now_ms, task.id, outcome.fencing_token, lost=False)
    attempt = task.attempts[-1]
    attempt.finished_at = now_ms
    attempt.exit_code = outcome.exit_code
    attempt.status = outcome.status
    attempt.reason = outcome.reason
    if outcome.workspace is not None:  # else the attempt keeps the base it reported
        attempt.workspace = outcome.workspace
    if task.status in TERMINAL_STATUSES:
        # Cancelled while running: the kill is confirmed. The task keeps why it was cancelled.
        return True
    task.exit_code = outcome.exit_code
    task.reason = outcome.reason
    if outcome.result is not None:
        task.result = outcome.result[:MAX_RESULT_CHARS]
    task.finished_at = now_ms
    if outcome.status == "completed":
        sm.tasks.totals["completed"] += 1
        sm.set_status(task, TaskStatus.COMPLETED, index)
    elif outcome.status == "rejected":  # the worker refused it unstarted (draining)
        task.finished_at = None
        requeue_lost(sm, index, now_ms, task)
    elif outcome.status in ("failed", "timed_out", "cancelled"):
        _failed_attempt(sm, index, now_ms, task, outcome.status)
    return True


def _measure(worker: WorkerRecord, run_ms: int) -> None:
    """Fold one attempt's run time into the worker's moving average (integers: exact alike on
    every replica); it sets the depth of the worker's queue (``WorkerRecord.queue_depth``)."""
    run_ms = max(0, run_ms)
    last = worker.run_ms_avg
    worker.run_ms_avg = run_ms if last is None else (last * 7 + run_ms) // 8


def withdraw(sm: StateMachine, index: int, now_ms: int, task_id: str) -> None:
    """Take a queued, unstarted attempt back from its worker; the task waits again with its
    place in the queue (its age and priority), and no retry is spent. The worker drops the
    attempt (:class:`AttemptWithdrawn`); its late start or outcome carries a superseded
    token and is refused."""
    task = sm.tasks[task_id]
    assert task.status is TaskStatus.ASSIGNED and task.worker_id is not None, task_id
    attempt = task.attempts[-1]
    worker = sm.workers[task.worker_id]
    del worker.running[task_id]
    lock_ops.attempt_ended(sm, index, now_ms, task.id, attempt.fencing_token, lost=True)
    attempt.finished_at = now_ms
    attempt.status = "withdrawn"
    attempt.reason = "withdrawn unstarted for more urgent work"
    task.worker_id = None
    sm.tasks.totals["withdrawn"] += 1
    sm.set_status(task, TaskStatus.QUEUED, index)
    sm.tasks.requeue(task)
    sm.workers.refresh(worker, index)
    sm.events.append(
        AttemptWithdrawn(
            index=index,
            task_id=task_id,
            worker_id=worker.id,
            fencing_token=attempt.fencing_token,
        )
    )


def _failed_attempt(
    sm: StateMachine, index: int, now_ms: int, task: TaskRecord, status: str
) -> None:
    totals = sm.tasks.totals
    if status == "timed_out":
        totals["timed_out"] += 1
    if task.retries < task.max_retries:
        task.retries += 1
        totals["retried"] += 1
        backoff_s = min(task.retry_backoff_s * 2 ** (task.retries - 1), sm.limits.max_backoff_s)
        task.worker_id = None
        task.finished_at = None
        sm.set_status(task, TaskStatus.QUEUED, index)
        if backoff_s > 0:
            sm.tasks.delay(task, now_ms + int(backoff_s * 1000))
        else:
            sm.tasks.enqueue(task, now_ms)
        return
    totals["failed"] += 1
    final = TaskStatus.TIMED_OUT if status == "timed_out" else TaskStatus.FAILED
    sm.set_status(task, final, index)


def requeue_lost(sm: StateMachine, index: int, now_ms: int, task: TaskRecord) -> None:
    """The attempt's worker is gone: requeue without spending a retry."""
    attempt = task.attempts[-1]
    lock_ops.attempt_ended(sm, index, now_ms, task.id, attempt.fencing_token, lost=True)
    attempt.finished_at = now_ms
    attempt.status = attempt.status or "lost"
    attempt.reason = attempt.reason or f"worker {attempt.worker_id} lost"
    if task.cancel_requested:
        return
    task.worker_id = None
    sm.tasks.totals["requeued"] += 1
    sm.set_status(task, TaskStatus.QUEUED, index)
    sm.tasks.enqueue(task, now_ms)


def cancel(sm: StateMachine, index: int, cmd: CancelTask) -> str:
    task = sm.tasks.get(cmd.task_id)
    if task is None:
        raise NotFoundError(f"no task {cmd.task_id}", task_id=cmd.task_id)
    if task.status in TERMINAL_STATUSES:
        raise ConflictError(
            f"task {task.id} already {task.status.value}",
            task_id=task.id,
            task_status=task.status.value,
        )
    cancel_one(sm, index, cmd.now_ms, task, "cancelled")
    return task.id


def cancel_one(sm: StateMachine, index: int, now_ms: int, task: TaskRecord, reason: str) -> None:
    """Cancel a task that has not finished; a running attempt is told to kill its process tree."""
    if task.status in _ACTIVE and task.worker_id is not None and task.fencing_token is not None:
        task.cancel_requested = True
        sm.events.append(
            CancelRequested(
                index=index,
                task_id=task.id,
                worker_id=task.worker_id,
                fencing_token=task.fencing_token,
            )
        )
    else:
        sm.tasks.unqueue(task)
    task.finished_at = now_ms
    task.reason = reason
    sm.tasks.totals["cancelled"] += 1
    sm.set_status(task, TaskStatus.CANCELLED, index)


def set_priority(sm: StateMachine, index: int, cmd: SetPriority) -> str:
    task = sm.tasks.get(cmd.task_id)
    if task is None:
        raise NotFoundError(f"no task {cmd.task_id}", task_id=cmd.task_id)
    if task.status not in (TaskStatus.QUEUED, TaskStatus.PENDING):
        raise ConflictError(
            f"task {task.id} is {task.status.value}; only a waiting task can change priority",
            task_id=task.id,
        )
    task.priority = Priority(cmd.priority)
    if task.status is TaskStatus.QUEUED and not task.not_before:
        sm.tasks.requeue(task)
    return task.id


def release_due(sm: StateMachine, index: int, cmd: ReleaseDueTasks) -> int:
    return sm.tasks.release_due(cmd.now_ms)


def reserved_by(sm: StateMachine, worker: WorkerRecord) -> dict[str, float]:
    """Resources reserved by the attempts a worker holds (:meth:`TaskTable.reserved_by`)."""
    return sm.tasks.reserved_by(worker)


def has_room(sm: StateMachine, worker: WorkerRecord, task: TaskRecord) -> bool:
    """Labels match, the worker runs calls sent by value if the task is one, and the worker's
    free resources cover the task's needs."""
    if any(worker.labels.get(k) != v for k, v in task.labels.items()):
        return False
    if task.spec.pickled is not None and not worker.pickled_functions:
        return False
    if (task.spec.workspace is not None or task.spec.merge is not None) and not worker.workspaces:
        return False
    if not task.resources:
        return True
    reserved = sm.tasks.reserved_by(worker)
    return all(
        amount <= worker.resources.get(name, 0.0) - reserved.get(name, 0.0) + 1e-9
        for name, amount in task.resources.items()
    )


def set_unschedulable(sm: StateMachine, index: int, cmd: SetUnschedulable) -> int:
    changed = 0
    for task_id, reason in cmd.reasons.items():
        task = sm.tasks.get(task_id)
        if task is not None and task.status is TaskStatus.QUEUED and task.unschedulable != reason:
            task.unschedulable = reason
            changed += 1
    return changed


HANDLERS: dict[type[Command], Handler] = {
    SubmitTasks: submit,
    AssignTasks: assign,
    ReportAttempts: report,
    CancelTask: cancel,
    SetPriority: set_priority,
    SetUnschedulable: set_unschedulable,
    ReleaseDueTasks: release_due,
}
