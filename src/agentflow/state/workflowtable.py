"""The workflow table: workflows by id, their idempotency keys, how many of each one's tasks
are not finished, which tasks wait on which, and the workflow tasks that finished during the
command being applied (settled at its end, see :func:`agentflow.state.workflows.settle`).

Pure and self-contained like :class:`~agentflow.state.locks.LockTable`: the tasks themselves
live in the task table; this one holds only ids of them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from agentflow.state.events import Event, WorkflowChanged
from agentflow.state.records import TERMINAL_STATUSES, TaskRecord, WorkflowRecord
from agentflow.state.taskrows import RowHead

__all__ = ["WorkflowTable"]


class WorkflowTable(dict[str, WorkflowRecord]):
    """Workflow id -> record, in submission order, with the indexes workflows need. A
    ``dict`` itself (reads cost no Python call); changed only through the methods below."""

    def __init__(self, events: list[Event] | None = None) -> None:
        super().__init__()
        self.events: list[Event] = [] if events is None else events
        self.by_key: dict[str, str] = {}  # idempotency key -> workflow id
        self.open: dict[str, int] = {}  # workflow id -> tasks not yet finished
        self.dependents: dict[str, list[str]] = {}  # task id -> tasks waiting on it
        self.settling: deque[str] = deque()  # workflow tasks finished during this command

    # -- reads ------------------------------------------------------------------------------

    def existing(self, idempotency_key: str | None) -> str | None:
        """The workflow a submit with ``idempotency_key`` already made, if any."""
        return None if idempotency_key is None else self.by_key.get(idempotency_key)

    def still_open(self, workflow_id: str) -> bool:
        """Does the workflow still have unfinished tasks (that read the finished ones)?"""
        return self.open.get(workflow_id, 0) > 0

    def waiting_on(self, task_id: str) -> list[str]:
        """The tasks that depend on ``task_id``."""
        return self.dependents.get(task_id, [])

    # -- changes ----------------------------------------------------------------------------

    def add(self, wf: WorkflowRecord, tasks: int) -> None:
        """A new workflow of ``tasks`` tasks (added to the task table by the caller)."""
        self[wf.id] = wf
        self.open[wf.id] = tasks
        if wf.idempotency_key is not None:
            self.by_key[wf.idempotency_key] = wf.id

    def link(self, task: TaskRecord | RowHead) -> None:
        """Record what ``task`` waits on."""
        for dep in task.dependencies:
            self.dependents.setdefault(dep, []).append(task.id)

    def task_finished(self, task: TaskRecord, finished: bool) -> None:
        """A task of a workflow finished (``finished``) or was reopened: count it; a finished
        one is settled at the end of the command."""
        assert task.workflow_id is not None, task.id
        self.open[task.workflow_id] += -1 if finished else 1
        if finished:
            self.settling.append(task.id)

    def next_settled(self) -> str | None:
        """The next task finished during this command whose dependents are still to settle."""
        return self.settling.popleft() if self.settling else None

    def changed(self, wf: WorkflowRecord, index: int) -> None:
        """Record that ``wf``'s status changed (a :class:`WorkflowChanged`)."""
        self.events.append(WorkflowChanged(index=index, workflow_id=wf.id, status=wf.status.value))

    # -- snapshot ---------------------------------------------------------------------------

    def to_wire(self) -> list[dict[str, Any]]:
        return [w.to_wire() for w in self.values()]

    def restore(self, wires: Iterable[dict[str, Any]]) -> None:
        """Add the workflows of a snapshot; their open counts follow from their tasks
        (:meth:`restored_task`)."""
        for wire in wires:
            wf = WorkflowRecord.from_wire(wire)
            self[wf.id] = wf
            if wf.idempotency_key is not None:
                self.by_key[wf.idempotency_key] = wf.id
            self.open[wf.id] = 0

    def restored_task(self, task: TaskRecord | RowHead) -> None:
        """Index one task read back from a snapshot (after :meth:`restore`)."""
        self.link(task)
        if task.workflow_id in self.open and task.status not in TERMINAL_STATUSES:
            self.open[task.workflow_id] += 1
