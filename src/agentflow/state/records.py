"""Records held by the replicated state machine: tasks, attempts, workers.

Records are plain slotted dataclasses mutated only by ``apply``; every field is a value that
survives a msgpack round trip, so a snapshot is ``to_wire`` of each record.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any, Self

__all__ = [
    "AUTO_QUEUE",
    "OUTCOME_STATUSES",
    "QUEUE_COVER_MS",
    "QUEUE_PER_SLOT_MAX",
    "TERMINAL_STATUSES",
    "Attempt",
    "Drain",
    "Priority",
    "TaskRecord",
    "TaskSpec",
    "TaskStatus",
    "WorkerRecord",
    "WorkerState",
    "WorkflowRecord",
    "WorkflowStatus",
]


class Priority(enum.StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    UPSTREAM_FAILED = "upstream_failed"


TERMINAL_STATUSES = frozenset(
    {
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.TIMED_OUT,
        TaskStatus.UPSTREAM_FAILED,
    }
)
# What a worker may say of an attempt it finished ("rejected": refused unstarted, draining).
OUTCOME_STATUSES = frozenset({"completed", "failed", "timed_out", "cancelled", "rejected"})


class WorkflowStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class WorkerState(enum.StrEnum):
    ACTIVE = "active"
    BUSY = "busy"
    DRAINING = "draining"
    OFFLINE = "offline"
    LOST = "lost"


class Drain(enum.StrEnum):
    """Whether a worker takes new work, and who said it should not."""

    NONE = "none"
    WORKER = "worker"  # the worker asked (SIGTERM): ends with that instance's run
    OPERATOR = "operator"  # the API or CLI asked: lasts until an operator activates it


class _Wire:
    """msgpack-friendly conversion shared by every record.

    Field names are read once per class, and values are handed to msgpack as they are: the
    string enums pack as strings. Records with nested records convert those themselves.
    """

    def to_wire(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _names(type(self))}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Self:
        return cls(**data)


_NAMES: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec(_Wire):
    """What to run: exactly one of command, args (argv), agent (+prompt), function (+args,
    kwargs) is set."""

    command: str | None = None
    args: list[Any] | None = None  # argv, or a function's positional arguments (JSON)
    agent: str | None = None
    prompt: str | None = None
    function: str | None = None  # "package.module:callable", run in a Python runner
    kwargs: dict[str, Any] | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    # A call (fn, args, kwargs) sent by value: cloudpickle, base64. Opaque to the masters.
    pickled: str | None = None
    # A git workspace (``gitspec.WorkspaceSpec`` wire) and a merge step's parent keys. Last, and
    # left off the wire while None, so specs without them keep their bytes (log format 3).
    workspace: dict[str, Any] | None = None
    merge: list[str] | None = None

    def to_wire(self) -> dict[str, Any]:
        return _without_none(self, _names(TaskSpec), _SPEC_OPTIONAL)

    @property
    def result_format(self) -> str:
        """How the task's ``result`` reads: ``pickle`` (a call sent by value: base64 of a
        pickle, for the SDK and opted-in workers only), ``json`` (a function named by
        reference) or ``text`` (what a program wrote to ``$AGENTFLOW_OUTPUT_FILE``)."""
        if self.pickled is not None:
            return "pickle"
        return "json" if self.function is not None else "text"


@dataclass(slots=True, kw_only=True)
class Attempt(_Wire):
    number: int
    fencing_token: int
    worker_id: str
    assigned_at: int
    started_at: int | None = None
    finished_at: int | None = None
    exit_code: int | None = None
    status: str | None = None
    reason: str | None = None
    # ``{"base": sha}`` once the worker resolved its workspace, its ``WorkspaceResult`` wire
    # when it finished; None (and off the wire) for a task without a workspace.
    workspace: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        return _without_none(self, _names(Attempt), _ATTEMPT_OPTIONAL)


# Fields added with log format 3: left off the wire (and off task rows) while None.
_SPEC_OPTIONAL = frozenset({"workspace", "merge"})
_ATTEMPT_OPTIONAL = frozenset({"workspace"})


def _without_none(
    record: object, names: tuple[str, ...], optional: frozenset[str]
) -> dict[str, Any]:
    wire = {name: getattr(record, name) for name in names}
    for name in optional:
        if wire[name] is None:
            del wire[name]
    return wire


@dataclass(slots=True, kw_only=True)
class TaskRecord(_Wire):
    id: str
    title: str
    description: str
    spec: TaskSpec
    priority: Priority
    group: str
    timeout_s: float | None
    max_retries: int
    retry_backoff_s: float
    resources: dict[str, float]
    labels: dict[str, str]
    idempotency_key: str | None
    created_at: int
    status: TaskStatus = TaskStatus.QUEUED
    enqueued_at: int = 0
    not_before: int = 0
    retries: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    exit_code: int | None = None
    reason: str | None = None
    worker_id: str | None = None
    fencing_token: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    cancel_requested: bool = False
    # Workflow membership (empty for a lone task).
    workflow_id: str | None = None
    key: str | None = None  # the task's id within its workflow
    dependencies: list[str] = field(default_factory=list)  # task ids it waits for
    trigger: str = "all_success"  # all_success | all_done | one_success
    allow_failure: bool = False
    estimate_s: float | None = None
    noop: bool = False  # nothing to run: completes as soon as its trigger is met
    result: str | None = None  # what the attempt wrote to $AGENTFLOW_OUTPUT_FILE (bounded)
    unschedulable: str | None = None  # why no registered worker could ever run it

    @property
    def workspace_base(self) -> str | None:
        """The commit its first attempt that resolved one started from: every retry's base."""
        for attempt in self.attempts:
            if attempt.workspace is not None and "base" in attempt.workspace:
                base: str = attempt.workspace["base"]
                return base
        return None

    @property
    def workspace_result(self) -> dict[str, Any] | None:
        """The last attempt's ``WorkspaceResult`` wire once that attempt finished (a bare
        ``{"base"}`` then: it made no commit), or once it holds more than its base."""
        if not self.attempts:
            return None
        last = self.attempts[-1]
        if last.workspace is None or (last.status is None and set(last.workspace) <= {"base"}):
            return None
        return last.workspace

    def to_wire(self) -> dict[str, Any]:
        wire = {name: getattr(self, name) for name in _names(TaskRecord)}
        wire["spec"] = self.spec.to_wire()
        wire["attempts"] = [a.to_wire() for a in self.attempts]
        return wire

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Self:
        data = dict(data)
        data["spec"] = TaskSpec.from_wire(data["spec"])
        data["priority"] = Priority(data["priority"])
        data["status"] = TaskStatus(data["status"])
        data["attempts"] = [Attempt.from_wire(a) for a in data["attempts"]]
        return cls(**data)


AUTO_QUEUE = -1  # a worker's prefetch when the master chooses its queue depth
QUEUE_COVER_MS = 50  # about a report's trip and commit on a loaded machine
QUEUE_PER_SLOT_MAX = 4


@dataclass(slots=True, kw_only=True)
class WorkerRecord(_Wire):
    id: str
    group: str
    slots: int
    resources: dict[str, float]
    labels: dict[str, str]
    hostname: str
    registered_at: int
    prefetch: int = 0  # attempts it may hold queued beyond its slots; AUTO_QUEUE: measured
    gpus: list[dict[str, Any]] = field(default_factory=list)  # index, name, memory_mb
    state: WorkerState = WorkerState.ACTIVE
    drain: Drain = Drain.NONE
    running: dict[str, int] = field(default_factory=dict)  # task id -> fencing token
    last_seen_at: int = 0
    lost_at: int | None = None
    completed: int = 0
    failed: int = 0
    secret_hash: str = ""  # SHA-256 (hex) of the live instance's session secret; never shown
    pickled_functions: bool = False  # started with --allow-pickled-functions
    # Moving average of its attempts' run time (start to outcome, by the entries' stamps).
    run_ms_avg: int | None = None
    workspaces: bool = False  # it runs git workspace and merge tasks (git >= 2.38)

    def to_wire(self) -> dict[str, Any]:
        wire = {name: getattr(self, name) for name in _names(WorkerRecord)}
        if not self.workspaces:  # off the wire while False: snapshots keep their bytes
            del wire["workspaces"]
        return wire

    @property
    def queue_depth(self) -> int:
        """Attempts it holds queued beyond its slots: ``prefetch`` as the worker set it, or,
        with AUTO_QUEUE, enough per slot to cover QUEUE_COVER_MS of measured run time: short
        tasks queue deeper (up to QUEUE_PER_SLOT_MAX), tasks of QUEUE_COVER_MS or more do not
        queue at all (a queued long task would wait for its slot while another worker idles)."""
        if self.prefetch != AUTO_QUEUE:
            return self.prefetch
        if self.run_ms_avg is None:
            return self.slots  # one per slot until something is measured
        per_slot = min(QUEUE_PER_SLOT_MAX, QUEUE_COVER_MS // max(1, self.run_ms_avg))
        return self.slots * per_slot

    @property
    def capacity(self) -> int:
        """Attempts it may hold: its slots run at once, the queued wait on the worker."""
        return self.slots + self.queue_depth

    @property
    def free_capacity(self) -> int:
        return self.capacity - len(self.running)

    @property
    def free_slots(self) -> int:
        return max(0, self.slots - len(self.running))

    @property
    def live(self) -> bool:
        return self.state in (WorkerState.ACTIVE, WorkerState.BUSY)

    @property
    def draining(self) -> bool:
        return self.drain is not Drain.NONE

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Self:
        data = dict(data)
        data["state"] = WorkerState(data["state"])
        if "draining" in data:  # a snapshot from before drains had an origin: keep it drained
            data["drain"] = Drain.OPERATOR if data.pop("draining") else Drain.NONE
        data["drain"] = Drain(data.get("drain", Drain.NONE))
        return cls(**data)


@dataclass(slots=True, kw_only=True)
class WorkflowRecord(_Wire):
    id: str
    name: str
    failure_policy: str  # fail_fast | continue
    task_ids: list[str]  # in topological order
    created_at: int
    idempotency_key: str | None = None
    status: WorkflowStatus = WorkflowStatus.RUNNING
    finished_at: int | None = None
    runs: int = 1  # 1 + the number of retries of the workflow

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Self:
        data = dict(data)
        data["status"] = WorkflowStatus(data["status"])
        return cls(**data)
