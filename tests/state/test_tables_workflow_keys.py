"""A workflow's task may carry an idempotency key (the API passes a workflow task's fields on
as a task's), but only a plain submit's key finds its task again: a replica that restored a
snapshot must not index the workflow task's key when the replica that never restarted did not,
and evicting a workflow task must not forget a plain task's key.

Found by the golden sequence of tests/state/test_tables_golden.py (seed 1 before workflow tasks
there lost their keys): replicas diverged at the first plain submit reusing such a key.
"""

from __future__ import annotations

from agentflow.state import StateLimits, StateMachine
from agentflow.state.commands import (
    CancelWorkflow,
    Command,
    NewTask,
    SubmitTasks,
    SubmitWorkflow,
    decode_command,
    encode_command,
)


def _task(task_id: str, key: str | None = None) -> NewTask:
    return NewTask(
        id=task_id, title=task_id, description="", spec={"command": "true"}, idempotency_key=key
    )


def _workflow(workflow_id: str, task_id: str, key: str) -> SubmitWorkflow:
    return SubmitWorkflow(
        now_ms=1,
        workflow_id=workflow_id,
        name="wf",
        failure_policy="continue",
        tasks=[_task(task_id, key)],
    )


class _Replicas:
    """A replica that applies every entry, and one that restores the first one's snapshot at
    ``restore_at`` and applies the rest."""

    def __init__(self, restore_at: int, limits: StateLimits | None = None) -> None:
        self.limits = limits or StateLimits()
        self.steady = StateMachine(limits=self.limits)
        self.restarted: StateMachine | None = None
        self.restore_at = restore_at
        self.index = 0

    def __call__(self, command: Command) -> tuple[object, object]:
        self.index += 1
        data = encode_command(command)
        result = self.steady.apply(self.index, decode_command(data))
        other = None
        if self.restarted is not None:
            other = self.restarted.apply(self.index, decode_command(data))
        if self.index == self.restore_at:
            self.restarted = StateMachine(limits=self.limits)
            self.restarted.restore(self.steady.snapshot())
        return result, other


def test_a_restored_replica_does_not_find_a_workflow_task_by_its_key() -> None:
    log = _Replicas(restore_at=1)
    log(_workflow("wf1", "t-wf", "k"))
    steady, restarted = log(SubmitTasks(now_ms=2, tasks=[_task("t-plain", "k")]))
    assert steady == restarted == [("t-plain", True)]
    assert log.restarted is not None and log.restarted.digest() == log.steady.digest()


def test_evicting_a_workflow_task_keeps_a_plain_tasks_key() -> None:
    log = _Replicas(restore_at=3, limits=StateLimits(max_finished_tasks=0))
    log(SubmitTasks(now_ms=1, tasks=[_task("t-plain", "k")]))
    log(_workflow("wf1", "t-wf", "k"))
    log(CancelWorkflow(now_ms=2, workflow_id="wf1"))  # t-wf finishes and is evicted
    assert "t-wf" not in log.steady.tasks
    steady, restarted = log(SubmitTasks(now_ms=3, tasks=[_task("t-again", "k")]))
    assert steady == restarted == [("t-plain", False)]
