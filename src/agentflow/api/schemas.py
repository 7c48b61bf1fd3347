"""Request bodies of the HTTP API (pydantic v2). Unknown fields are refused, not ignored."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agentflow import gitspec
from agentflow.api.workspace_schema import WorkspaceIn, check_cwd, check_flow_workspaces
from agentflow.byvalue import BASE64_PATTERN, MAX_PICKLED_CHARS
from agentflow.errors import PayloadTooLargeError
from agentflow.state.commands import NewTask

__all__ = [
    "AckIn",
    "ConnectIn",
    "LockAcquireIn",
    "LockForceIn",
    "LockHolderIn",
    "LockReleaseIn",
    "LockRenewIn",
    "MessageBatchIn",
    "MessageIn",
    "PriorityName",
    "RequestIn",
    "ResourcesIn",
    "TaskBatchIn",
    "TaskIn",
    "TaskPatchIn",
    "WorkerPatchIn",
    "WorkflowIn",
    "WorkflowTaskIn",
    "new_task_id",
    "new_task_ids",
]

PriorityName = Literal["urgent", "high", "medium", "low"]
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]

MAX_COMMAND_CHARS = 128 * 1024
MAX_CUSTOM_RESOURCE = 1 << 40  # of any custom resource a task asks for


def new_task_id() -> str:
    return "t-" + secrets.token_hex(8)


def new_task_ids(n: int) -> list[str]:
    """``n`` ids as :func:`new_task_id` makes them, from one read of the random source."""
    digits = secrets.token_hex(8 * n)
    return ["t-" + digits[i : i + 16] for i in range(0, 16 * n, 16)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ResourcesIn(BaseModel):
    """CPU, memory and GPUs, plus any custom resource a worker declares (``licence=2``).
    Frozen, so that every task that asks for nothing shares :data:`NO_RESOURCES`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    cpu: float = Field(default=0, ge=0, le=4096)
    memory_mb: float = Field(default=0, ge=0, le=1 << 30)
    gpu: float = Field(default=0, ge=0, le=1024)

    @model_validator(mode="after")
    def _custom_are_amounts(self) -> ResourcesIn:
        for name, value in (self.model_extra or {}).items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"resource {name} must be a non-negative number")
            if not 0 <= value <= MAX_CUSTOM_RESOURCE:  # also false for NaN
                raise ValueError(
                    f"resource {name} must be a number from 0 to {MAX_CUSTOM_RESOURCE}"
                )
            if not name.replace("_", "").replace("-", "").isalnum() or len(name) > 64:
                raise ValueError(f"invalid resource name {name!r}")
        return self


NO_RESOURCES = ResourcesIn()


class TaskIn(_Strict):
    """One task. Exactly one of ``command``, ``args``, ``agent`` (+``prompt``), ``function``
    (+``args``, ``kwargs``) or ``pickled`` says what runs; with none of them, a non-empty
    ``description`` is the shell command (the seed's form). ``pickled`` is a whole call sent by
    value (see :mod:`agentflow.byvalue`): kept as text, never decoded here."""

    title: str = Field(default="", max_length=1024)
    description: str = Field(default="", max_length=MAX_COMMAND_CHARS)
    command: str | None = Field(default=None, max_length=MAX_COMMAND_CHARS)
    args: list[Any] | None = Field(default=None, max_length=100_000)
    function: str | None = Field(
        default=None, max_length=512, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"
    )
    kwargs: dict[str, Any] | None = None
    pickled: str | None = Field(default=None, min_length=1, pattern=BASE64_PATTERN)
    agent: str | None = Field(default=None, max_length=128)
    prompt: str | None = Field(default=None, max_length=MAX_COMMAND_CHARS)
    env: dict[str, str] = Field(default_factory=dict, max_length=1024)
    cwd: str | None = Field(default=None, max_length=4096)
    priority: PriorityName = "medium"
    group: Name = "default"
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    max_retries: int = Field(default=0, ge=0, le=100)
    retry_backoff_s: float = Field(default=1.0, ge=0, le=3600)
    resources: ResourcesIn = Field(default=NO_RESOURCES)  # not one model built per task
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)
    workspace: WorkspaceIn | None = None

    noop_allowed: ClassVar[bool] = False  # a workflow task may run nothing (a join point)
    in_workflow: ClassVar[bool] = False  # its workspace may take a repo and a ref from the flow

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if not key or "=" in key or "\0" in key:
                raise ValueError(f"invalid environment variable name {key!r}")
        return env

    @field_validator("pickled", mode="before")
    @classmethod
    def _pickled_size(cls, value: Any) -> Any:
        # Before the pattern is matched, so that no regex runs over an oversized text. A 413,
        # not a 422: the request is well formed, the call it carries is too large.
        if isinstance(value, str) and len(value) > MAX_PICKLED_CHARS:
            raise PayloadTooLargeError(
                f"a function sent by value is {len(value)} base64 characters, over the limit "
                f"of {MAX_PICKLED_CHARS}: a closure may capture a large object; pass large data "
                "in files or through a function the workers import by name"
            )
        return value

    @model_validator(mode="after")
    def _one_way_to_run(self) -> TaskIn:
        if self.pickled is not None:
            others = ("function", "command", "args", "kwargs", "agent", "prompt")
            given = [n for n in others if getattr(self, n) is not None]
            if given:
                raise ValueError(
                    f"a call sent by value (pickled) carries its own arguments: "
                    f"drop {', '.join(given)}"
                )
            return self
        if self.function is not None:
            if self.command is not None or self.agent is not None:
                raise ValueError("a function task takes args and kwargs, not command or agent")
            return self
        if self.kwargs is not None:
            raise ValueError("kwargs needs a function")
        if self.args is not None and not all(isinstance(a, str) for a in self.args):
            raise ValueError("args of a program are strings (give a function for JSON args)")
        given = [n for n in ("command", "args", "agent") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of command, args, agent (got {', '.join(given)})")
        if self.command is not None and not self.command.strip():
            raise ValueError("command is empty")
        if self.args is not None and (not self.args or not self.args[0]):
            raise ValueError("args is empty: give at least the program")
        if self.agent is not None and not self.prompt:
            raise ValueError("agent needs a prompt")
        if self.prompt is not None and self.agent is None:
            raise ValueError("prompt needs an agent")
        if not given and not self.description.strip() and not self.noop_allowed:
            raise ValueError("nothing to run: give command, args, agent+prompt, or a description")
        return self

    @model_validator(mode="after")
    def _workspace_fits(self) -> TaskIn:
        # A workflow task may take its repo from the defaults and its ref from a parent:
        # WorkflowIn checks those once the defaults apply.
        workspace = self.workspace
        if workspace is None:
            return self
        if self.function is not None or self.pickled is not None:
            raise ValueError("a workspace runs a program in a git worktree: drop function/pickled")
        if not self.in_workflow and workspace.repo is None:
            raise ValueError("workspace needs a repo")
        if not self.in_workflow and workspace.parent is not None:
            raise ValueError("workspace ref ${parents..} names a workflow parent: use a workflow")
        if self.cwd is not None:
            check_cwd(self.cwd)
        return self

    @property
    def _runs_a_program(self) -> bool:
        """A program a worktree can hold: not a function, not a join point."""
        return self.function is None and self.pickled is None and not self.runs_nothing

    @property
    def runs_nothing(self) -> bool:
        return (
            self.command is None
            and self.args is None
            and self.agent is None
            and self.function is None
            and self.pickled is None
            and (not self.description.strip())
        )

    def to_new_task(self, task_id: str | None = None) -> NewTask:
        spec: dict[str, Any] = {"env": dict(self.env), "cwd": self.cwd}
        if self.pickled is not None:
            spec["pickled"] = self.pickled
        elif self.function is not None:
            spec["function"] = self.function
            spec["args"] = list(self.args or [])
            spec["kwargs"] = dict(self.kwargs or {})
        elif self.args is not None:
            spec["args"] = list(self.args)
        elif self.agent is not None:
            spec["agent"], spec["prompt"] = self.agent, self.prompt
        else:
            spec["command"] = self.command if self.command is not None else self.description
        if self.workspace is not None:
            spec["workspace"] = self.workspace.to_spec()
        title = self.title or (
            self.function or self.command or self.description or " ".join(map(str, self.args or []))
        )
        wanted = self.resources
        resources = (  # most tasks ask for nothing: no serializer call for them
            {k: v for k, v in wanted.model_dump().items() if v}
            if wanted.model_fields_set or wanted.model_extra
            else {}
        )
        return NewTask(
            id=task_id or new_task_id(),
            title=title[:200],
            description=self.description,
            spec=spec,
            priority=self.priority,
            group=self.group,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            retry_backoff_s=self.retry_backoff_s,
            resources=resources,
            labels=dict(self.labels),
            idempotency_key=self.idempotency_key,
        )


class TaskBatchIn(_Strict):
    tasks: list[TaskIn] = Field(min_length=1)


class TaskPatchIn(_Strict):
    priority: PriorityName


class WorkerPatchIn(_Strict):
    state: Literal["draining", "active"]


class WorkflowDefaultsIn(_Strict):
    """Task fields a workflow's tasks take unless they set their own."""

    priority: PriorityName | None = None
    group: Name | None = None
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    max_retries: int | None = Field(default=None, ge=0, le=100)
    retry_backoff_s: float | None = Field(default=None, ge=0, le=3600)
    resources: ResourcesIn | None = None
    env: dict[str, str] | None = None
    labels: dict[str, str] | None = None
    workspace: WorkspaceIn | None = None  # for each task that runs a program; merged by field


class WorkflowTaskIn(TaskIn):
    """A task of a workflow: the task fields, its ``id`` within the workflow, what it waits for.

    ``name`` is accepted as the title (the seed's form); a task that runs nothing completes as
    soon as its trigger is met, as a join point.
    """

    noop_allowed: ClassVar[bool] = True
    in_workflow: ClassVar[bool] = True

    id: Name
    name: str | None = Field(default=None, max_length=1024)
    dependencies: list[Name] = Field(default_factory=list, max_length=10_000)
    estimate_s: float | None = Field(default=None, ge=0, le=30 * 24 * 3600)
    trigger: Literal["all_success", "all_done", "one_success"] = "all_success"
    allow_failure: bool = False
    merge: list[Name] | None = Field(default=None, min_length=1, max_length=gitspec.MAX_MERGE)

    @model_validator(mode="after")
    def _merge_runs_alone(self) -> WorkflowTaskIn:
        if self.merge is None:
            return self
        given = [n for n in ("command", "args", "agent", "function", "pickled") if getattr(self, n)]
        if given or self.description.strip():
            raise ValueError(
                f"task {self.id}: merge is the whole task: drop {', '.join(given) or 'description'}"
            )
        return self

    @property
    def runs_nothing(self) -> bool:
        return self.merge is None and super().runs_nothing

    def to_new_task(self, task_id: str | None = None) -> NewTask:
        new = super().to_new_task(task_id)
        if self.merge is None:
            return new
        spec = {k: v for k, v in new.spec.items() if k != "command"} | {"merge": list(self.merge)}
        title = self.title or "merge " + ", ".join(self.merge)
        return dataclasses.replace(new, spec=spec, title=title[:200])

    def with_defaults(self, defaults: WorkflowDefaultsIn | None) -> WorkflowTaskIn:
        if defaults is None:
            return self
        chosen = {
            name: value
            for name, value in defaults.model_dump(exclude_none=True).items()
            if name not in self.model_fields_set and name != "workspace"
        }
        if defaults.workspace is not None and self._runs_a_program:
            mine = {} if self.workspace is None else self.workspace.model_dump(exclude_unset=True)
            merged = defaults.workspace.model_dump(exclude_unset=True) | mine
            chosen["workspace"] = WorkspaceIn.model_validate(merged)
        if "env" in chosen:
            chosen["env"] = {**chosen["env"], **self.env}
        if "resources" in chosen:  # model_copy does not validate: rebuild the model
            chosen["resources"] = ResourcesIn(**chosen["resources"])
        return self.model_copy(update=chosen) if chosen else self


class WorkflowIn(_Strict):
    name: str = Field(default="workflow", min_length=1, max_length=200)
    defaults: WorkflowDefaultsIn | None = None
    failure_policy: Literal["fail_fast", "continue"] = "continue"
    tasks: list[WorkflowTaskIn] = Field(default_factory=list)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _workspaces_complete(self) -> WorkflowIn:
        check_flow_workspaces(self.tasks, self.defaults)
        return self


LOCK_NAME_PATTERN = r"^[A-Za-z0-9_.:/@=+\-]{1,256}$"
MAX_LOCK_WAIT_S = 300.0
SessionName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\s]+$")]


class LockHolderIn(_Strict):
    """Who: an agent ``session`` (any name), or a task attempt (``task_id`` + ``task_token``)."""

    session: SessionName | None = None
    task_id: Name | None = None
    task_token: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_holder(self) -> LockHolderIn:
        if (self.task_id is None) != (self.task_token is None):
            raise ValueError("task_id and task_token go together")
        if self.task_id is not None and self.session is not None:
            raise ValueError("give a session or a task attempt, not both")
        return self


class LockAcquireIn(LockHolderIn):
    owner: Annotated[str, Field(max_length=200)] | None = None
    ttl_s: float = Field(default=30.0, gt=0, le=86_400)
    wait_s: float = Field(default=0.0, ge=0, le=MAX_LOCK_WAIT_S)
    mode: Literal["exclusive", "shared"] = "exclusive"
    limit: int = Field(default=1, ge=1, le=1024)
    metadata: dict[str, Any] = Field(default_factory=dict)
    request_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(repr(value)) > 4096:
            raise ValueError("metadata must stay under 4 KiB")
        return value


class LockRenewIn(LockHolderIn):
    token: int = Field(ge=1)
    ttl_s: float | None = Field(default=None, gt=0, le=86_400)  # default: the grant's TTL


class LockReleaseIn(LockHolderIn):
    token: int = Field(ge=1)


class LockForceIn(_Strict):
    reason: Annotated[str, Field(max_length=500)] | None = None


AgentId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\s*][^\s]*$")]
MAX_REQUEST_TIMEOUT_MS = 300_000


class MessageIn(_Strict):
    """An envelope. ``to``: an agent id, ``*`` (every live agent) or ``topic:<name>``; or give
    ``topic`` instead of ``to``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    sender: AgentId | None = Field(default=None, alias="from")
    to: Annotated[str, Field(min_length=1, max_length=262)] | None = None
    topic: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    type: Annotated[str, Field(min_length=1, max_length=128)]
    content: Any = None
    correlation_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    requires_response: bool = False
    ttl_ms: int | None = Field(default=None, ge=1, le=30 * 86_400_000)

    @model_validator(mode="after")
    def _one_address(self) -> MessageIn:
        if (self.to is None) == (self.topic is None):
            raise ValueError("give exactly one of to and topic")
        return self

    @property
    def address(self) -> str:
        return self.to if self.to is not None else f"topic:{self.topic}"


class MessageBatchIn(_Strict):
    messages: Annotated[list[MessageIn], Field(min_length=1, max_length=1000)]


class RequestIn(MessageIn):
    timeout_ms: int = Field(default=30_000, ge=1, le=MAX_REQUEST_TIMEOUT_MS)


class AckIn(_Strict):
    cursor: int = Field(ge=0)


class ConnectIn(_Strict):
    ttl_s: float = Field(default=30.0, ge=0.001, le=86_400)  # the log keeps milliseconds
