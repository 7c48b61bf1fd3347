"""The replicated state machine: ``apply(index, command)`` in log order, snapshot and restore.

``apply`` is deterministic: it reads no clock, random source, network or environment; time is
the command's ``now_ms``. The same log applied to two machines yields the same state (compare
``digest()``). A command that the state forbids is not an exception escaping ``apply``: the
typed :class:`AgentFlowError` is *returned* as the result, so every replica skips it alike.

Committed entries are data from outside this process (a peer, the disk): ``apply_entry`` decodes
them, and an entry that cannot be decoded, or whose handler fails with anything but an
assertion, is *rejected*: skipped, recorded (:mod:`agentflow.state.rejected`, an
:class:`EntryRejected` event) and answered with a :class:`ValidationError`. The decision reads
only the entry's bytes and the state, so every replica makes the same one. Handlers validate
before they change anything; one that fails midway leaves the same partial change on every
replica (it ran the same code on the same state), so replicas still agree. A failed assertion,
``MemoryError`` or ``RecursionError`` is not a verdict on the entry: it still crashes.
"""

from __future__ import annotations

import hashlib
import heapq
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgpack

from agentflow.errors import AgentFlowError, ValidationError
from agentflow.state import lock_ops, message_ops, token_ops
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
    CommandDecodeError,
    ConnectAgent,
    CreateToken,
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
    RevokeToken,
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
    decode_command,
)
from agentflow.state.events import (
    EntryRejected,
    Event,
    LockChanged,
    MessageDelivered,
    ReplyArrived,
    TaskChanged,
    TaskEvicted,
    WorkerChanged,
)
from agentflow.state.locks import LockLimits, LockTable
from agentflow.state.messages import MessageLimits, MessageTable
from agentflow.state.output import OutputTable
from agentflow.state.placement import INLINE_MAX_WITHDRAWALS, plan_inline, plan_withdrawal
from agentflow.state.queue import PriorityPolicy, ReadyQueue
from agentflow.state.records import (
    TERMINAL_STATUSES,
    TaskRecord,
    TaskStatus,
    WorkerRecord,
    WorkerState,
    WorkflowRecord,
)
from agentflow.state.rejected import RejectedEntries
from agentflow.state.tasktable import RowHead, TaskTable, row_head
from agentflow.state.tokens import TokenTable

__all__ = ["SNAPSHOT_ZLIB_LEVEL", "StateLimits", "StateMachine"]

SNAPSHOT_ZLIB_LEVEL = 1  # fastest: most of the gain (rows of similar tasks) comes at level 1
_ZLIB_FIRST_BYTE = b"\x78"  # a zlib stream's CMF byte (deflate, 32 KiB window)


@dataclass(frozen=True, slots=True, kw_only=True)
class StateLimits:
    """Bounds on what the state machine keeps. Part of the cluster's configuration."""

    output_tail_bytes: int = 512 * 1024  # per stream: stdout + stderr = 1 MiB per task
    output_retained_bytes: int = 256 << 20  # all tasks' tails; the first finished are evicted
    max_finished_tasks: int = 200_000  # oldest finished tasks are evicted beyond this
    live_finished_tasks: int = 1_000  # newest finished tasks kept as records; older are frozen
    max_backoff_s: float = 600.0
    max_departed_workers: int = 1_000  # history of deregistered workers kept
    max_rejected_kept: int = 20  # rejected log entries listed for operators (all are counted)


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
    CreateToken: token_ops.create,
    RevokeToken: token_ops.revoke,
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
        self.tokens = TokenTable()
        self.applied_index = 0
        self.tasks = TaskTable(self.limits.live_finished_tasks)
        self.idempotency: dict[str, str] = {}
        self.workers: dict[str, WorkerRecord] = {}
        self.outputs = OutputTable(self.limits.output_tail_bytes, self.limits.output_retained_bytes)
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
        self.rejected = RejectedEntries(self.limits.max_rejected_kept)

    # -- applying ---------------------------------------------------------------------------

    def apply_entry(self, index: int, data: bytes) -> Any:
        """Decode and apply the committed entry ``data``; an undecodable one is rejected."""
        try:
            command = decode_command(data)
        except CommandDecodeError as exc:
            assert index > self.applied_index, (index, self.applied_index)
            self.applied_index = index
            return self.reject(index, f"undecodable: {exc}")
        return self.apply(index, command)

    def reject(self, index: int, reason: str) -> ValidationError:
        """Record the entry at ``index`` as skipped; the error its proposer gets."""
        entry = self.rejected.add(index, reason)
        self.events.append(EntryRejected(index=index, reason=entry.reason))
        return ValidationError(
            f"the command at log index {index} was rejected: {entry.reason}", index=index
        )

    def apply(self, index: int, command: Command) -> Any:
        """Apply one committed command; return its result (or the error it was refused with)."""
        assert index > self.applied_index, (index, self.applied_index)
        handler = _HANDLERS.get(type(command))
        assert handler is not None, type(command)  # decode_command only makes known commands
        self.applied_index = index
        try:
            result = handler(self, index, command)
        except AgentFlowError as refused:
            result = refused
        except (AssertionError, MemoryError, RecursionError):
            raise  # a broken invariant or a node's own limit: not a verdict on the entry
        except Exception as exc:  # a data error the handler did not foresee: the same everywhere
            result = self.reject(index, f"{type(command).__name__}: {type(exc).__name__}: {exc}")
        outcome = "refused" if isinstance(result, AgentFlowError) else "applied"
        self.command_counts[type(command).__name__, outcome] += 1
        if self.settling:
            workflow_ops.settle(self, index, command.now_ms)
        if getattr(command, "place", False):
            try:
                self.place(index, command.now_ms)
            except (AssertionError, MemoryError, RecursionError):
                raise
            except Exception as exc:  # as for a handler: the same on every replica, recorded
                self.reject(index, f"placing inline: {type(exc).__name__}: {exc}")
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
        self.tasks.compact()
        return result

    def place(self, index: int, now_ms: int) -> list[str]:
        """Placement inline with the entry at ``index``: what it queued or freed is assigned in
        that same entry, by the same policy as the scheduler's pass (pure, so every replica
        assigns alike). A waiting task more urgent than an attempt queued, unstarted, on a
        worker then takes that attempt's place (``plan_withdrawal``). Runs after the command
        and the workflow settling it caused, whether the command was refused or not (a
        refusal may have changed state halfway; see above)."""
        assigned = task_ops.assign_pairs(self, index, now_ms, plan_inline(self))
        for _ in range(INLINE_MAX_WITHDRAWALS):
            swap = plan_withdrawal(self, index)
            if swap is None:
                break
            task_ops.withdraw(self, index, now_ms, swap.withdrawn)
            assigned += task_ops.assign_pairs(self, index, now_ms, [(swap.task_id, swap.worker_id)])
        return assigned

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
            self.tasks.finished(task.id)
            self.outputs.finished(task.id)
            self._evict_finished()
        elif was_terminal:
            self.tasks.reopened(task.id)
            self.outputs.reopened(task.id)

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

    def _evict_finished(self) -> None:
        """Drop the oldest finished tasks beyond ``max_finished_tasks``, each with a
        :class:`TaskEvicted` event carrying its row (a master keeps those on disk). Its
        idempotency key is forgotten with it. A task whose workflow is still open when its
        turn comes is kept (the workflow reads it)."""
        while len(self.finished) > self.limits.max_finished_tasks:
            old = self.finished.popleft()
            row = self.tasks.row(old)
            if row is None:
                continue
            task = row_head(row)  # decoded, not built: most evicted tasks are frozen rows
            if task.status not in TERMINAL_STATUSES:
                continue
            if task.workflow_id is not None and self.workflow_open.get(task.workflow_id, 0) > 0:
                continue  # its workflow still runs and reads it: not evicted
            del self.tasks[old]
            self.events.append(TaskEvicted(index=self.applied_index, task_id=old, row=row))
            self.outputs.remove(old)
            self.status_counts[task.status] -= 1
            if task.idempotency_key is not None:
                self.idempotency.pop(task.idempotency_key, None)

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state as bytes (zlib of msgpack), to persist beside ``applied_index``.

        Task rows repeat most of their bytes from one task to the next, so the image that
        state.db, the Raft storage and a lagging follower hold is several times smaller."""
        return zlib.compress(self._packed(ready_order=True), SNAPSHOT_ZLIB_LEVEL)

    def _packed(self, *, ready_order: bool = False) -> bytes:
        body = {
            "applied_index": self.applied_index,
            "task_rows": self.tasks.rows(),
            "workers": [w.to_wire() for w in self.workers.values()],
            "output_table": self.outputs.snapshot(),
            "finished": list(self.finished),
            "totals": dict(self.totals),
            "workflows": [w.to_wire() for w in self.workflows.values()],
            "departed": list(self.departed),
            "locks": self.locks.snapshot(),
            "messages": self.messages.snapshot(),
            "tokens": self.tokens.snapshot(),
            "rejected": self.rejected.to_wire(),
        }
        if ready_order:  # in the snapshot, not the digest (kept as it was)
            body["ready_order"] = self.ready.order()
        packed: bytes = msgpack.packb(body, use_bin_type=True)
        return packed

    def restore(self, data: bytes) -> None:
        if data[:1] == _ZLIB_FIRST_BYTE:  # else msgpack (a map) from before compression
            data = zlib.decompress(data)
        body = msgpack.unpackb(data, raw=False, strict_map_key=False)
        self.__init__(  # type: ignore[misc]
            self.policy, self.limits, self.locks.limits, self.messages.limits
        )
        self.applied_index = body["applied_index"]
        for wire in body.get("workflows", []):
            wf = WorkflowRecord.from_wire(wire)
            self.workflows[wf.id] = wf
            if wf.idempotency_key is not None:
                self.workflow_keys[wf.idempotency_key] = wf.id
            self.workflow_open[wf.id] = 0
        tasks: Iterable[TaskRecord | RowHead]
        if "task_rows" in body:
            tasks = (self.tasks.load(row) for row in body["task_rows"])
        else:  # a snapshot from before finished tasks were kept as rows
            tasks = (self._load_wire(wire) for wire in body["tasks"])
        for task in tasks:
            self._index_restored(task)
        self._restore_ready_order(body.get("ready_order", []))
        for wire in body["workers"]:
            worker = WorkerRecord.from_wire(wire)
            self.workers[worker.id] = worker
        if "output_table" in body:
            self.outputs.restore(body["output_table"])
        else:  # a snapshot from before the overall budget: no task's output was evicted
            self.outputs.restore({"tails": body["outputs"], "finished": body["finished"]})
        self.finished = deque(body["finished"])
        self.totals = Counter(body["totals"])
        self.departed.extend(body.get("departed", []))
        if "locks" in body:
            self.locks.restore(body["locks"])
        if "messages" in body:
            self.messages.restore(body["messages"])
        self.tokens.restore(body.get("tokens", []))
        if "rejected" in body:
            self.rejected.restore(body["rejected"])
        self.tasks.compact()

    def _restore_ready_order(self, order: list[tuple[str, list[str]]]) -> None:
        """Push the queued tasks again in the order the snapshot's queue had them: ties among
        equal keys go by push order, so a restored replica places as the others do. (A
        snapshot from before it carried the order keeps the table's order.)"""
        for group, task_ids in order:
            for task_id in task_ids:
                task = self.tasks.get(task_id)
                if task is not None and task.status is TaskStatus.QUEUED and not task.not_before:
                    key = self.policy.static_key(task.priority, task.enqueued_at, task.retries)
                    self.ready.push(group, task_id, key)

    def _load_wire(self, wire: dict[str, Any]) -> TaskRecord:
        task = TaskRecord.from_wire(wire)
        self.tasks[task.id] = task
        return task

    def _index_restored(self, task: TaskRecord | RowHead) -> None:
        """Rebuild the derived indexes for one task read back from a snapshot."""
        self.status_counts[task.status] += 1
        if task.idempotency_key is not None:
            self.idempotency[task.idempotency_key] = task.id
        if isinstance(task, TaskRecord) and task.status is TaskStatus.QUEUED:
            if task.not_before:
                heapq.heappush(self.delayed, (task.not_before, task.id))
            else:
                key = self.policy.static_key(task.priority, task.enqueued_at, task.retries)
                self.ready.push(task.group, task.id, key)
        for dep in task.dependencies:
            self.dependents.setdefault(dep, []).append(task.id)
        if task.workflow_id in self.workflow_open and task.status not in TERMINAL_STATUSES:
            self.workflow_open[task.workflow_id] += 1

    def digest(self) -> str:
        """A hash of the replicated state, equal on replicas that applied the same log."""
        return hashlib.sha256(self._packed()).hexdigest()  # not of zlib's output: it may vary
