"""Events: what ``apply`` tells the shell happened, in past tense.

The state machine appends events while applying; the shell drains them after each batch to wake
waiters, push assignments and cancellations to worker sessions and feed the event stream. Events
are facts about applied state, identical on every replica.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "AttemptWithdrawn",
    "CancelRequested",
    "EntryRejected",
    "Event",
    "LockChanged",
    "MessageDelivered",
    "OutputAppended",
    "ReplyArrived",
    "StateRestored",
    "TaskAssigned",
    "TaskChanged",
    "TaskEvicted",
    "TasksQueued",
    "WorkerChanged",
    "WorkflowChanged",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    index: int  # log index of the command that caused it


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskChanged(Event):
    task_id: str
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEvicted(Event):
    """A finished task left the state (beyond ``max_finished_tasks``): ``row`` is its packed
    row, the bytes :meth:`TaskTable.rows` gave for it, for a master's history on disk."""

    task_id: str
    row: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class TasksQueued(Event):
    """New tasks entered the ready queue (one event per submit, however many tasks)."""

    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskAssigned(Event):
    task_id: str
    worker_id: str
    fencing_token: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptWithdrawn(Event):
    """A queued attempt the master took back from its worker (for more urgent work): the
    worker drops it unstarted, or kills it if it had started; its task is queued again."""

    task_id: str
    worker_id: str
    fencing_token: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRequested(Event):
    task_id: str
    worker_id: str
    fencing_token: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputAppended(Event):
    task_id: str
    stream: str
    data: bytes
    end: int = 0  # the stream's byte count once ``data`` is appended: its absolute offset


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowChanged(Event):
    workflow_id: str
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerChanged(Event):
    worker_id: str
    state: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LockChanged(Event):
    """One lock event: granted, released, expired, forced, waiting or wait-ended."""

    name: str
    session: str
    kind: str
    token: int | None = None
    # The applied command's time (its ``now_ms``), for the SQL store's history tables. Left out
    # of repr: tests/state/test_tables_golden.py hashes events' reprs from before it existed.
    at_ms: int = field(default=0, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageDelivered(Event):
    """A message entered ``agent_id``'s inbox at ``cursor``."""

    agent_id: str
    cursor: int
    at_ms: int = field(default=0, repr=False)  # as LockChanged's


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyArrived(Event):
    """The reply to the pending request ``correlation_id`` arrived in time."""

    correlation_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryRejected(Event):
    """The committed entry at ``index`` was skipped: it could not be decoded or applied."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StateRestored(Event):
    """Not from ``apply``: the shell installed a snapshot, so the state jumped to ``index``
    without the events of the entries in between (a follower far behind its leader)."""
