"""The task table: every task (:class:`TaskRows`, finished ones frozen) and what is derived
from tasks alone: counts by status, idempotency keys, the ready queue, the backed-off tasks,
the order in which tasks finished (for eviction) and the running totals.

Like :class:`~agentflow.state.locks.LockTable`, it is pure and self-contained: it reads no
clock (time is ``now_ms``, order is the log ``index``) and changes no other table. What one
task change does to a workflow, a worker or an output tail is the machine's (see
``StateMachine.set_status``) or a command handler's (:mod:`agentflow.state.tasks`).

The events it records go to the list it was given, the machine's, in the order they happen.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from agentflow.state.events import Event, TaskChanged
from agentflow.state.queue import PriorityPolicy, ReadyQueue
from agentflow.state.records import TERMINAL_STATUSES, TaskRecord, TaskStatus, WorkerRecord
from agentflow.state.taskrows import (
    ROW_VERSION,
    RowHead,
    TaskRows,
    pack_task,
    row_head,
    unpack_task,
)

__all__ = ["ROW_VERSION", "RowHead", "TaskTable", "pack_task", "row_head", "unpack_task"]

_RUNNING = (TaskStatus.ASSIGNED, TaskStatus.RUNNING)


class TaskTable(TaskRows):
    """Task id -> record (a mapping, see :class:`TaskRows`) with the indexes over tasks."""

    def __init__(
        self,
        recent: int,
        policy: PriorityPolicy | None = None,
        events: list[Event] | None = None,
    ) -> None:
        super().__init__(recent)
        self.policy = policy or PriorityPolicy()
        self.events: list[Event] = [] if events is None else events
        self.status_counts: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()  # submitted, completed, failed, retried, ...
        self.idempotency: dict[str, str] = {}  # idempotency key -> task id
        self.ready = ReadyQueue()
        self.delayed: list[tuple[int, str]] = []  # (not_before ms, task id), lazily cleaned
        self.finish_order: deque[str] = deque()  # ids as they finished (eviction's order)

    # -- reads ------------------------------------------------------------------------------

    def existing(self, idempotency_key: str | None) -> str | None:
        """The task a submit with ``idempotency_key`` already made, if any."""
        return None if idempotency_key is None else self.idempotency.get(idempotency_key)

    def reserved_by(self, worker: WorkerRecord) -> dict[str, float]:
        """Resources reserved by the attempts a worker holds (derived, so always exact)."""
        reserved: dict[str, float] = {}
        for task_id in worker.running:
            held = self.get(task_id)
            if held is not None:
                for name, amount in held.resources.items():
                    reserved[name] = reserved.get(name, 0.0) + amount
        return reserved

    def is_running(self, task_id: str) -> bool:
        """Is ``task_id`` assigned or running? (A frozen task is finished: not thawed.)"""
        task = self._rows.get(task_id)
        return isinstance(task, TaskRecord) and task.status in _RUNNING

    def next_due_ms(self) -> int | None:
        """When the earliest backed-off task becomes due (for the scheduler's timer)."""
        while self.delayed:
            not_before, task_id = self.delayed[0]
            task = self.get(task_id)
            if task and task.status is TaskStatus.QUEUED and task.not_before == not_before:
                return not_before
            heapq.heappop(self.delayed)
        return None

    # -- changes ----------------------------------------------------------------------------

    def add(self, task: TaskRecord, *, keyed: bool) -> None:
        """A new task, counted as submitted; ``keyed``: its idempotency key finds it again
        (a plain submit's task, never a workflow's: see :meth:`_index`)."""
        self[task.id] = task
        self.status_counts[task.status] += 1
        if keyed and task.idempotency_key is not None:
            self.idempotency[task.idempotency_key] = task.id
        self.totals["submitted"] += 1

    def set_status(self, task: TaskRecord, status: TaskStatus, index: int) -> bool:
        """Move ``task`` to ``status`` (a :class:`TaskChanged`); returns whether it was
        finished before. A task that finishes joins the eviction order."""
        was_terminal = task.status in TERMINAL_STATUSES
        self.status_counts[task.status] -= 1
        self.status_counts[status] += 1
        task.status = status
        self.events.append(TaskChanged(index=index, task_id=task.id, status=status.value))
        if status in TERMINAL_STATUSES:
            self.finish_order.append(task.id)
            self.finished(task.id)
        elif was_terminal:
            self.reopened(task.id)
        return was_terminal

    def enqueue(self, task: TaskRecord, now_ms: int) -> None:
        """Queue ``task`` as of ``now_ms`` (its age counts from then)."""
        task.enqueued_at = now_ms
        key = self.policy.static_key(task.priority, now_ms, task.retries)
        self.ready.push(task.group, task.id, key)

    def requeue(self, task: TaskRecord) -> None:
        """Put ``task`` (back) in the queue at the place its age and priority give it."""
        key = self.policy.static_key(task.priority, task.enqueued_at, task.retries)
        self.ready.push(task.group, task.id, key)

    def unqueue(self, task: TaskRecord) -> None:
        """Take ``task`` out of the ready queue (and of backing off)."""
        self.ready.remove(task.group, task.id)
        task.not_before = 0

    def delay(self, task: TaskRecord, not_before_ms: int) -> None:
        """``task`` waits, backing off, until ``not_before_ms``."""
        task.not_before = not_before_ms
        heapq.heappush(self.delayed, (not_before_ms, task.id))

    def release_due(self, now_ms: int) -> int:
        """Queue every backed-off task due by ``now_ms``; how many were."""
        released = 0
        while self.delayed and self.delayed[0][0] <= now_ms:
            not_before, task_id = heapq.heappop(self.delayed)
            task = self.get(task_id)
            if task is None or task.status is not TaskStatus.QUEUED:
                continue
            if task.not_before != not_before:
                continue
            task.not_before = 0
            self.enqueue(task, now_ms)
            released += 1
        return released

    def evict(self, keep: int, still_read: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
        """Drop the oldest finished tasks beyond ``keep``, yielding each one's id and row as it
        goes. Its idempotency key is forgotten with it. A task whose workflow is still open
        (``still_read(workflow id)``) is kept: the workflow reads it."""
        while len(self.finish_order) > keep:
            old = self.finish_order.popleft()
            row = self.row(old)
            if row is None:
                continue
            task = row_head(row)  # decoded, not built: most evicted tasks are frozen rows
            if task.status not in TERMINAL_STATUSES:
                continue
            if task.workflow_id is not None and still_read(task.workflow_id):
                continue
            del self[old]
            yield old, row
            self.status_counts[task.status] -= 1
            if (
                task.idempotency_key is not None
                and self.idempotency.get(task.idempotency_key) == old
            ):
                del self.idempotency[task.idempotency_key]  # a workflow task's key finds no task

    # -- snapshot ---------------------------------------------------------------------------

    def load_rows(
        self, rows: Iterable[bytes], pushed: dict[str, list[str]] | None = None
    ) -> Iterator[TaskRecord | RowHead]:
        """Add the tasks of a snapshot's rows with their indexes, yielding each as read.
        ``pushed``: the queue's push order (:meth:`ReadyQueue.pushed`), which the queued tasks
        are pushed in again after the rows; without it (a snapshot from before it was kept),
        they are pushed in row order."""
        waiting: list[TaskRecord] = []
        for row in rows:
            task = self.load(row)
            self._index(task, waiting=None if pushed is None else waiting)
            yield task
        if pushed is None:
            return
        for ids in pushed.values():
            for task_id in ids:
                queued = self.get(task_id)
                if queued and queued.status is TaskStatus.QUEUED and not queued.not_before:
                    self.requeue(queued)
        for left in waiting:  # none, unless the snapshot's order missed a queued task
            if left.id not in self.ready:
                self.requeue(left)

    def load_wires(self, wires: Iterable[dict[str, Any]]) -> Iterator[TaskRecord]:
        """As :meth:`load_rows`, for a snapshot from before finished tasks were rows."""
        for wire in wires:
            task = TaskRecord.from_wire(wire)
            self[task.id] = task
            self._index(task)
            yield task

    def load_history(self, finish_order: Iterable[str], totals: dict[str, int]) -> None:
        self.finish_order = deque(finish_order)
        self.totals = Counter(totals)

    def _index(
        self, task: TaskRecord | RowHead, *, waiting: list[TaskRecord] | None = None
    ) -> None:
        """Count and index one task read back; a queued one is pushed onto the ready queue,
        or, with ``waiting``, put there for the caller to push in the snapshot's order."""
        self.status_counts[task.status] += 1
        if task.idempotency_key is not None and task.workflow_id is None:
            self.idempotency[task.idempotency_key] = task.id  # as add(keyed=...) did
        if isinstance(task, TaskRecord) and task.status is TaskStatus.QUEUED:
            if task.not_before:
                heapq.heappush(self.delayed, (task.not_before, task.id))
            elif waiting is not None:
                waiting.append(task)
            else:
                self.requeue(task)
