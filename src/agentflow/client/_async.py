"""The asyncio client: every operation of :class:`Client`, awaited.

Both twins send the same :class:`~agentflow.client._calls.Call` for each operation; the
differences are only those of asyncio: a method that does I/O is a coroutine, ``iter_tasks``
and ``follow`` are async iterators, ``close`` is ``aclose``, and a submitted function's handle
is an :class:`AsyncTaskFuture` (awaitable). ``tests/unit/test_sdk_parity.py`` keeps the two
surfaces equal.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, overload

import httpx

from agentflow.client import _calls as calls
from agentflow.client._agents import AsyncAgent, default_agent_id
from agentflow.client._calls import Call
from agentflow.client._core import (
    RETRY_STATUSES,
    RETRYABLE,
    SOCKET_FALLBACK,
    Deadline,
    Failover,
    TaskInfo,
    api_token,
    master_urls,
    raise_for_problem,
    renamed,
    unreachable,
    verify,
)
from agentflow.client._functions import AsyncTaskFuture
from agentflow.client._locks import AsyncLockContext, Lease
from agentflow.client._sockets import FrameSocket
from agentflow.client._waits import AsyncWaits
from agentflow.errors import ForbiddenError

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient(AsyncWaits):
    """:class:`Client` for asyncio: the same methods and parameters, awaited.

    >>> async with AsyncClient("http://127.0.0.1:6767") as c:
    ...     task = await c.submit("echo hello", priority="high")
    ...     (await c.wait(task.id)).ok
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
        self._http = httpx.AsyncClient(headers=headers, timeout=timeout_s, verify=self.verify)
        self._lock_socket: FrameSocket | None = None
        self._submit_socket: FrameSocket | None = None
        self._timeout_s = timeout_s
        self._submits = 0  # the first submit goes by HTTP: a one-off does not open a socket

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._lock_socket is not None:
            await self._lock_socket.close()
        if self._submit_socket is not None:
            await self._submit_socket.close()
        if self._end_socket is not None:
            await self._end_socket.close()
        await self._http.aclose()

    @property
    def lock_socket(self) -> FrameSocket:
        """The socket every lease of this client takes and renews its locks over."""
        if self._lock_socket is None:
            self._lock_socket = FrameSocket(self, "/api/v1/locks")
        return self._lock_socket

    @property
    def submit_socket(self) -> FrameSocket:
        """The socket this client submits over from its second submit on
        (``WS /api/v1/submit``); HTTP whenever it is down."""
        if self._submit_socket is None:
            self._submit_socket = FrameSocket(self, calls.SUBMIT_SOCKET)
        return self._submit_socket

    # -- transport --------------------------------------------------------------------------

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

    async def _send(self, call: Call[T]) -> T:
        frame = calls.socket_frame(call)
        if frame is not None:
            self._submits += 1
            if self._submits > 1:
                try:
                    reply = await self.submit_socket.call(frame, self._timeout_s)
                    return call.parse(reply["body"])
                except SOCKET_FALLBACK:
                    pass  # by HTTP, with the same idempotency keys: no task is made twice
        answer = await self.request(
            call.method, call.path, params=call.params, json=call.json, timeout_s=call.timeout_s
        )
        return call.parse(answer)

    # -- tasks ------------------------------------------------------------------------------

    @overload
    async def submit(
        self, command: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> AsyncTaskFuture: ...

    @overload
    async def submit(self, command: str | None = None, /, **fields: Any) -> TaskInfo: ...

    async def submit(
        self, command: str | Callable[..., Any] | None = None, /, *args: Any, **fields: Any
    ) -> TaskInfo | AsyncTaskFuture:
        """As :meth:`Client.submit`; a function's call returns an :class:`AsyncTaskFuture`."""
        if callable(command):
            task_id = await self._send(calls.submit_function(command, args, fields))
            return AsyncTaskFuture(self, task_id)
        return await self._send(calls.submit_command(command, args, fields))

    async def map(
        self, fn: Callable[..., Any], items: Iterable[Any]
    ) -> builtins.list[AsyncTaskFuture]:
        """``fn(item)`` for every item, submitted in batches (done when this returns); one
        awaitable future each, in order: ``await asyncio.gather(*await client.map(fn, xs))``
        waits for every value."""
        ids = await self.submit_many(calls.map_specs(fn, items))
        return [AsyncTaskFuture(self, task_id) for task_id in ids]

    async def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> builtins.list[str]:
        """Submit many tasks through the batch endpoint; returns their ids in order."""
        ids: builtins.list[str] = []
        for batch in calls.batches(tasks):
            ids += await self._send(batch)
        return ids

    async def get(self, task_id: str) -> TaskInfo:
        return await self._send(calls.get_task(task_id))

    async def result(self, task_id: str, timeout_s: float | None = None) -> Any:
        """The value a function task returned, once it finishes (a workflow's task too);
        :class:`TaskFailedError` if it did not complete."""
        return await AsyncTaskFuture(self, task_id).result(timeout_s)

    async def cancel(self, task_id: str) -> TaskInfo:
        return await self._send(calls.cancel_task(task_id))

    async def set_priority(self, task_id: str, priority: str) -> TaskInfo:
        """Move a waiting task to another priority (``urgent``, ``high``, ``medium``, ``low``)."""
        return await self._send(calls.set_priority(task_id, priority))

    async def list(self, *, limit: int = 100, **filters: Any) -> builtins.list[TaskInfo]:
        """One page of tasks, newest first (``status``, ``group``, ``priority`` filter)."""
        return [info async for info in self.iter_tasks(limit=limit, max_items=limit, **filters)]

    async def iter_tasks(
        self, *, limit: int = 500, max_items: int | None = None, **filters: Any
    ) -> AsyncIterator[TaskInfo]:
        """Every task (filtered as :meth:`list`), fetched ``limit`` a page as the loop goes:
        ``async for info in client.iter_tasks(status="failed")``."""
        pages = calls.TaskPages(limit, max_items, filters)
        while not pages.done:
            for info in pages.take(await self._send(pages.call())):
                yield info

    async def output(self, task_id: str) -> dict[str, Any]:
        return await self._send(calls.task_output(task_id))

    async def follow(
        self, task_id: str, *, stream: str = "stdout", offset: int = 0
    ) -> AsyncIterator[bytes]:
        """As :meth:`Client.follow`: one stream from byte ``offset``, across failovers."""
        cursor = calls.OutputCursor(task_id, stream, offset)
        retries = self._failover.attempts()
        last: Exception | None = None
        while True:
            try:
                async for chunk in self._stream_output(cursor):
                    retries = self._failover.attempts()  # progress: a fresh retry budget
                    yield chunk
                if (await self.get(task_id)).done:
                    return
            except RETRYABLE as exc:  # the stream broke off: go on from another master
                last = exc
                self._failover.failed(exc)
            delay = next(retries, None)
            if delay is None:
                raise unreachable(self.urls, last)
            await asyncio.sleep(delay)

    async def _stream_output(self, cursor: calls.OutputCursor) -> AsyncIterator[bytes]:
        url = self._failover.base + cursor.path
        timeout = httpx.Timeout(None, connect=self._http.timeout.connect)
        async with self._http.stream(
            "GET", url, params=cursor.params(), timeout=timeout
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                raise_for_problem(response)
            async for chunk in response.aiter_bytes():
                yield cursor.advance(chunk)

    # -- workflows --------------------------------------------------------------------------

    async def submit_workflow(self, workflow: Mapping[str, Any]) -> dict[str, Any]:
        """Submit a DAG (``name``, ``tasks`` with ``id`` and ``dependencies``, ...); a
        ValidationError lists every problem of an invalid one. A task's ``function`` may be a
        callable (with ``args``, ``kwargs``); one with a ``parents`` parameter gets its
        parents' results, ``{parent id: value}``."""
        return await self._send(calls.submit_workflow(workflow))

    async def workflow(self, workflow_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        """Progress of a workflow; with ``wait_s``, answered when it ends or the wait runs out."""
        return await self._send(calls.get_workflow(workflow_id, wait_s))

    async def wait_workflow(
        self, workflow_id: str, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """Until the workflow is no longer running (or ``timeout_s`` passes), as
        :meth:`Client.wait_workflow`."""
        deadline = Deadline(timeout_s)
        view = await self.workflow(workflow_id)
        if not calls.workflow_running(view):
            return view
        with contextlib.suppress(ForbiddenError):  # refused: the long polls below
            await self._workflow_end(workflow_id, timeout_s)
        while True:
            view = await self.workflow(workflow_id, wait_s=deadline.wait_s())
            if not calls.workflow_running(view) or deadline.passed:
                return view

    async def workflow_graph(self, workflow_id: str) -> dict[str, Any]:
        """Nodes, edges and the analysis (critical path) of a workflow."""
        return await self._send(calls.workflow_graph(workflow_id))

    async def cancel_workflow(self, workflow_id: str) -> dict[str, Any]:
        return await self._send(calls.cancel_workflow(workflow_id))

    async def retry_workflow(self, workflow_id: str) -> dict[str, Any]:
        """Run again what failed or was cancelled, and what depends on it."""
        return await self._send(calls.retry_workflow(workflow_id))

    # -- agents -----------------------------------------------------------------------------

    @renamed(ttl="ttl_s")
    def agent(self, name: str | None = None, *, ttl_s: float = 30.0) -> AsyncAgent:
        """An agent session named ``name`` (kept alive in the background until closed); with
        no name inside a task, the task itself. Use it as an async context manager."""
        return AsyncAgent(self, default_agent_id(name), ttl_s=ttl_s)

    async def agents(self) -> builtins.list[dict[str, Any]]:
        return await self._send(calls.list_agents())

    async def message_history(self, **filters: Any) -> builtins.list[dict[str, Any]]:
        """``agent``, ``type``, ``correlation_id``, ``since``, ``until``, ``limit``."""
        return await self._send(calls.message_history(filters))

    # -- locks ------------------------------------------------------------------------------

    @renamed(ttl="ttl_s", wait="wait_s")
    def lock(
        self,
        name: str,
        *,
        ttl_s: float = 30.0,
        wait_s: float | None = None,
        mode: str = "exclusive",
        limit: int = 1,
        session: str | None = None,
        owner: str | None = None,
        metadata: dict[str, Any] | None = None,
        on_lost: Callable[[Lease], None] | None = None,
    ) -> AsyncLockContext:
        """A lease on ``name``, renewed in the background while the ``async with`` block runs.

        ``wait_s``: seconds to wait for the lock (``None``: for ever, ``0``: fail at once with
        ConflictError). Inside a task the holder is the task attempt; elsewhere a fresh session
        unless ``session`` names one. ``lease.token`` is the fencing token; ``lease.lost`` says
        whether the lease may have ended, and ``on_lost`` is called the moment it does.
        """
        return AsyncLockContext(
            self,
            name,
            ttl_s=ttl_s,
            wait_s=wait_s,
            mode=mode,
            limit=limit,
            session=session,
            owner=owner,
            metadata=metadata,
            on_lost=on_lost,
        )

    async def locks(self) -> builtins.list[dict[str, Any]]:
        return await self._send(calls.list_locks())

    async def lock_info(self, name: str) -> dict[str, Any]:
        return await self._send(calls.lock_info(name))

    async def force_release(self, name: str, reason: str | None = None) -> dict[str, Any]:
        return await self._send(calls.force_release(name, reason))

    # -- workers and the rest ---------------------------------------------------------------

    async def workers(self) -> builtins.list[dict[str, Any]]:
        return await self._send(calls.list_workers())

    async def drain_worker(self, worker_id: str, drain: bool = True) -> dict[str, Any]:
        """Stop (``drain=False``: resume) new assignments to a worker; it finishes its tasks."""
        return await self._send(calls.drain_worker(worker_id, drain))

    async def remove_worker(self, worker_id: str, force: bool = False) -> None:
        """Forget a worker (``force``: even while it is connected or running tasks)."""
        await self._send(calls.remove_worker(worker_id, force))

    async def queue_stats(self) -> dict[str, Any]:
        return await self._send(calls.queue_stats())

    async def health(self) -> dict[str, Any]:
        return await self._send(calls.health())

    # -- tokens (admin) ---------------------------------------------------------------------

    async def create_token(
        self, role: str, *, ttl_s: float | None = None, name: str | None = None
    ) -> dict[str, Any]:
        """A new token with ``role`` (client, worker, read-only); its ``token`` field is the
        secret, shown only in this answer."""
        return await self._send(calls.create_token(role, ttl_s, name))

    async def list_tokens(self) -> builtins.list[dict[str, Any]]:
        """Every token (never a secret): id, name, role, created and expiry times."""
        return await self._send(calls.list_tokens())

    async def revoke_token(self, token_id: str) -> dict[str, Any]:
        """Revoke a token by id: refused (401) from its next request on."""
        return await self._send(calls.revoke_token(token_id))
