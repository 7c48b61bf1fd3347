"""Workflow commands and the settling of dependencies.

A task with dependencies waits ``pending``. Whenever a workflow task reaches a terminal state
(in any command), :func:`settle` runs at the end of that command: each pending dependent's
trigger is evaluated (``all_success``, ``all_done``, ``one_success``) and the dependent is
queued, or marked ``upstream_failed`` (which cascades); under ``fail_fast`` a final failure
cancels everything not yet finished; a workflow whose tasks are all finished completes or fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentflow.errors import ConflictError, NotFoundError
from agentflow.state.commands import CancelWorkflow, Command, RetryWorkflow, SubmitWorkflow
from agentflow.state.events import TasksQueued
from agentflow.state.records import (
    TERMINAL_STATUSES,
    TaskRecord,
    TaskStatus,
    WorkflowRecord,
    WorkflowStatus,
)
from agentflow.state.tasks import cancel_one, new_record

if TYPE_CHECKING:
    from agentflow.state.handlers import Handler
    from agentflow.state.machine import StateMachine

__all__ = ["HANDLERS", "cancel_workflow", "retry_workflow", "settle", "submit_workflow"]

_RERUN = frozenset(
    {TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.CANCELLED, TaskStatus.UPSTREAM_FAILED}
)


def submit_workflow(sm: StateMachine, index: int, cmd: SubmitWorkflow) -> dict[str, Any]:
    existing = sm.workflows.existing(cmd.idempotency_key)
    if existing is not None:
        return {"workflow_id": existing, "created": False}
    if cmd.workflow_id in sm.workflows:
        raise ConflictError(f"workflow {cmd.workflow_id} already exists")
    wf = WorkflowRecord(
        id=cmd.workflow_id,
        name=cmd.name,
        failure_policy=cmd.failure_policy,
        task_ids=[t.id for t in cmd.tasks],
        created_at=cmd.now_ms,
        idempotency_key=cmd.idempotency_key,
    )
    sm.workflows.add(wf, len(cmd.tasks))
    for new in cmd.tasks:
        task = new_record(new, cmd.now_ms)
        task.workflow_id = wf.id
        task.status = TaskStatus.PENDING
        sm.tasks.add(task, keyed=False)
        sm.workflows.link(task)
    queued: list[str] = []
    for task_id in wf.task_ids:
        task = sm.tasks[task_id]
        if not task.dependencies:
            _make_ready(sm, index, cmd.now_ms, task, queued)
    if queued:
        sm.events.append(TasksQueued(index=index, task_ids=tuple(queued)))
    sm.workflows.changed(wf, index)
    return {"workflow_id": wf.id, "created": True}


def _make_ready(
    sm: StateMachine, index: int, now_ms: int, task: TaskRecord, queued: list[str]
) -> None:
    if task.noop:  # nothing to run: done as soon as it may start
        task.started_at = task.finished_at = now_ms
        task.exit_code = 0
        sm.tasks.totals["completed"] += 1
        sm.set_status(task, TaskStatus.COMPLETED, index)
        return
    sm.set_status(task, TaskStatus.QUEUED, index)
    sm.tasks.enqueue(task, now_ms)
    queued.append(task.id)


def _ok(task: TaskRecord | None) -> bool:
    if task is None:
        return True  # evicted long after finishing: only finished workflows lose tasks
    return task.status is TaskStatus.COMPLETED or (
        task.allow_failure and task.status in TERMINAL_STATUSES
    )


def _done(task: TaskRecord | None) -> bool:
    return task is None or task.status in TERMINAL_STATUSES


def _verdict(sm: StateMachine, task: TaskRecord) -> str:
    """``ready``, ``wait`` or ``skip`` (upstream failed) for a pending task's trigger."""
    deps = [sm.tasks.get(d) for d in task.dependencies]
    if task.trigger == "all_done":
        return "ready" if all(_done(d) for d in deps) else "wait"
    if task.trigger == "one_success":
        if any(_done(d) and _ok(d) for d in deps):
            return "ready"
        return "skip" if all(_done(d) for d in deps) else "wait"
    if any(_done(d) and not _ok(d) for d in deps):
        return "skip"
    return "ready" if all(_ok(d) for d in deps) else "wait"


def _upstream_reason(sm: StateMachine, task: TaskRecord) -> str:
    """Names the first dependency that finished without success."""
    for dep_id in task.dependencies:
        dep = sm.tasks.get(dep_id)
        if dep is not None and _done(dep) and not _ok(dep):
            return f"upstream {dep.key or dep.id} {dep.status.value}"
    return "no upstream task succeeded"


def settle(sm: StateMachine, index: int, now_ms: int) -> None:
    """Propagate every workflow task that finished during this command (cascading)."""
    queued: list[str] = []
    while (settled := sm.workflows.next_settled()) is not None:
        task = sm.tasks.get(settled)
        if task is None or task.workflow_id is None:
            continue
        wf = sm.workflows.get(task.workflow_id)
        if wf is None:
            continue
        for dep_id in sm.workflows.waiting_on(task.id):
            dependent = sm.tasks.get(dep_id)
            if dependent is None or dependent.status is not TaskStatus.PENDING:
                continue
            verdict = _verdict(sm, dependent)
            if verdict == "ready":
                _make_ready(sm, index, now_ms, dependent, queued)
            elif verdict == "skip":
                dependent.finished_at = now_ms
                dependent.reason = _upstream_reason(sm, dependent)
                sm.set_status(dependent, TaskStatus.UPSTREAM_FAILED, index)
        final_failure = task.status in (TaskStatus.FAILED, TaskStatus.TIMED_OUT)
        if (
            final_failure
            and not task.allow_failure
            and wf.status is WorkflowStatus.RUNNING
            and wf.failure_policy == "fail_fast"
        ):
            _cancel_open(sm, index, now_ms, wf, f"fail_fast: {task.key or task.id} failed")
        _maybe_finish(sm, index, now_ms, wf)
    if queued:
        sm.events.append(TasksQueued(index=index, task_ids=tuple(queued)))


def _cancel_open(
    sm: StateMachine, index: int, now_ms: int, wf: WorkflowRecord, reason: str
) -> None:
    for task_id in wf.task_ids:
        task = sm.tasks.get(task_id)
        if task is not None and task.status not in TERMINAL_STATUSES:
            cancel_one(sm, index, now_ms, task, reason)


def _maybe_finish(sm: StateMachine, index: int, now_ms: int, wf: WorkflowRecord) -> None:
    if sm.workflows.still_open(wf.id) or wf.status is not WorkflowStatus.RUNNING:
        return
    tasks = [sm.tasks.get(t) for t in wf.task_ids]
    wf.status = WorkflowStatus.COMPLETED if all(_ok(t) for t in tasks) else WorkflowStatus.FAILED
    wf.finished_at = now_ms
    sm.workflows.changed(wf, index)


def _workflow(sm: StateMachine, workflow_id: str) -> WorkflowRecord:
    wf = sm.workflows.get(workflow_id)
    if wf is None:
        raise NotFoundError(f"no workflow {workflow_id}", workflow_id=workflow_id)
    return wf


def cancel_workflow(sm: StateMachine, index: int, cmd: CancelWorkflow) -> str:
    wf = _workflow(sm, cmd.workflow_id)
    if wf.status is not WorkflowStatus.RUNNING:
        raise ConflictError(f"workflow {wf.id} is already {wf.status.value}", workflow_id=wf.id)
    wf.status = WorkflowStatus.CANCELLED
    wf.finished_at = cmd.now_ms
    _cancel_open(sm, index, cmd.now_ms, wf, "workflow cancelled")
    sm.workflows.changed(wf, index)
    return wf.id


def retry_workflow(sm: StateMachine, index: int, cmd: RetryWorkflow) -> int:
    """Reset failed, timed-out, cancelled and upstream-failed tasks; keep what succeeded."""
    wf = _workflow(sm, cmd.workflow_id)
    if wf.status is WorkflowStatus.RUNNING:
        raise ConflictError(f"workflow {wf.id} is still running", workflow_id=wf.id)
    reset = [sm.tasks[t] for t in wf.task_ids if t in sm.tasks and sm.tasks[t].status in _RERUN]
    if not reset:
        raise ConflictError(f"workflow {wf.id} has no failed task to retry", workflow_id=wf.id)
    for task in reset:
        task.retries = 0
        task.exit_code = task.reason = task.worker_id = task.fencing_token = None
        task.finished_at = None
        task.cancel_requested = False
        sm.set_status(task, TaskStatus.PENDING, index)
    wf.status = WorkflowStatus.RUNNING
    wf.finished_at = None
    wf.runs += 1
    queued: list[str] = []
    for task in reset:  # topological order: a task's upstream is settled before it is looked at
        if _verdict(sm, task) == "ready":
            _make_ready(sm, index, cmd.now_ms, task, queued)
    if queued:
        sm.events.append(TasksQueued(index=index, task_ids=tuple(queued)))
    sm.workflows.changed(wf, index)
    return len(reset)


HANDLERS: dict[type[Command], Handler] = {
    SubmitWorkflow: submit_workflow,
    CancelWorkflow: cancel_workflow,
    RetryWorkflow: retry_workflow,
}
