"""The replicated state machine: ``apply(index, command)`` in log order, snapshot and restore.

``apply`` is deterministic: it reads no clock, random source, network or environment; time is
the command's ``now_ms``. The same log applied to two machines yields the same state (compare
``digest()``). A command that the state forbids is not an exception escaping ``apply``: the
typed :class:`AgentFlowError` is *returned* as the result, so every replica skips it alike.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from agentflow.errors import AgentFlowError
from agentflow.state import lock_ops, message_ops
from agentflow.state import tasks as task_ops
from agentflow.state import workers as worker_ops
from agentflow.state import workflows as workflow_ops
from agentflow.state.commands import (
    AckMessages,
    AcquireLock,
    AssignTasks,
    CancelLockWait,
    CancelTask,
    CancelWorkflow,
    Command,
    ConnectAgent,
    DeregisterWorker,
    DisconnectAgent,
    EndLockSession,
    ExpireLocks,
    ForceReleaseLock,
    MarkWorkersLost,
    RearmLocks,
    RegisterWorker,
    ReleaseDueTasks,
    ReleaseLock,
    RenewLock,
    ReportAttempts,
    RetryWorkflow,
    SendMessage,
    SendMessages,
    SetPriority,
    SetUnschedulable,
    SetWorkerDraining,
    SubmitTasks,
    SubmitWorkflow,
    Subscribe,
    Unsubscribe,
    WorkerDisconnected,
)
from agentflow.state.events import (
    Event,
    LockChanged,
    MessageDelivered,
    ReplyArrived,
    TaskChanged,
    WorkerChanged,
)
from agentflow.state.locks import LockLimits, LockTable
from agentflow.state.messages import MessageLimits, MessageTable
from agentflow.state.output import OutputTail
from agentflow.state.queue import PriorityPolicy, ReadyQueue
from agentflow.state.records import (
    TERMINAL_STATUSES,
    TaskRecord,
    TaskStatus,
    WorkerRecord,
    WorkerState,
    WorkflowRecord,
)

__all__ = ["StateLimits", "StateMachine"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StateLimits:
    """Bounds on what the state machine keeps. Part of the cluster's configuration."""

    output_tail_bytes: int = 512 * 1024  # per stream: stdout + stderr = 1 MiB per task
    max_finished_tasks: int = 200_000  # oldest finished tasks are evicted beyond this
    max_backoff_s: float = 600.0
    max_departed_workers: int = 1_000  # history of deregistered workers kept


_Handler = Callable[["StateMachine", int, Any], Any]

_HANDLERS: dict[type[Command], _Handler] = {
    SubmitTasks: task_ops.submit,
    AssignTasks: task_ops.assign,
    ReportAttempts: task_ops.report,
    CancelTask: task_ops.cancel,
    SetPriority: task_ops.set_priority,
    SetUnschedulable: task_ops.set_unschedulable,
    ReleaseDueTasks: task_ops.release_due,
    RegisterWorker: worker_ops.register,
    WorkerDisconnected: worker_ops.disconnected,
    MarkWorkersLost: worker_ops.mark_lost,
    SetWorkerDraining: worker_ops.set_draining,
    DeregisterWorker: worker_ops.deregister,
    SubmitWorkflow: workflow_ops.submit_workflow,
    CancelWorkflow: workflow_ops.cancel_workflow,
    RetryWorkflow: workflow_ops.retry_workflow,
    AcquireLock: lock_ops.acquire,
    RenewLock: lock_ops.renew,
    ReleaseLock: lock_ops.release,
    ForceReleaseLock: lock_ops.force_release,
    CancelLockWait: lock_ops.cancel_wait,
    EndLockSession: lock_ops.end_session,
    ExpireLocks: lock_ops.expire,
    RearmLocks: lock_ops.rearm,
    ConnectAgent: message_ops.connect,
    DisconnectAgent: message_ops.disconnect,
    Subscribe: message_ops.subscribe,
    Unsubscribe: message_ops.unsubscribe,
    SendMessage: message_ops.send,
    SendMessages: message_ops.send_many,
    AckMessages: message_ops.ack,
}


class StateMachine:
    """Tasks, workers and their indexes, changed only by ``apply``."""

    def __init__(
        self,
        policy: PriorityPolicy | None = None,
        limits: StateLimits | None = None,
        lock_limits: LockLimits | None = None,
        message_limits: MessageLimits | None = None,
    ) -> None:
        self.policy = policy or PriorityPolicy()
        self.limits = limits or StateLimits()
        self.locks = LockTable(lock_limits)
        self.messages = MessageTable(message_limits)
        self.applied_index = 0
        self.tasks: dict[str, TaskRecord] = {}
        self.idempotency: dict[str, str] = {}
        self.workers: dict[str, WorkerRecord] = {}
        self.outputs: dict[str, dict[str, OutputTail]] = {}
        self.ready = ReadyQueue()
        self.delayed: list[tuple[int, str]] = []  # (not_before ms, task id), lazily cleaned
        self.finished: deque[str] = deque()
        self.status_counts: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()  # submitted, completed, failed, retried, ...
        # (command kind, "applied" | "refused"): what this replica applied since it started.
        self.command_counts: Counter[tuple[str, str]] = Counter()
        self.events: list[Event] = []
        self.workflows: dict[str, WorkflowRecord] = {}
        self.workflow_keys: dict[str, str] = {}  # idempotency key -> workflow id
        self.workflow_open: dict[str, int] = {}  # workflow id -> tasks not yet finished
        self.dependents: dict[str, list[str]] = {}  # task id -> tasks waiting on it
        self.settling: deque[str] = deque()  # workflow tasks finished during this command
        self.departed: deque[dict[str, Any]] = deque(maxlen=self.limits.max_departed_workers)

    # -- applying ---------------------------------------------------------------------------

    def apply(self, index: int, command: Command) -> Any:
        """Apply one committed command; return its result (or the error it was refused with)."""
        assert index > self.applied_index, (index, self.applied_index)
        handler = _HANDLERS[type(command)]
        self.applied_index = index
        try:
            result = handler(self, index, command)
        except AgentFlowError as refused:
            result = refused
        outcome = "refused" if isinstance(result, AgentFlowError) else "applied"
        self.command_counts[type(command).__name__, outcome] += 1
        if self.settling:
            workflow_ops.settle(self, index, command.now_ms)
        if self.locks.emitted:
            self.events.extend(
                LockChanged(
                    index=e.index, name=e.name, session=e.session, kind=e.kind.value, token=e.token
                )
                for e in self.locks.take_events()
            )
        if self.messages.delivered or self.messages.replied:
            delivered, replied = self.messages.take_deliveries()
            self.events.extend(
                MessageDelivered(index=index, agent_id=a, cursor=c) for a, c in delivered
            )
            self.events.extend(ReplyArrived(index=index, correlation_id=c) for c in replied)
        return result

    def drain_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    # -- shared helpers for the handlers ----------------------------------------------------

    def set_status(self, task: TaskRecord, status: TaskStatus, index: int) -> None:
        was_terminal = task.status in TERMINAL_STATUSES
        self.status_counts[task.status] -= 1
        self.status_counts[status] += 1
        task.status = status
        self.events.append(TaskChanged(index=index, task_id=task.id, status=status.value))
        terminal = status in TERMINAL_STATUSES
        if task.workflow_id is not None and terminal != was_terminal:
            self.workflow_open[task.workflow_id] += -1 if terminal else 1
            if terminal:
                self.settling.append(task.id)
        if terminal:
            self.finished.append(task.id)
            self._evict_finished()

    def refresh_worker(self, worker: WorkerRecord, index: int) -> None:
        """Recompute a live worker's active/busy state from its free slots."""
        if worker.state in (WorkerState.ACTIVE, WorkerState.BUSY):
            state = WorkerState.BUSY if worker.free_capacity <= 0 else WorkerState.ACTIVE
            if state is not worker.state:
                worker.state = state
                self.events.append(
                    WorkerChanged(index=index, worker_id=worker.id, state=state.value)
                )

    def enqueue(self, task: TaskRecord, now_ms: int) -> None:
        task.enqueued_at = now_ms
        key = self.policy.static_key(task.priority, now_ms, task.retries)
        self.ready.push(task.group, task.id, key)

    def delay(self, task: TaskRecord, not_before_ms: int) -> None:
        task.not_before = not_before_ms
        heapq.heappush(self.delayed, (not_before_ms, task.id))

    def next_due_ms(self) -> int | None:
        """When the earliest backed-off task becomes due (for the scheduler's timer)."""
        while self.delayed:
            not_before, task_id = self.delayed[0]
            task = self.tasks.get(task_id)
            if task and task.status is TaskStatus.QUEUED and task.not_before == not_before:
                return not_before
            heapq.heappop(self.delayed)
        return None

    def output_of(self, task_id: str) -> dict[str, OutputTail]:
        tails = self.outputs.get(task_id)
        if tails is None:
            limit = self.limits.output_tail_bytes
            tails = {"stdout": OutputTail(limit), "stderr": OutputTail(limit)}
            self.outputs[task_id] = tails
        return tails

    def _evict_finished(self) -> None:
        while len(self.finished) > self.limits.max_finished_tasks:
            old = self.finished.popleft()
            task = self.tasks.get(old)
            if task is None or task.status not in TERMINAL_STATUSES:
                continue
            if task.workflow_id is not None and self.workflow_open.get(task.workflow_id, 0) > 0:
                continue  # its workflow still runs and reads it: not evicted
            del self.tasks[old]
            self.outputs.pop(old, None)
            self.status_counts[task.status] -= 1
            if task.idempotency_key is not None:
                self.idempotency.pop(task.idempotency_key, None)

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state as bytes (msgpack), to persist beside ``applied_index``."""
        body = {
            "applied_index": self.applied_index,
            "tasks": [t.to_wire() for t in self.tasks.values()],
            "workers": [w.to_wire() for w in self.workers.values()],
            "outputs": {
                tid: {s: tail.to_wire() for s, tail in tails.items()}
                for tid, tails in self.outputs.items()
            },
            "finished": list(self.finished),
            "totals": dict(self.totals),
            "workflows": [w.to_wire() for w in self.workflows.values()],
            "departed": list(self.departed),
            "locks": self.locks.snapshot(),
            "messages": self.messages.snapshot(),
        }
        packed: bytes = msgpack.packb(body, use_bin_type=True)
        return packed

    def restore(self, data: bytes) -> None:
        body = msgpack.unpackb(data, raw=False, strict_map_key=False)
        self.__init__(  # type: ignore[misc]
            self.policy, self.limits, self.locks.limits, self.messages.limits
        )
        self.applied_index = body["applied_index"]
        for wire in body["tasks"]:
            task = TaskRecord.from_wire(wire)
            self.tasks[task.id] = task
            self.status_counts[task.status] += 1
            if task.idempotency_key is not None:
                self.idempotency[task.idempotency_key] = task.id
            if task.status is TaskStatus.QUEUED:
                if task.not_before:
                    heapq.heappush(self.delayed, (task.not_before, task.id))
                else:
                    key = self.policy.static_key(task.priority, task.enqueued_at, task.retries)
                    self.ready.push(task.group, task.id, key)
        for wire in body["workers"]:
            worker = WorkerRecord.from_wire(wire)
            self.workers[worker.id] = worker
        for tid, tails in body["outputs"].items():
            self.outputs[tid] = {s: OutputTail.from_wire(w) for s, w in tails.items()}
        self.finished = deque(body["finished"])
        self.totals = Counter(body["totals"])
        self.departed.extend(body.get("departed", []))
        if "locks" in body:
            self.locks.restore(body["locks"])
        if "messages" in body:
            self.messages.restore(body["messages"])
        for wire in body.get("workflows", []):
            wf = WorkflowRecord.from_wire(wire)
            self.workflows[wf.id] = wf
            if wf.idempotency_key is not None:
                self.workflow_keys[wf.idempotency_key] = wf.id
            self.workflow_open[wf.id] = 0
        for task in self.tasks.values():
            for dep in task.dependencies:
                self.dependents.setdefault(dep, []).append(task.id)
            if task.workflow_id in self.workflow_open and task.status not in TERMINAL_STATUSES:
                self.workflow_open[task.workflow_id] += 1

    def digest(self) -> str:
        """A hash of the replicated state, equal on replicas that applied the same log."""
        return hashlib.sha256(self.snapshot()).hexdigest()
