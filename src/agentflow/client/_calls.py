"""Every operation of the SDK as a :class:`Call`: method, path, query, body, timeout, and how
to read the answer. :class:`~agentflow.client.Client` sends a call and returns its parsed answer;
:class:`~agentflow.client.AsyncClient` awaits the same call. Neither twin builds a path or reads
an answer of its own, so the two cannot drift apart. Nothing here does I/O.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from agentflow.client._core import BATCH, BATCH_CHARS, TaskInfo, build_task, token_body
from agentflow.client._functions import function_body, workflow_tasks
from agentflow.errors import ClientError

__all__ = ["SUBMIT_SOCKET", "Call", "OutputCursor", "TaskPages", "socket_frame"]

T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True, slots=True)
class Call(Generic[T_co]):
    """One request of an SDK operation and how to read its answer."""

    method: str
    path: str
    parse: Callable[[Any], T_co]
    params: Mapping[str, Any] | None = None
    json: Any = None
    timeout_s: float | None = None


def _as_dict(answer: Any) -> dict[str, Any]:
    result: dict[str, Any] = answer
    return result


def _items(key: str) -> Callable[[Any], list[dict[str, Any]]]:
    def parse(answer: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = answer[key]
        return result

    return parse


def _nothing(answer: Any) -> None:
    return None


def _task_id(answer: Any) -> str:
    return str(answer["id"])


def _task_ids(answer: Any) -> list[str]:
    return [t["id"] for t in answer["tasks"]]


SUBMIT_SOCKET = "/api/v1/submit"
_SOCKET_OPS = {"/api/v1/tasks": "task", "/api/v1/tasks/batch": "batch"}


def socket_frame(call: Call[Any]) -> dict[str, Any] | None:
    """The frame of ``WS /api/v1/submit`` that carries ``call`` (the same body; the answer
    frame's ``body`` is the HTTP answer), or None for a call the socket does not take."""
    op = _SOCKET_OPS.get(call.path) if call.method == "POST" else None
    return None if op is None else {"op": op, "body": call.json}


def submit_command(
    command: str | None, args: tuple[Any, ...], fields: dict[str, Any]
) -> Call[TaskInfo]:
    """A shell ``command`` (or ``command=``, ``args=[...]``, ``agent=, prompt=``) as a task."""
    if args:
        raise TypeError("positional arguments are for functions; a command takes fields")
    shell: str | None = command if command is not None else fields.pop("command", None)
    body = build_task(shell, **fields)
    return Call("POST", "/api/v1/tasks", TaskInfo.from_json, json=body)


def submit_function(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Call[str]:
    """``fn(*args, **kwargs)`` as a task; the answer is its id."""
    body = build_task(**function_body(fn, args, kwargs))
    return Call("POST", "/api/v1/tasks", _task_id, json=body)


def map_specs(fn: Callable[..., Any], items: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """The task of ``fn(item)`` for every item, in order."""
    return (function_body(fn, (item,), {}) for item in items)


def batches(tasks: Iterable[Mapping[str, Any]]) -> Iterator[Call[list[str]]]:
    """Batch submits of up to :data:`BATCH` tasks, and calls sent by value of about
    :data:`BATCH_CHARS` characters, each; each answer is their ids, in order."""
    chunk: list[dict[str, Any]] = []
    chars = 0
    for spec in tasks:
        body = build_task(**spec)
        size = len(body.get("pickled") or "")
        if chunk and (len(chunk) == BATCH or chars + size > BATCH_CHARS):
            yield Call("POST", "/api/v1/tasks/batch", _task_ids, json={"tasks": chunk})
            chunk, chars = [], 0
        chunk.append(body)
        chars += size
    if chunk:
        yield Call("POST", "/api/v1/tasks/batch", _task_ids, json={"tasks": chunk})


def get_task(task_id: str, wait_s: float | None = None) -> Call[TaskInfo]:
    """A task now, or (``wait_s``) when it ends or the long poll runs out."""
    if wait_s is None:
        return Call("GET", f"/api/v1/tasks/{task_id}", TaskInfo.from_json)
    params = {"wait_s": wait_s}
    return Call("GET", f"/api/v1/tasks/{task_id}", TaskInfo.from_json, params, None, wait_s + 10)


def cancel_task(task_id: str) -> Call[TaskInfo]:
    return Call("POST", f"/api/v1/tasks/{task_id}/cancel", TaskInfo.from_json)


def set_priority(task_id: str, priority: str) -> Call[TaskInfo]:
    body = {"priority": priority}
    return Call("PATCH", f"/api/v1/tasks/{task_id}", TaskInfo.from_json, json=body)


def task_output(task_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/api/v1/tasks/{task_id}/output", _as_dict)


class OutputCursor:
    """Following one stream of a task's output: the request that goes on from the byte
    reached, on whichever master answers it, so a resumed follow repeats and skips nothing."""

    def __init__(self, task_id: str, stream: str, offset: int) -> None:
        if stream not in ("stdout", "stderr"):
            raise ClientError(f"stream must be stdout or stderr, not {stream!r}")
        if offset < 0:
            raise ClientError(f"offset must be 0 or more, not {offset}")
        self.task_id = task_id
        self.path = f"/api/v1/tasks/{task_id}/output"
        self.stream = stream
        self.offset = offset

    def params(self) -> dict[str, str]:
        return {"follow": "true", "stream": self.stream, "offset": str(self.offset)}

    def advance(self, chunk: bytes) -> bytes:
        """``chunk`` was received: the next request starts after it."""
        self.offset += len(chunk)
        return chunk


class TaskPages:
    """Paging through ``GET /api/v1/tasks``: the next page's call, then what it holds."""

    def __init__(self, limit: int, max_items: int | None, filters: Mapping[str, Any]) -> None:
        self._params = {k: v for k, v in filters.items() if v is not None} | {"limit": limit}
        self._left = max_items
        self.done = max_items is not None and max_items <= 0

    def call(self) -> Call[dict[str, Any]]:
        return Call("GET", "/api/v1/tasks", _as_dict, params=dict(self._params))

    def take(self, page: Mapping[str, Any]) -> list[TaskInfo]:
        """The tasks of ``page`` (no more than are left to give); ends at the last page."""
        tasks = [TaskInfo.from_json(data) for data in page["tasks"]]
        if self._left is not None:
            tasks = tasks[: self._left]
            self._left -= len(tasks)
        cursor = page.get("next_cursor")
        self.done = not cursor or self._left == 0
        self._params["cursor"] = cursor
        return tasks


def submit_workflow(workflow: Mapping[str, Any]) -> Call[dict[str, Any]]:
    """A workflow; a task's ``function`` may be a callable (see :func:`workflow_tasks`)."""
    body = dict(workflow)
    if isinstance(body.get("tasks"), list | tuple):
        body["tasks"] = workflow_tasks(body["tasks"])
    body.setdefault("idempotency_key", "sdk-" + secrets.token_hex(12))
    return Call("POST", "/api/v1/workflows", _as_dict, json=body)


def get_workflow(workflow_id: str, wait_s: float = 0.0) -> Call[dict[str, Any]]:
    params = {"wait_s": wait_s}
    path = f"/api/v1/workflows/{workflow_id}"
    return Call("GET", path, _as_dict, params=params, timeout_s=wait_s + 10.0)


def workflow_running(view: Mapping[str, Any]) -> bool:
    return bool(view["status"] == "running")


def workflow_graph(workflow_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/api/v1/workflows/{workflow_id}/graph", _as_dict)


def cancel_workflow(workflow_id: str) -> Call[dict[str, Any]]:
    return Call("POST", f"/api/v1/workflows/{workflow_id}/cancel", _as_dict)


def retry_workflow(workflow_id: str) -> Call[dict[str, Any]]:
    return Call("POST", f"/api/v1/workflows/{workflow_id}/retry", _as_dict)


def list_agents() -> Call[list[dict[str, Any]]]:
    return Call("GET", "/api/v1/agents", _items("agents"))


def message_history(filters: Mapping[str, Any]) -> Call[list[dict[str, Any]]]:
    params = {k: v for k, v in filters.items() if v is not None}
    return Call("GET", "/api/v1/messages", _items("messages"), params=params)


def list_locks() -> Call[list[dict[str, Any]]]:
    return Call("GET", "/api/v1/locks", _items("locks"))


def lock_info(name: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/api/v1/locks/{name}", _as_dict)


def force_release(name: str, reason: str | None) -> Call[dict[str, Any]]:
    body = {"reason": reason} if reason else None
    return Call("POST", f"/api/v1/locks/{name}/force-release", _as_dict, json=body)


def list_workers() -> Call[list[dict[str, Any]]]:
    return Call("GET", "/api/v1/workers", _items("workers"))


def drain_worker(worker_id: str, drain: bool) -> Call[dict[str, Any]]:
    body = {"state": "draining" if drain else "active"}
    return Call("PATCH", f"/api/v1/workers/{worker_id}", _as_dict, json=body)


def remove_worker(worker_id: str, force: bool) -> Call[None]:
    return Call("DELETE", f"/api/v1/workers/{worker_id}", _nothing, params={"force": force})


def queue_stats() -> Call[dict[str, Any]]:
    return Call("GET", "/api/v1/queue/stats", _as_dict)


def health() -> Call[dict[str, Any]]:
    return Call("GET", "/health", _as_dict)


def create_token(role: str, ttl_s: float | None, name: str | None) -> Call[dict[str, Any]]:
    return Call("POST", "/api/v1/tokens", _as_dict, json=token_body(role, ttl_s, name))


def list_tokens() -> Call[list[dict[str, Any]]]:
    return Call("GET", "/api/v1/tokens", _items("tokens"))


def revoke_token(token_id: str) -> Call[dict[str, Any]]:
    return Call("DELETE", f"/api/v1/tokens/{token_id}", _as_dict)
