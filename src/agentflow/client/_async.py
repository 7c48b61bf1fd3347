"""The asyncio client: the same operations as :class:`Client`, awaited."""

from __future__ import annotations

import asyncio
import builtins
import itertools
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx

from agentflow.client._agents import AsyncAgent, default_agent_id
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
from agentflow.client._locks import AsyncLockContext, Lease
from agentflow.client._sockets import FrameSocket
from agentflow.errors import NotLeaderError

__all__ = ["AsyncClient"]

BATCH = 1000
LONG_POLL_S = 30.0


class AsyncClient:
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
        self._http = httpx.AsyncClient(headers=headers, timeout=timeout_s, verify=self.verify)
        self._lock_socket: FrameSocket | None = None

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

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._lock_socket is not None:
            await self._lock_socket.close()
        await self._http.aclose()

    @property
    def lock_socket(self) -> FrameSocket:
        """The socket every lease of this client takes and renews its locks over."""
        if self._lock_socket is None:
            self._lock_socket = FrameSocket(self, "/api/v1/locks")
        return self._lock_socket

    async def request(
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
                await asyncio.sleep(delay)
            try:
                response = await self._http.request(
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

    async def submit(self, command: str | None = None, **fields: Any) -> TaskInfo:
        body = build_task(command, **fields)
        return TaskInfo.from_json(await self.request("POST", "/api/v1/tasks", json=body))

    async def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> list[str]:
        specs = [build_task(**spec) for spec in tasks]
        ids: list[str] = []
        for start in range(0, len(specs), BATCH):
            chunk = specs[start : start + BATCH]
            answer = await self.request("POST", "/api/v1/tasks/batch", json={"tasks": chunk})
            ids += [t["id"] for t in answer["tasks"]]
        return ids

    async def get(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_json(await self.request("GET", f"/api/v1/tasks/{task_id}"))

    async def wait(self, task_id: str, timeout_s: float | None = None) -> TaskInfo:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = LONG_POLL_S if deadline is None else max(0.0, deadline - time.monotonic())
            wait_s = min(LONG_POLL_S, left)
            data = await self.request(
                "GET",
                f"/api/v1/tasks/{task_id}",
                params={"wait_s": wait_s},
                timeout_s=wait_s + 10.0,
            )
            info = TaskInfo.from_json(data)
            if info.done or (deadline is not None and time.monotonic() >= deadline):
                return info

    async def cancel(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_json(await self.request("POST", f"/api/v1/tasks/{task_id}/cancel"))

    async def list(self, *, limit: int = 100, **filters: Any) -> builtins.list[TaskInfo]:
        params = {k: v for k, v in filters.items() if v is not None} | {"limit": limit}
        page = await self.request("GET", "/api/v1/tasks", params=params)
        return [TaskInfo.from_json(t) for t in page["tasks"]]

    async def output(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/api/v1/tasks/{task_id}/output")
        return result

    async def follow(self, task_id: str) -> AsyncIterator[bytes]:
        base = self._failover.base
        url = f"{base}/api/v1/tasks/{task_id}/output"
        async with self._http.stream(
            "GET", url, params={"follow": "true"}, timeout=None
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                raise_for_problem(response)
            async for chunk in response.aiter_bytes():
                yield chunk

    async def submit_workflow(self, workflow: Mapping[str, Any]) -> dict[str, Any]:
        body = dict(workflow)
        body.setdefault("idempotency_key", "sdk-" + os.urandom(12).hex())
        result: dict[str, Any] = await self.request("POST", "/api/v1/workflows", json=body)
        return result

    async def workflow(self, workflow_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "GET",
            f"/api/v1/workflows/{workflow_id}",
            params={"wait_s": wait_s},
            timeout_s=wait_s + 10.0,
        )
        return result

    # -- agents -----------------------------------------------------------------------------

    def agent(self, name: str | None = None, *, ttl: float = 30.0) -> AsyncAgent:
        """An agent session named ``name`` (kept alive in the background until closed); with
        no name inside a task, the task itself. Use it as a context manager."""
        return AsyncAgent(self, default_agent_id(name), ttl=ttl)

    async def agents(self) -> builtins.list[dict[str, Any]]:
        result: builtins.list[dict[str, Any]] = (await self.request("GET", "/api/v1/agents"))[
            "agents"
        ]
        return result

    async def message_history(self, **filters: Any) -> builtins.list[dict[str, Any]]:
        """``agent``, ``type``, ``correlation_id``, ``since``, ``until``, ``limit``."""
        params = {k: v for k, v in filters.items() if v is not None}
        answer = await self.request("GET", "/api/v1/messages", params=params)
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
    ) -> AsyncLockContext:
        """A lease on ``name``, renewed in the background while the ``async with`` block runs.

        ``wait``: seconds to wait for the lock (``None``: for ever, ``0``: fail at once with
        ConflictError). Inside a task the holder is the task attempt; elsewhere a fresh session
        unless ``session`` names one. ``lease.token`` is the fencing token; ``lease.lost`` says
        whether the lease may have ended, and ``on_lost`` is called the moment it does.
        """
        return AsyncLockContext(
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

    async def locks(self) -> builtins.list[dict[str, Any]]:
        result: builtins.list[dict[str, Any]] = (await self.request("GET", "/api/v1/locks"))[
            "locks"
        ]
        return result

    async def lock_info(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/api/v1/locks/{name}")
        return result

    async def force_release(self, name: str, reason: str | None = None) -> dict[str, Any]:
        body = {"reason": reason} if reason else None
        result: dict[str, Any] = await self.request(
            "POST", f"/api/v1/locks/{name}/force-release", json=body
        )
        return result

    async def workers(self) -> builtins.list[dict[str, Any]]:
        result: builtins.list[dict[str, Any]] = (await self.request("GET", "/api/v1/workers"))[
            "workers"
        ]
        return result

    async def queue_stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/api/v1/queue/stats")
        return result

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/health")
        return result

    # -- tokens (admin) ---------------------------------------------------------------------

    async def create_token(
        self, role: str, *, ttl_s: float | None = None, name: str | None = None
    ) -> dict[str, Any]:
        """A new token with ``role`` (client, worker, read-only); its ``token`` field is the
        secret, shown only in this answer."""
        body = token_body(role, ttl_s, name)
        result: dict[str, Any] = await self.request("POST", "/api/v1/tokens", json=body)
        return result

    async def list_tokens(self) -> builtins.list[dict[str, Any]]:
        """Every token (never a secret): id, name, role, created and expiry times."""
        result: dict[str, Any] = await self.request("GET", "/api/v1/tokens")
        tokens: builtins.list[dict[str, Any]] = result["tokens"]
        return tokens

    async def revoke_token(self, token_id: str) -> dict[str, Any]:
        """Revoke a token by id: refused (401) from its next request on."""
        result: dict[str, Any] = await self.request("DELETE", f"/api/v1/tokens/{token_id}")
        return result
