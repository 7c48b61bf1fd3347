"""The synchronous client."""

from __future__ import annotations

import builtins
import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

import httpx

from agentflow.client._agents import Agent, default_agent_id
from agentflow.client._core import (
    RETRY_STATUSES,
    RETRYABLE,
    Failover,
    TaskInfo,
    api_token,
    build_task,
    master_urls,
    raise_for_problem,
    token_body,
    unreachable,
    verify,
    ws_options,
)
from agentflow.client._functions import TaskFuture, function_body
from agentflow.client._locks import Lease, LockContext
from agentflow.client._sockets import SyncFrameSocket
from agentflow.errors import NotLeaderError

__all__ = ["Client"]

BATCH = 1000
LONG_POLL_S = 30.0


class Client:
    """Talks to any master of a cluster; follows the leader and retries across failovers.

    >>> with Client("http://127.0.0.1:6767") as c:
    ...     task = c.submit("echo hello", priority="high")
    ...     c.wait(task.id).ok
    """

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
        retry_for_s: float = 15.0,
        ca: str | None = None,
    ) -> None:
        self.urls = master_urls(url)
        self._failover = Failover(self.urls, retry_for_s)
        token = api_token(token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.auth_headers = headers
        self.verify = verify(ca)
        self._http = httpx.Client(headers=headers, timeout=timeout_s, verify=self.verify)
        self._lock_socket: SyncFrameSocket | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._lock_socket is not None:
            self._lock_socket.close()
        self._http.close()

    @property
    def lock_socket(self) -> SyncFrameSocket:
        """The socket every lease of this client takes and renews its locks over."""
        if self._lock_socket is None:
            self._lock_socket = SyncFrameSocket(self, "/api/v1/locks")
        return self._lock_socket

    def ws_options(self, url: str) -> Any:
        """Keyword arguments for ``websockets`` ``connect`` to ``url`` (headers, TLS)."""
        return ws_options(url, self.verify, self.auth_headers)

    def ws_url(self, path: str) -> str:
        """``path`` on the master this client talks to now, as a WebSocket URL."""
        return "ws" + self._failover.base.removeprefix("http") + path

    def follow_leader(self, leader_url: str | None) -> None:
        """Talk to ``leader_url`` next (a follower named it), or to the next master."""
        extra = {"leader_url": leader_url} if leader_url else {}
        self._failover.failed(NotLeaderError("not the leader", **extra))

    # -- transport --------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        timeout_s: float | None = None,
    ) -> Any:
        last: Exception | None = None
        for delay in itertools.chain((0.0,), self._failover.attempts()):
            if delay:
                time.sleep(delay)
            try:
                response = self._http.request(
                    method,
                    self._failover.base + path,
                    params=params,
                    json=json,
                    timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT,
                )
                if response.status_code not in RETRY_STATUSES:
                    return raise_for_problem(response)
                raise_for_problem(response)
            except RETRYABLE as exc:
                last = exc
                self._failover.failed(exc)
        raise unreachable(self.urls, last)

    # -- tasks ------------------------------------------------------------------------------

    @overload
    def submit(self, command: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture: ...

    @overload
    def submit(self, command: str | None = None, /, **fields: Any) -> TaskInfo: ...

    def submit(
        self, command: str | Callable[..., Any] | None = None, /, *args: Any, **fields: Any
    ) -> TaskInfo | TaskFuture:
        """Submit one task: a shell ``command``, or ``args=[...]``, or ``agent=, prompt=``;
        or a Python function and its arguments, ``submit(fn, 1, 2, key=3)``, which returns a
        :class:`TaskFuture` (task options come from the ``@task(...)`` decorator)."""
        if callable(command):
            body = build_task(**function_body(command, args, fields))
            created = self.request("POST", "/api/v1/tasks", json=body)
            return TaskFuture(self, created["id"])
        if args:
            raise TypeError("positional arguments are for functions; a command takes fields")
        shell: str | None = command if command is not None else fields.pop("command", None)
        body = build_task(shell, **fields)  # submit(command="...") works too
        return TaskInfo.from_json(self.request("POST", "/api/v1/tasks", json=body))

    def map(self, fn: Callable[..., Any], items: Iterable[Any]) -> builtins.list[TaskFuture]:
        """``fn(item)`` for every item, submitted in batches; one future each, in order."""
        ids = self.submit_many(function_body(fn, (item,), {}) for item in items)
        return [TaskFuture(self, task_id) for task_id in ids]

    def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> list[str]:
        """Submit many tasks through the batch endpoint; returns their ids in order."""
        ids: list[str] = []
        chunk: list[dict[str, Any]] = []
        for spec in tasks:
            chunk.append(build_task(**spec))
            if len(chunk) == BATCH:
                ids += self._batch(chunk)
                chunk = []
        if chunk:
            ids += self._batch(chunk)
        return ids

    def _batch(self, chunk: list[dict[str, Any]]) -> list[str]:
        answer = self.request("POST", "/api/v1/tasks/batch", json={"tasks": chunk})
        return [t["id"] for t in answer["tasks"]]

    def get(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_json(self.request("GET", f"/api/v1/tasks/{task_id}"))

    def wait(self, task_id: str, timeout_s: float | None = None) -> TaskInfo:
        """Block until the task finishes (or ``timeout_s`` passes; then its current state)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = LONG_POLL_S if deadline is None else max(0.0, deadline - time.monotonic())
            wait_s = min(LONG_POLL_S, left)
            data = self.request(
                "GET",
                f"/api/v1/tasks/{task_id}",
                params={"wait_s": wait_s},
                timeout_s=wait_s + 10.0,
            )
            info = TaskInfo.from_json(data)
            if info.done or (deadline is not None and time.monotonic() >= deadline):
                return info

    def cancel(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_json(self.request("POST", f"/api/v1/tasks/{task_id}/cancel"))

    def set_priority(self, task_id: str, priority: str) -> TaskInfo:
        data = self.request("PATCH", f"/api/v1/tasks/{task_id}", json={"priority": priority})
        return TaskInfo.from_json(data)

    def list(self, *, limit: int = 100, **filters: Any) -> builtins.list[TaskInfo]:
        """One page of tasks, newest first (``status``, ``group``, ``priority`` filter)."""
        return list(self.iter_tasks(limit=limit, max_items=limit, **filters))

    def iter_tasks(
        self, *, limit: int = 500, max_items: int | None = None, **filters: Any
    ) -> Iterator[TaskInfo]:
        params = {k: v for k, v in filters.items() if v is not None} | {"limit": limit}
        seen = 0
        while True:
            page = self.request("GET", "/api/v1/tasks", params=params)
            for data in page["tasks"]:
                yield TaskInfo.from_json(data)
                seen += 1
                if max_items is not None and seen >= max_items:
                    return
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def output(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/api/v1/tasks/{task_id}/output")
        return result

    def follow(self, task_id: str) -> Iterator[bytes]:
        """Output as it is produced, until the task ends."""
        base = self._failover.base
        url = f"{base}/api/v1/tasks/{task_id}/output"
        with self._http.stream("GET", url, params={"follow": "true"}, timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                raise_for_problem(response)
            yield from response.iter_bytes()

    # -- workflows --------------------------------------------------------------------------

    def submit_workflow(self, workflow: Mapping[str, Any]) -> dict[str, Any]:
        """Submit a DAG (``name``, ``tasks`` with ``id`` and ``dependencies``, ...); a
        ValidationError lists every problem of an invalid one."""
        body = dict(workflow)
        body.setdefault("idempotency_key", "sdk-" + os.urandom(12).hex())
        result: dict[str, Any] = self.request("POST", "/api/v1/workflows", json=body)
        return result

    def workflow(self, workflow_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        """Progress of a workflow; with ``wait_s``, answered when it ends or the wait runs out."""
        result: dict[str, Any] = self.request(
            "GET",
            f"/api/v1/workflows/{workflow_id}",
            params={"wait_s": wait_s},
            timeout_s=wait_s + 10.0,
        )
        return result

    def wait_workflow(self, workflow_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = LONG_POLL_S if deadline is None else max(0.0, deadline - time.monotonic())
            view = self.workflow(workflow_id, wait_s=min(LONG_POLL_S, left))
            if view["status"] != "running" or (
                deadline is not None and time.monotonic() >= deadline
            ):
                return view

    def workflow_graph(self, workflow_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/api/v1/workflows/{workflow_id}/graph")
        return result

    def cancel_workflow(self, workflow_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/api/v1/workflows/{workflow_id}/cancel")
        return result

    def retry_workflow(self, workflow_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/api/v1/workflows/{workflow_id}/retry")
        return result

    # -- agents -----------------------------------------------------------------------------

    def agent(self, name: str | None = None, *, ttl: float = 30.0) -> Agent:
        """An agent session named ``name`` (kept alive in the background until closed); with
        no name inside a task, the task itself. Use it as a context manager."""
        return Agent(self, default_agent_id(name), ttl=ttl)

    def agents(self) -> builtins.list[dict[str, Any]]:
        result: builtins.list[dict[str, Any]] = (self.request("GET", "/api/v1/agents"))["agents"]
        return result

    def message_history(self, **filters: Any) -> builtins.list[dict[str, Any]]:
        """``agent``, ``type``, ``correlation_id``, ``since``, ``until``, ``limit``."""
        params = {k: v for k, v in filters.items() if v is not None}
        answer = self.request("GET", "/api/v1/messages", params=params)
        result: builtins.list[dict[str, Any]] = answer["messages"]
        return result

    # -- locks ------------------------------------------------------------------------------

    def lock(
        self,
        name: str,
        *,
        ttl: float = 30.0,
        wait: float | None = None,
        mode: str = "exclusive",
        limit: int = 1,
        session: str | None = None,
        owner: str | None = None,
        metadata: dict[str, Any] | None = None,
        on_lost: Callable[[Lease], None] | None = None,
    ) -> LockContext:
        """A lease on ``name``, renewed in the background while the ``with`` block runs.

        ``wait``: seconds to wait for the lock (``None``: for ever, ``0``: fail at once with
        ConflictError). Inside a task the holder is the task attempt; elsewhere a fresh session
        unless ``session`` names one. ``lease.token`` is the fencing token; ``lease.lost`` says
        whether the lease may have ended, and ``on_lost`` is called the moment it does.
        """
        return LockContext(
            self,
            name,
            ttl=ttl,
            wait=wait,
            mode=mode,
            limit=limit,
            session=session,
            owner=owner,
            metadata=metadata,
            on_lost=on_lost,
        )

    def locks(self) -> builtins.list[dict[str, Any]]:
        result: builtins.list[dict[str, Any]] = (self.request("GET", "/api/v1/locks"))["locks"]
        return result

    def lock_info(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/api/v1/locks/{name}")
        return result

    def force_release(self, name: str, reason: str | None = None) -> dict[str, Any]:
        body = {"reason": reason} if reason else None
        result: dict[str, Any] = self.request(
            "POST", f"/api/v1/locks/{name}/force-release", json=body
        )
        return result

    # -- workers and the rest ---------------------------------------------------------------

    def workers(self) -> builtins.list[dict[str, Any]]:
        result: builtins.list[dict[str, Any]] = self.request("GET", "/api/v1/workers")["workers"]
        return result

    def drain_worker(self, worker_id: str, drain: bool = True) -> dict[str, Any]:
        state = "draining" if drain else "active"
        result: dict[str, Any] = self.request(
            "PATCH", f"/api/v1/workers/{worker_id}", json={"state": state}
        )
        return result

    def remove_worker(self, worker_id: str, force: bool = False) -> None:
        self.request("DELETE", f"/api/v1/workers/{worker_id}", params={"force": force})

    def queue_stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/api/v1/queue/stats")
        return result

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/health")
        return result

    # -- tokens (admin) ---------------------------------------------------------------------

    def create_token(
        self, role: str, *, ttl_s: float | None = None, name: str | None = None
    ) -> dict[str, Any]:
        """A new token with ``role`` (client, worker, read-only); its ``token`` field is the
        secret, shown only in this answer."""
        body = token_body(role, ttl_s, name)
        result: dict[str, Any] = self.request("POST", "/api/v1/tokens", json=body)
        return result

    def list_tokens(self) -> builtins.list[dict[str, Any]]:
        """Every token (never a secret): id, name, role, created and expiry times."""
        result: dict[str, Any] = self.request("GET", "/api/v1/tokens")
        tokens: builtins.list[dict[str, Any]] = result["tokens"]
        return tokens

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        """Revoke a token by id: refused (401) from its next request on."""
        result: dict[str, Any] = self.request("DELETE", f"/api/v1/tokens/{token_id}")
        return result
