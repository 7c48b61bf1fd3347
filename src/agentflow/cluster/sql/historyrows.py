"""What the history tables receive, made from the events of applied entries.

Two halves, so the event loop does only what needs the state machine: :func:`collect` (on the
loop, in the log's event sink) reads what the events point at while the machine still holds it
(a finished task's packed row, an attempt's fields, a workflow's, a delivered message's) into
:class:`Item` values; :func:`table_rows` (on the history's writer thread) turns a batch of items
into the rows of each table, unpacking task rows there.

An item carries the log index of the entry whose state it shows; items of one call come out in
index order, so a prefix of what is pending holds every item up to some index.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from agentflow.state import StateMachine
from agentflow.state.events import (
    AttemptWithdrawn,
    CancelRequested,
    Event,
    LockChanged,
    MessageDelivered,
    TaskAssigned,
    TaskChanged,
    TaskEvicted,
    WorkflowChanged,
)
from agentflow.state.messages import Message
from agentflow.state.records import TERMINAL_STATUSES, Attempt, TaskRecord
from agentflow.state.taskrows import pack_task, unpack_task

__all__ = ["Item", "TableRows", "collect", "table_rows"]

Kind = Literal["task", "evicted", "attempt", "workflow", "lock", "message"]

_KEY_CHARS = 255  # VARCHAR(255) columns
_TASK_EVENTS = (TaskChanged, TaskAssigned, AttemptWithdrawn, CancelRequested)


@dataclass(frozen=True, slots=True)
class Item:
    """One row to write: ``task``/``evicted`` data is (task id, packed row); the others' is
    the row of their table, in its columns' order."""

    index: int
    kind: Kind
    data: tuple[Any, ...]


@dataclass(slots=True)
class TableRows:
    """A batch of items as the rows of each table."""

    tasks: list[tuple[Any, ...]] = field(default_factory=list)
    attempts: list[tuple[Any, ...]] = field(default_factory=list)
    workflows: list[tuple[Any, ...]] = field(default_factory=list)
    locks: list[tuple[Any, ...]] = field(default_factory=list)
    messages: list[tuple[Any, ...]] = field(default_factory=list)


def cut(text: str | None, chars: int = _KEY_CHARS) -> str | None:
    return None if text is None else text[:chars]


# -- on the loop ----------------------------------------------------------------------------


def collect(events: list[Event], machine: StateMachine) -> list[Item]:
    """The items the ``events`` of one applied batch give, read from ``machine`` as it is
    right after that batch."""
    items: list[Item] = []
    touched: dict[str, int] = {}  # task id -> the last index that changed it
    workflows: dict[str, int] = {}
    evicted: set[str] = set()
    positions: Counter[tuple[str, int]] = Counter()  # events of one entry, per table
    for event in events:
        if isinstance(event, _TASK_EVENTS):
            touched[event.task_id] = event.index
        elif isinstance(event, TaskEvicted):
            evicted.add(event.task_id)
            items.append(Item(event.index, "evicted", (event.task_id, event.row)))
        elif isinstance(event, WorkflowChanged):
            workflows[event.workflow_id] = event.index
        elif isinstance(event, LockChanged):
            pos = _next(positions, "lock", event.index)
            items.append(Item(event.index, "lock", _lock_row(event, pos)))
        elif isinstance(event, MessageDelivered):
            pos = _next(positions, "message", event.index)
            items.append(Item(event.index, "message", _message_row(event, pos, machine)))
    for task_id, index in touched.items():
        if task_id not in evicted:
            items.extend(_task_items(machine, task_id, index))
    for workflow_id, index in workflows.items():
        wf = machine.workflows.get(workflow_id)
        if wf is not None:
            done = len(wf.task_ids) - machine.workflows.open.get(workflow_id, 0)
            row = (cut(wf.id), cut(wf.name), wf.status.value, wf.created_at, wf.finished_at,
                   wf.runs, len(wf.task_ids), done, index)  # fmt: skip
            items.append(Item(index, "workflow", row))
    items.sort(key=lambda item: item.index)  # stable: an entry's events keep their order
    return items


def _next(positions: Counter[tuple[str, int]], table: str, index: int) -> int:
    pos = positions[table, index]
    positions[table, index] = pos + 1
    return pos


def _task_items(machine: StateMachine, task_id: str, index: int) -> list[Item]:
    """A finished task's whole row (its attempts follow from it on the writer's thread); an
    unfinished one's latest attempt."""
    task = machine.tasks.peek(task_id)
    if task is None:
        return []
    if task.status in TERMINAL_STATUSES:
        return [Item(index, "task", (task_id, pack_task(task)))]
    if task.attempts:
        return [Item(index, "attempt", _attempt_row(task_id, task.attempts[-1], index))]
    return []


def _lock_row(event: LockChanged, pos: int) -> tuple[Any, ...]:
    return (event.index, pos, event.at_ms, cut(event.name), cut(event.session), event.kind,
            event.token)  # fmt: skip


def _message_row(event: MessageDelivered, pos: int, machine: StateMachine) -> tuple[Any, ...]:
    """The delivery and, while the inbox still holds it, the message's own fields."""
    message = _delivered(machine, event.agent_id, event.cursor)
    head: tuple[Any, ...] = (event.index, pos, event.at_ms, cut(event.agent_id), event.cursor)
    if message is None:
        return (*head, None, None, None, None, None)
    return (*head, cut(message.id), cut(message.sender), cut(message.type, 128),
            cut(message.correlation_id), message.size)  # fmt: skip


def _delivered(machine: StateMachine, agent_id: str, cursor: int) -> Message | None:
    box = machine.messages.agents.get(agent_id)
    if box is None or not box.inbox:
        return None
    at = cursor - box.inbox[0][0]  # cursors in an inbox are consecutive
    if 0 <= at < len(box.inbox) and box.inbox[at][0] == cursor:
        return box.inbox[at][1]
    return None


# -- on the writer's thread -----------------------------------------------------------------


def table_rows(items: Iterable[Item]) -> TableRows:
    """The rows of each table for ``items``."""
    out = TableRows()
    for item in items:
        if item.kind in ("task", "evicted"):
            row = item.data[1]
            task = unpack_task(row)
            evicted = item.index if item.kind == "evicted" else None
            out.tasks.append(_task_row(task, row, item.index, evicted))
            out.attempts.extend(_attempt_row(task.id, a, item.index) for a in task.attempts)
        elif item.kind == "attempt":
            out.attempts.append(item.data)
        elif item.kind == "workflow":
            out.workflows.append(item.data)
        elif item.kind == "lock":
            out.locks.append(item.data)
        else:
            out.messages.append(item.data)
    return out


def _task_row(task: TaskRecord, row: bytes, index: int, evicted: int | None) -> tuple[Any, ...]:
    last = task.attempts[-1] if task.attempts else None
    return (
        cut(task.id), cut(task.workflow_id), task.status.value, cut(task.group),
        task.priority.value, cut(task.title, 1024) or "", cut(_command(task), 4096),
        task.created_at, task.started_at, task.finished_at or task.created_at, task.exit_code,
        len(task.attempts), cut(last.worker_id) if last else cut(task.worker_id),
        cut(task.reason, 1024), index, evicted, row,
    )  # fmt: skip


def _command(task: TaskRecord) -> str | None:
    """What the task runs, as one line of text for reports."""
    spec = task.spec
    if spec.command is not None:
        return spec.command
    if spec.agent is not None:
        return f"agent {spec.agent}"
    if spec.function is not None:
        return f"function {spec.function}"
    if spec.args is not None:
        return " ".join(str(a) for a in spec.args)
    return None


def _attempt_row(task_id: str, attempt: Attempt, index: int) -> tuple[Any, ...]:
    return (
        cut(task_id), attempt.number, attempt.fencing_token, cut(attempt.worker_id),
        attempt.assigned_at, attempt.started_at, attempt.finished_at, attempt.status,
        attempt.exit_code, cut(attempt.reason, 1024), index,
    )  # fmt: skip
