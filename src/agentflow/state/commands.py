"""Commands: every change to replicated state is one of these, in the log.

Commands are imperative, frozen value types. Time enters as ``now_ms``, stamped by the leader
when it proposes; ``apply`` never reads a clock. The wire form is msgpack of
``[name, {field: value}]`` in the envelope of a format version (:mod:`agentflow.state.envelope`);
nothing is ever unpickled.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, fields
from typing import Any

import msgpack

from agentflow.state.envelope import LOG_FORMAT, unwrap, wrap
from agentflow.state.field_types import check_fields

__all__ = [
    "AckMessages",
    "AcquireLock",
    "AssignTasks",
    "CancelLockWait",
    "CancelTask",
    "CancelWorkflow",
    "Command",
    "CommandDecodeError",
    "ConnectAgent",
    "CreateSchedule",
    "CreateToken",
    "DeleteSchedule",
    "DeregisterWorker",
    "DisconnectAgent",
    "EndLockSession",
    "ExpireLocks",
    "FireSchedule",
    "ForceReleaseLock",
    "MarkWorkersLost",
    "NewTask",
    "RearmLocks",
    "RegisterWorker",
    "ReleaseDueTasks",
    "ReleaseLock",
    "RenewLock",
    "ReportAttempts",
    "RetryWorkflow",
    "RevokeToken",
    "SendMessage",
    "SendMessages",
    "SetPriority",
    "SetUnschedulable",
    "SetWorkerDraining",
    "SubmitTasks",
    "SubmitWorkflow",
    "Subscribe",
    "TaskOutcome",
    "Unsubscribe",
    "UpdateSchedule",
    "WorkerDisconnected",
    "decode_command",
    "encode_command",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """Base of every command. ``now_ms`` is the leader's clock when it proposed."""

    now_ms: int

    def to_wire(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Command:
        return cls(**data)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTask:
    """One task as submitted, already validated and given its id by the proposer."""

    id: str
    title: str
    description: str
    spec: dict[str, Any]
    priority: str = "medium"
    group: str = "default"
    timeout_s: float | None = None
    max_retries: int = 0
    retry_backoff_s: float = 1.0
    resources: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    # Set for the tasks of a workflow only.
    key: str | None = None
    dependencies: list[str] = field(default_factory=list)  # task ids
    trigger: str = "all_success"
    allow_failure: bool = False
    estimate_s: float | None = None
    noop: bool = False


def _tasks_wire(tasks: list[NewTask]) -> list[dict[str, Any]]:
    return [dict(zip(_NEW_TASK_FIELDS, _new_task_values(t), strict=True)) for t in tasks]


# A batch entry holds thousands of tasks: their field names are read once, their values in one
# C call each (``dataclasses.fields`` per task was a tenth of encoding a batch).
_NEW_TASK_FIELDS = tuple(f.name for f in fields(NewTask))
_new_task_values = operator.attrgetter(*_NEW_TASK_FIELDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitWorkflow(Command):
    """Accept a whole validated DAG as one command; ``tasks`` are in topological order."""

    workflow_id: str
    name: str
    failure_policy: str
    tasks: list[NewTask]
    idempotency_key: str | None = None
    place: bool = False  # assign its ready tasks in this same entry (as SubmitTasks.place)

    def to_wire(self) -> dict[str, Any]:
        wire = {f.name: getattr(self, f.name) for f in fields(self)}
        wire["tasks"] = _tasks_wire(self.tasks)
        return wire

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Command:
        data = dict(data)
        data["tasks"] = [NewTask(**t) for t in data["tasks"]]
        return cls(**data)


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelWorkflow(Command):
    workflow_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryWorkflow(Command):
    """Re-run the failed tasks of a workflow and everything downstream of them."""

    workflow_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitTasks(Command):
    """Accept tasks; a repeated idempotency key returns the first task instead.

    ``place``: assign what fits on free room in this same entry (see ``StateMachine.apply``).
    It is part of the entry, so replaying an old log (without it) applies it as it was.
    """

    tasks: list[NewTask]
    place: bool = False

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"now_ms": self.now_ms, "tasks": _tasks_wire(self.tasks)}
        if self.place:
            wire["place"] = True
        return wire

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Command:
        return cls(
            now_ms=data["now_ms"],
            tasks=[NewTask(**t) for t in data["tasks"]],
            place=data.get("place", False),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AssignTasks(Command):
    """Give queued tasks to workers; each attempt's fencing token is this entry's index."""

    assignments: list[tuple[str, str]]  # (task id, worker id)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskOutcome:
    task_id: str
    fencing_token: int
    status: str  # completed | failed | timed_out | cancelled | rejected
    exit_code: int | None = None
    reason: str | None = None
    result: str | None = None  # what it wrote to $AGENTFLOW_OUTPUT_FILE (bounded)
    workspace: dict[str, Any] | None = None  # its WorkspaceResult wire, checked at the session

    def to_wire(self) -> dict[str, Any]:
        wire = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.workspace is None:  # off the wire at its default: old entries keep their bytes
            del wire["workspace"]
        return wire


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportAttempts(Command):
    """What one worker saw since its last report: starts, output, finished attempts."""

    worker_id: str
    started: list[tuple[str, int]] = field(default_factory=list)  # (task id, token)
    output: list[tuple[str, int, str, bytes]] = field(default_factory=list)  # id, token, stream
    outcomes: list[TaskOutcome] = field(default_factory=list)
    place: bool = False  # assign freed room in this same entry (as SubmitTasks.place)
    # (task id, token, sha): the commit an attempt's workspace starts from, once resolved.
    bases: list[tuple[str, int, str]] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["outcomes"] = [o.to_wire() for o in self.outcomes]
        if not self.bases:  # off the wire while empty: old entries keep their bytes
            del data["bases"]
        return data

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Command:
        data = dict(data)
        data["bases"] = [tuple(b) for b in data.get("bases", ())]
        data["started"] = [tuple(s) for s in data["started"]]
        data["output"] = [tuple(o) for o in data["output"]]
        data["outcomes"] = [TaskOutcome(**o) for o in data["outcomes"]]
        return cls(**data)


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTask(Command):
    task_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SetPriority(Command):
    task_id: str
    priority: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SetUnschedulable(Command):
    """Record (or clear, with None) why no registered worker could ever run these tasks."""

    reasons: dict[str, str | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseDueTasks(Command):
    """Move tasks whose retry backoff has passed (by ``now_ms``) back into the ready queue."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterWorker(Command):
    """A worker (re)connected; ``running`` is what it says it still runs."""

    worker_id: str
    group: str
    slots: int
    resources: dict[str, float]
    labels: dict[str, str]
    hostname: str
    running: list[tuple[str, int]] = field(default_factory=list)
    prefetch: int = 0
    gpus: list[dict[str, Any]] = field(default_factory=list)
    # SHA-256 (hex) of the session secret the worker instance holds: a fresh one when it
    # registers anew, the one it presented when it resumes. Empty only in entries from before
    # session secrets existed.
    secret_hash: str = ""
    pickled_functions: bool = False  # it runs calls sent by value (--allow-pickled-functions)
    workspaces: bool = False  # it runs git workspace and merge tasks

    def to_wire(self) -> dict[str, Any]:
        wire = {f.name: getattr(self, f.name) for f in fields(self)}
        if not self.workspaces:  # off the wire while False: old entries keep their bytes
            del wire["workspaces"]
        return wire

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Command:
        data = dict(data)
        data["running"] = [tuple(r) for r in data["running"]]
        return cls(**data)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerDisconnected(Command):
    worker_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkWorkersLost(Command):
    """Workers silent past the loss timeout: their attempts are requeued."""

    worker_ids: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class SetWorkerDraining(Command):
    """Stop (or resume) giving a worker new work.

    ``by_worker``: the worker asked for it itself (SIGTERM); such a drain ends with that
    instance's run, so the next instance under the id starts active. An operator's drain (the
    API, the CLI) lasts until an operator activates the worker again.
    """

    worker_id: str
    draining: bool
    by_worker: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DeregisterWorker(Command):
    worker_id: str
    force: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AcquireLock(Command):
    """Grant ``name`` to ``session`` now, queue it (``wait``), or refuse; see ``LockTable``.

    A session ``task:<task id>:<fencing token>`` is a task attempt's: it must be live, and the
    grant ends with the attempt.
    """

    name: str
    session: str
    ttl_ms: int
    mode: str = "exclusive"
    limit: int = 1
    wait: bool = False
    wait_timeout_ms: int | None = None
    request_id: str | None = None
    owner: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewLock(Command):
    name: str
    session: str
    token: int
    ttl_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseLock(Command):
    name: str
    session: str
    token: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ForceReleaseLock(Command):
    name: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelLockWait(Command):
    """A blocking acquire's client gave up: its place in the queue goes, its holds stay."""

    name: str
    session: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EndLockSession(Command):
    """An agent session closes: every lock it holds is released and its wait dropped."""

    session: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpireLocks(Command):
    """The leader's clock (``now_ms``) passed an expiry, a wait deadline or a lock-delay."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RearmLocks(Command):
    """A new leader gives every grant its full TTL again from ``now_ms`` (never early)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectAgent(Command):
    """Open or renew a named agent session, live for ``ttl_ms`` from ``now_ms``."""

    agent_id: str
    ttl_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DisconnectAgent(Command):
    agent_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribe(Command):
    agent_id: str
    pattern: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribe(Command):
    agent_id: str
    pattern: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SendMessage(Command):
    """One envelope; ``to`` is an agent id, ``*`` or ``topic:<name>``. With
    ``requires_response``, a request that waits ``timeout_ms`` for its reply."""

    id: str
    sender: str
    to: str
    type: str
    content: Any = None
    correlation_id: str | None = None
    requires_response: bool = False
    ttl_ms: int | None = None
    size: int = 0
    timeout_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendMessages(Command):
    """Several envelopes in one entry (no requests among them), in order; each is delivered
    or refused on its own."""

    messages: list[SendMessage]

    def to_wire(self) -> dict[str, Any]:
        return {"now_ms": self.now_ms, "messages": [m.to_wire() for m in self.messages]}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Command:
        return cls(now_ms=data["now_ms"], messages=[SendMessage(**m) for m in data["messages"]])


@dataclass(frozen=True, slots=True, kw_only=True)
class AckMessages(Command):
    """The agent has handled its inbox up to ``cursor``."""

    agent_id: str
    cursor: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateToken(Command):
    """Add an API token with a role; only the sha256 of its secret is carried and kept."""

    id: str
    name: str
    role: str
    secret_sha256: str
    expires_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RevokeToken(Command):
    id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateSchedule(Command):
    """Add a schedule (see :mod:`agentflow.state.schedules`): a ``cron`` expression in
    ``timezone`` or an ``every_ms`` period, and what each run submits: ``template``, the
    validated task (``kind`` task) or workflow (``kind`` workflow) in its ``NewTask`` wire form."""

    name: str
    cron: str | None = None
    every_ms: int | None = None
    timezone: str = "UTC"
    kind: str = "task"
    template: dict[str, Any] = field(default_factory=dict)
    overlap: str = "skip"
    catchup: str = "none"
    paused: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateSchedule(Command):
    """Change what is given (None: unchanged). A new spec (``cron`` or ``every_ms``, with
    ``timezone``) counts from ``now_ms``; resuming does not run what fell due while paused."""

    name: str
    paused: bool | None = None
    overlap: str | None = None
    catchup: str | None = None
    cron: str | None = None
    every_ms: int | None = None
    timezone: str | None = None
    kind: str | None = None
    template: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteSchedule(Command):
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FireSchedule(Command):
    """The leader saw the fire time ``fire_ms`` of schedule ``name`` pass: submit its run (with
    ``run``; without, the time is only recorded as passed, as catchup ``none`` does for a fire
    time too late). Refused unless ``fire_ms`` is later than the schedule's last fire time, so
    one fire time never fires twice, whoever proposes it."""

    name: str
    fire_ms: int
    run: bool = True
    place: bool = True  # assign the run's ready tasks in this same entry (as SubmitTasks.place)


def _fix_tuples(cls: type[Command], data: dict[str, Any]) -> dict[str, Any]:
    if cls is AssignTasks:
        data = dict(data)
        data["assignments"] = [tuple(a) for a in data["assignments"]]
    return data


_REGISTRY: dict[str, type[Command]] = {
    cls.__name__: cls
    for cls in (
        SubmitWorkflow,
        CancelWorkflow,
        RetryWorkflow,
        SubmitTasks,
        AssignTasks,
        ReportAttempts,
        CancelTask,
        SetPriority,
        SetUnschedulable,
        ReleaseDueTasks,
        RegisterWorker,
        WorkerDisconnected,
        MarkWorkersLost,
        SetWorkerDraining,
        DeregisterWorker,
        AcquireLock,
        RenewLock,
        ReleaseLock,
        ForceReleaseLock,
        CancelLockWait,
        EndLockSession,
        ExpireLocks,
        RearmLocks,
        ConnectAgent,
        DisconnectAgent,
        Subscribe,
        Unsubscribe,
        SendMessage,
        SendMessages,
        AckMessages,
        CreateToken,
        RevokeToken,
        CreateSchedule,
        UpdateSchedule,
        DeleteSchedule,
        FireSchedule,
    )
}


def encode_command(command: Command, fmt: int = LOG_FORMAT) -> bytes:
    """``command`` as log entry bytes of format ``fmt`` (what every member reads)."""
    entry = wrap(fmt, type(command).__name__, command.to_wire())
    packed: bytes = msgpack.packb(entry, use_bin_type=True)
    return packed


class CommandDecodeError(ValueError):
    """The bytes of a log entry are not a command this version knows (an operating error)."""


def decode_command(data: bytes) -> Command:
    """The command in ``data``; :class:`CommandDecodeError` for any bytes that are not one.

    Decoding has no side effects, so whatever the bytes make it raise is theirs, not ours.
    """
    try:
        _fmt, name, body = unwrap(msgpack.unpackb(data, raw=False, strict_map_key=False))
        cls = _REGISTRY.get(name) if isinstance(name, str) else None
        if cls is None:
            raise CommandDecodeError(f"unknown command {name!r:.60}")
        if not isinstance(body, dict):
            raise CommandDecodeError(f"the body of {name} is not a map")
        command = cls.from_wire(_fix_tuples(cls, body))
        check_fields(command)  # handlers then see the types they were written for
        return command
    except (CommandDecodeError, MemoryError, RecursionError):
        raise  # the last two depend on the node, not on the bytes: not a verdict on them
    except Exception as exc:
        raise CommandDecodeError(f"{type(exc).__name__}: {exc}") from None
