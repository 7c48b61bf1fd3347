"""The synchronous client."""

from __future__ import annotations

import builtins
import contextlib
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, overload

import httpx

from agentflow.client import _calls as calls
from agentflow.client._agents import Agent, default_agent_id
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
from agentflow.client._functions import TaskFuture
from agentflow.client._locks import Lease, LockContext
from agentflow.client._sockets import SyncFrameSocket
from agentflow.client._waits import SyncWaits
from agentflow.errors import ForbiddenError

__all__ = ["Client"]

T = TypeVar("T")


class Client(SyncWaits):
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
        self._submit_socket: SyncFrameSocket | None = None
        self._timeout_s = timeout_s
        self._submits = 0  # the first submit goes by HTTP: a one-off does not open a socket

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._lock_socket is not None:
            self._lock_socket.close()
        if self._submit_socket is not None:
            self._submit_socket.close()
        if self._end_socket is not None:
            self._end_socket.close()
        self._http.close()

    @property
    def lock_socket(self) -> SyncFrameSocket:
        """The socket every lease of this client takes and renews its locks over."""
        if self._lock_socket is None:
            self._lock_socket = SyncFrameSocket(self, "/api/v1/locks")
        return self._lock_socket

    @property
    def submit_socket(self) -> SyncFrameSocket:
        """The socket this client submits over from its second submit on
        (``WS /api/v1/submit``); HTTP whenever it is down."""
        if self._submit_socket is None:
            self._submit_socket = SyncFrameSocket(self, calls.SUBMIT_SOCKET)
        return self._submit_socket

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

    def _send(self, call: Call[T]) -> T:
        frame = calls.socket_frame(call)
        if frame is not None:
            self._submits += 1
            if self._submits > 1:
                try:
                    return call.parse(self.submit_socket.call(frame, self._timeout_s)["body"])
                except SOCKET_FALLBACK:
                    pass  # by HTTP, with the same idempotency keys: no task is made twice
        answer = self.request(
            call.method, call.path, params=call.params, json=call.json, timeout_s=call.timeout_s
        )
        return call.parse(answer)

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
        :class:`TaskFuture` (task options come from the ``@task(...)`` decorator). A function
        workers cannot import by name (a lambda, a closure, one of ``__main__``), or arguments
        that are not JSON, go by value (cloudpickle): workers need
        ``--allow-pickled-functions`` to run them."""
        if callable(command):
            return TaskFuture(self, self._send(calls.submit_function(command, args, fields)))
        return self._send(calls.submit_command(command, args, fields))

    def map(self, fn: Callable[..., Any], items: Iterable[Any]) -> builtins.list[TaskFuture]:
        """``fn(item)`` for every item, submitted in batches; one future each, in order."""
        ids = self.submit_many(calls.map_specs(fn, items))
        return [TaskFuture(self, task_id) for task_id in ids]

    def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> builtins.list[str]:
        """Submit many tasks through the batch endpoint; returns their ids in order."""
        ids: builtins.list[str] = []
        for batch in calls.batches(tasks):
            ids += self._send(batch)
        return ids

    def get(self, task_id: str) -> TaskInfo:
        return self._send(calls.get_task(task_id))

    def result(self, task_id: str, timeout_s: float | None = None) -> Any:
        """The value a function task returned, once it finishes (a workflow's task too);
        :class:`TaskFailedError` if it did not complete."""
        return TaskFuture(self, task_id).result(timeout_s)

    def cancel(self, task_id: str) -> TaskInfo:
        return self._send(calls.cancel_task(task_id))

    def set_priority(self, task_id: str, priority: str) -> TaskInfo:
        """Move a waiting task to another priority (``urgent``, ``high``, ``medium``, ``low``)."""
        return self._send(calls.set_priority(task_id, priority))

    def list(self, *, limit: int = 100, **filters: Any) -> builtins.list[TaskInfo]:
        """One page of tasks, newest first (``status``, ``group``, ``priority`` filter)."""
        return list(self.iter_tasks(limit=limit, max_items=limit, **filters))

    def iter_tasks(
        self, *, limit: int = 500, max_items: int | None = None, **filters: Any
    ) -> Iterator[TaskInfo]:
        """Every task (filtered as :meth:`list`), fetched ``limit`` a page as the loop goes."""
        pages = calls.TaskPages(limit, max_items, filters)
        while not pages.done:
            yield from pages.take(self._send(pages.call()))

    def output(self, task_id: str) -> dict[str, Any]:
        return self._send(calls.task_output(task_id))

    def follow(self, task_id: str, *, stream: str = "stdout", offset: int = 0) -> Iterator[bytes]:
        """``stream`` (``stdout`` or ``stderr``) from byte ``offset`` on, as it is produced,
        until the task ends. Like every call it follows the leader: a master that is down or
        dies mid-stream is left for another, and the stream resumes at the byte it reached."""
        cursor = calls.OutputCursor(task_id, stream, offset)
        retries = self._failover.attempts()
        last: Exception | None = None
        while True:
            try:
                for chunk in self._stream_output(cursor):
                    retries = self._failover.attempts()  # progress: a fresh retry budget
                    yield chunk
                if self.get(task_id).done:
                    return
            except RETRYABLE as exc:  # the stream broke off: go on from another master
                last = exc
                self._failover.failed(exc)
            delay = next(retries, None)
            if delay is None:
                raise unreachable(self.urls, last)
            time.sleep(delay)

    def _stream_output(self, cursor: calls.OutputCursor) -> Iterator[bytes]:
        url = self._failover.base + cursor.path
        timeout = httpx.Timeout(None, connect=self._http.timeout.connect)
        with self._http.stream("GET", url, params=cursor.params(), timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                raise_for_problem(response)
            for chunk in response.iter_bytes():
                yield cursor.advance(chunk)

    # -- workflows --------------------------------------------------------------------------

    def submit_workflow(self, workflow: Mapping[str, Any]) -> dict[str, Any]:
        """Submit a DAG (``name``, ``tasks`` with ``id`` and ``dependencies``, ...); a
        ValidationError lists every problem of an invalid one. A task's ``function`` may be a
        callable (with ``args``, ``kwargs``); one with a ``parents`` parameter gets its
        parents' results, ``{parent id: value}``."""
        return self._send(calls.submit_workflow(workflow))

    def workflow(self, workflow_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        """Progress of a workflow; with ``wait_s``, answered when it ends or the wait runs out."""
        return self._send(calls.get_workflow(workflow_id, wait_s))

    def wait_workflow(self, workflow_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """Block until the workflow is no longer running (or ``timeout_s`` passes): its end
        arrives over the event stream (long polls if the master refuses the socket)."""
        deadline = Deadline(timeout_s)
        view = self.workflow(workflow_id)
        if not calls.workflow_running(view):
            return view
        with contextlib.suppress(ForbiddenError):  # refused: the long polls below
            self._workflow_end(workflow_id, timeout_s)
        while True:
            view = self.workflow(workflow_id, wait_s=deadline.wait_s())
            if not calls.workflow_running(view) or deadline.passed:
                return view

    def workflow_graph(self, workflow_id: str) -> dict[str, Any]:
        """Nodes, edges and the analysis (critical path) of a workflow."""
        return self._send(calls.workflow_graph(workflow_id))

    def cancel_workflow(self, workflow_id: str) -> dict[str, Any]:
        return self._send(calls.cancel_workflow(workflow_id))

    def retry_workflow(self, workflow_id: str) -> dict[str, Any]:
        """Run again what failed or was cancelled, and what depends on it."""
        return self._send(calls.retry_workflow(workflow_id))

    # -- agents -----------------------------------------------------------------------------

    @renamed(ttl="ttl_s")
    def agent(self, name: str | None = None, *, ttl_s: float = 30.0) -> Agent:
        """An agent session named ``name`` (kept alive in the background until closed); with
        no name inside a task, the task itself. Use it as a context manager."""
        return Agent(self, default_agent_id(name), ttl_s=ttl_s)

    def agents(self) -> builtins.list[dict[str, Any]]:
        return self._send(calls.list_agents())

    def message_history(self, **filters: Any) -> builtins.list[dict[str, Any]]:
        """``agent``, ``type``, ``correlation_id``, ``since``, ``until``, ``limit``."""
        return self._send(calls.message_history(filters))

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
    ) -> LockContext:
        """A lease on ``name``, renewed in the background while the ``with`` block runs.

        ``wait_s``: seconds to wait for the lock (``None``: for ever, ``0``: fail at once with
        ConflictError). Inside a task the holder is the task attempt; elsewhere a fresh session
        unless ``session`` names one. ``lease.token`` is the fencing token; ``lease.lost`` says
        whether the lease may have ended, and ``on_lost`` is called the moment it does.
        """
        return LockContext(
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

    def locks(self) -> builtins.list[dict[str, Any]]:
        return self._send(calls.list_locks())

    def lock_info(self, name: str) -> dict[str, Any]:
        return self._send(calls.lock_info(name))

    def force_release(self, name: str, reason: str | None = None) -> dict[str, Any]:
        return self._send(calls.force_release(name, reason))

    # -- workers and the rest ---------------------------------------------------------------

    def workers(self) -> builtins.list[dict[str, Any]]:
        return self._send(calls.list_workers())

    def drain_worker(self, worker_id: str, drain: bool = True) -> dict[str, Any]:
        """Stop (``drain=False``: resume) new assignments to a worker; it finishes its tasks."""
        return self._send(calls.drain_worker(worker_id, drain))

    def remove_worker(self, worker_id: str, force: bool = False) -> None:
        """Forget a worker (``force``: even while it is connected or running tasks)."""
        self._send(calls.remove_worker(worker_id, force))

    def queue_stats(self) -> dict[str, Any]:
        return self._send(calls.queue_stats())

    def health(self) -> dict[str, Any]:
        return self._send(calls.health())

    # -- tokens (admin) ---------------------------------------------------------------------

    def create_token(
        self, role: str, *, ttl_s: float | None = None, name: str | None = None
    ) -> dict[str, Any]:
        """A new token with ``role`` (client, worker, read-only); its ``token`` field is the
        secret, shown only in this answer."""
        return self._send(calls.create_token(role, ttl_s, name))

    def list_tokens(self) -> builtins.list[dict[str, Any]]:
        """Every token (never a secret): id, name, role, created and expiry times."""
        return self._send(calls.list_tokens())

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        """Revoke a token by id: refused (401) from its next request on."""
        return self._send(calls.revoke_token(token_id))
