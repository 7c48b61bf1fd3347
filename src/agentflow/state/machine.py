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
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgpack

from agentflow.errors import AgentFlowError, ValidationError
from agentflow.state import lock_ops, message_ops, schedule_ops, token_ops
from agentflow.state import tasks as task_ops
from agentflow.state import workers as worker_ops
from agentflow.state import workflows as workflow_ops
from agentflow.state.commands import Command, CommandDecodeError, decode_command
from agentflow.state.events import (
    EntryRejected,
    Event,
    LockChanged,
    MessageDelivered,
    ReplyArrived,
    TaskEvicted,
)
from agentflow.state.handlers import Handler, route
from agentflow.state.locks import LockLimits, LockTable
from agentflow.state.messages import MessageLimits, MessageTable
from agentflow.state.output import OutputTable
from agentflow.state.placement import INLINE_MAX_WITHDRAWALS, plan_inline, plan_withdrawal
from agentflow.state.queue import PriorityPolicy
from agentflow.state.records import TERMINAL_STATUSES, TaskRecord, TaskStatus
from agentflow.state.rejected import RejectedEntries
from agentflow.state.schedules import ScheduleLimits, ScheduleTable
from agentflow.state.tasktable import RowHead, TaskTable
from agentflow.state.tokens import TokenTable
from agentflow.state.workertable import WorkerTable
from agentflow.state.workflowtable import WorkflowTable

__all__ = ["HANDLERS", "SNAPSHOT_ZLIB_LEVEL", "StateLimits", "StateMachine"]

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


# Every command kind to its one handler, declared by the module of the table it is about.
HANDLERS: dict[type[Command], Handler] = route(
    task_ops.HANDLERS,
    worker_ops.HANDLERS,
    workflow_ops.HANDLERS,
    lock_ops.HANDLERS,
    message_ops.HANDLERS,
    token_ops.HANDLERS,
    schedule_ops.HANDLERS,
)


class StateMachine:
    """The replicated state as tables, changed only by ``apply``.

    Each table is self-contained (:class:`TaskTable`, :class:`WorkflowTable`,
    :class:`WorkerTable`, :class:`LockTable`, :class:`MessageTable`, :class:`TokenTable`,
    :class:`ScheduleTable`, :class:`OutputTable`); the machine routes each command to its
    handler (:data:`HANDLERS`) and carries the few effects that cross tables: a task's change
    of status (its workflow, its output, eviction), placement inline with an entry, and the
    tables' events.
    """

    def __init__(
        self,
        policy: PriorityPolicy | None = None,
        limits: StateLimits | None = None,
        lock_limits: LockLimits | None = None,
        message_limits: MessageLimits | None = None,
        schedule_limits: ScheduleLimits | None = None,
    ) -> None:
        self.policy = policy or PriorityPolicy()
        self.limits = limits or StateLimits()
        self.applied_index = 0
        self.events: list[Event] = []  # every table records into this one list, in order
        self.tasks = TaskTable(self.limits.live_finished_tasks, self.policy, self.events)
        self.workflows = WorkflowTable(self.events)
        self.workers = WorkerTable(self.limits.max_departed_workers, self.events)
        self.locks = LockTable(lock_limits)
        self.messages = MessageTable(message_limits)
        self.tokens = TokenTable()
        self.schedules = ScheduleTable(schedule_limits)
        self.outputs = OutputTable(self.limits.output_tail_bytes, self.limits.output_retained_bytes)
        # (command kind, "applied" | "refused"): what this replica applied since it started.
        self.command_counts: Counter[tuple[str, str]] = Counter()
        self.rejected = RejectedEntries(self.limits.max_rejected_kept)

    # -- reads that cross tables ----------------------------------------------------------

    def agent_live(self, agent_id: str, now_ms: int) -> bool:
        """Is the agent live: its named session lasts, or it is a task that runs? (It reads
        the message and the task tables.)"""
        return self.messages.session_live(agent_id, now_ms) or self.tasks.is_running(agent_id)

    def next_due_ms(self) -> int | None:
        """When the earliest backed-off task becomes due (for the scheduler's timer)."""
        return self.tasks.next_due_ms()

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
        handler = HANDLERS.get(type(command))
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
        if self.workflows.settling:
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
                    index=e.index,
                    name=e.name,
                    session=e.session,
                    kind=e.kind.value,
                    token=e.token,
                    at_ms=command.now_ms,
                )
                for e in self.locks.take_events()
            )
        if self.messages.delivered or self.messages.replied:
            delivered, replied = self.messages.take_deliveries()
            self.events.extend(
                MessageDelivered(index=index, agent_id=a, cursor=c, at_ms=command.now_ms)
                for a, c in delivered
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
        events = self.events[:]  # the tables hold this very list: emptied, not replaced
        self.events.clear()
        return events

    # -- effects that cross tables ---------------------------------------------------------

    def set_status(self, task: TaskRecord, status: TaskStatus, index: int) -> None:
        """Move ``task`` to ``status``; a task that finishes (or is reopened) counts for its
        workflow and its output tail, and may evict the oldest finished tasks."""
        was_terminal = self.tasks.set_status(task, status, index)
        terminal = status in TERMINAL_STATUSES
        if task.workflow_id is not None and terminal != was_terminal:
            self.workflows.task_finished(task, terminal)
        if terminal:
            self.outputs.finished(task.id)
            self._evict_finished()
        elif was_terminal:
            self.outputs.reopened(task.id)

    def _evict_finished(self) -> None:
        """Drop the oldest finished tasks beyond ``max_finished_tasks``, each with a
        :class:`TaskEvicted` event carrying its row (a master keeps those on disk), and its
        output. A task whose workflow is still open when its turn comes is kept."""
        keep = self.limits.max_finished_tasks
        if len(self.tasks.finish_order) <= keep:
            return
        for task_id, row in self.tasks.evict(keep, self.workflows.still_open):
            self.events.append(TaskEvicted(index=self.applied_index, task_id=task_id, row=row))
            self.outputs.remove(task_id)

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state as bytes (zlib of msgpack), to persist beside ``applied_index``.

        Task rows repeat most of their bytes from one task to the next, so the image that
        state.db, the Raft storage and a lagging follower hold is several times smaller."""
        return zlib.compress(self._packed(), SNAPSHOT_ZLIB_LEVEL)

    def _packed(self) -> bytes:
        body = {
            "applied_index": self.applied_index,
            "task_rows": self.tasks.rows(),
            "workers": self.workers.to_wire(),
            "output_table": self.outputs.snapshot(),
            "finished": list(self.tasks.finish_order),
            "totals": dict(self.tasks.totals),
            "workflows": self.workflows.to_wire(),
            "departed": list(self.workers.departed),
            "locks": self.locks.snapshot(),
            "messages": self.messages.snapshot(),
            "tokens": self.tokens.snapshot(),
            "rejected": self.rejected.to_wire(),
            "ready": self.tasks.ready.pushed(),  # ties between equal keys go in this order
        }
        if self.schedules:  # absent when there are none: the image of a state without is as it was
            body["schedules"] = self.schedules.snapshot()
        packed: bytes = msgpack.packb(body, use_bin_type=True)
        return packed

    def restore(self, data: bytes) -> None:
        if data[:1] == _ZLIB_FIRST_BYTE:  # else msgpack (a map) from before compression
            data = zlib.decompress(data)
        body = msgpack.unpackb(data, raw=False, strict_map_key=False)
        self.__init__(  # type: ignore[misc]
            self.policy, self.limits, self.locks.limits, self.messages.limits, self.schedules.limits
        )
        self.applied_index = body["applied_index"]
        self.workflows.restore(body.get("workflows", []))
        tasks: Iterable[TaskRecord | RowHead]
        if "task_rows" in body:
            tasks = self.tasks.load_rows(body["task_rows"], body.get("ready"))
        else:  # a snapshot from before finished tasks were kept as rows
            tasks = self.tasks.load_wires(body["tasks"])
        for task in tasks:
            self.workflows.restored_task(task)
        self.workers.restore(body["workers"], body.get("departed", []))
        if "output_table" in body:
            self.outputs.restore(body["output_table"])
        else:  # a snapshot from before the overall budget: no task's output was evicted
            self.outputs.restore({"tails": body["outputs"], "finished": body["finished"]})
        self.tasks.load_history(body["finished"], body["totals"])
        if "locks" in body:
            self.locks.restore(body["locks"])
        if "messages" in body:
            self.messages.restore(body["messages"])
        self.tokens.restore(body.get("tokens", []))
        if "rejected" in body:
            self.rejected.restore(body["rejected"])
        self.schedules.restore(body.get("schedules", []))
        self.tasks.compact()

    def digest(self) -> str:
        """A hash of the replicated state, equal on replicas that applied the same log."""
        return hashlib.sha256(self._packed()).hexdigest()  # not of zlib's output: it may vary
