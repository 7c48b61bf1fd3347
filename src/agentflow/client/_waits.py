"""Waiting for many tasks at once, over the client's event socket: ``gather``, ``as_completed``,
``wait_many``, and ``events`` (the stream itself). :class:`SyncWaits` is mixed into
:class:`~agentflow.client.Client`, :class:`AsyncWaits` into
:class:`~agentflow.client.AsyncClient`, with the same members and semantics.

Every wait of a client shares one socket (:mod:`agentflow.client._eventsocket`): a task's end
arrives as one event carrying its outcome (status, exit code, reason, result), so a thousand
results cost no request each. A master that refuses the socket (a role that may not use it)
leaves the waits to long polls, one task at a time.
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from agentflow.client import _calls as calls
from agentflow.client._core import Deadline, SocketAccess, TaskInfo
from agentflow.client._events import Ended, EventStream
from agentflow.client._eventsocket import EVENTS_PATH, EndSocket, SyncEndSocket
from agentflow.client._functions import AsyncTaskFuture, TaskFuture
from agentflow.client._waitcore import Fetch, TaskWait, gathered, outcome_only, whole
from agentflow.errors import TimeoutExpiredError

if TYPE_CHECKING:
    from agentflow.client._core import Failover

__all__ = ["AsyncWaits", "SyncWaits", "task_ids"]

T = TypeVar("T")
Tasks = Iterable[TaskFuture | AsyncTaskFuture | str]


def task_ids(tasks: Tasks) -> list[str]:
    """The ids of ``tasks`` (futures or ids), in order."""
    return [t if isinstance(t, str) else t.id for t in tasks]


class SyncWaits(SocketAccess):
    """The waits of :class:`~agentflow.client.Client`."""

    _end_socket: SyncEndSocket | None = None
    _failover: Failover
    urls: list[str]

    if TYPE_CHECKING:

        def get(self, task_id: str) -> TaskInfo: ...
        def _send(self, call: calls.Call[T]) -> T: ...

    def gather(
        self, tasks: Tasks, *, timeout_s: float | None = None, return_exceptions: bool = False
    ) -> list[Any]:
        """The value of every task (futures or ids), in order, once all have finished; the
        first failure seen raises :class:`TaskFailedError` (or, with ``return_exceptions``,
        stands in the list for its task). :class:`TimeoutExpiredError` past ``timeout_s``."""
        ids = task_ids(tasks)
        return gathered(ids, self._ends(ids, timeout_s), return_exceptions)

    def as_completed(self, tasks: Tasks, *, timeout_s: float | None = None) -> Iterator[TaskFuture]:
        """Each task's future as the task finishes, first finished first (each task once);
        its ``result()`` needs no further request. :class:`TimeoutExpiredError` once
        ``timeout_s`` passes with tasks still running."""
        given = list(tasks)
        futures = {f if isinstance(f, str) else f.id: f for f in given}
        for info in self._ends(task_ids(given), timeout_s):
            future = futures[info.id]
            if not isinstance(future, TaskFuture):
                future = TaskFuture(self, info.id)  # type: ignore[arg-type]
            future._known = info
            yield future

    def wait_many(self, tasks: Tasks, *, timeout_s: float | None = None) -> list[TaskInfo]:
        """Every task's outcome (status, exit code, reason, result), in order, once all have
        finished; when ``timeout_s`` passes first, those still running as they are now (their
        full record). :meth:`get` has a finished task's full record."""
        ids = task_ids(tasks)
        found: dict[str, TaskInfo] = {}
        try:
            for info in self._ends(ids, timeout_s):
                found[info.id] = info
        except TimeoutExpiredError:
            pass
        return [found[i] if i in found else self.get(i) for i in ids]

    def wait(self, task_id: str, timeout_s: float | None = None) -> TaskInfo:
        """Block until the task finishes (or ``timeout_s`` passes; then its current state):
        its end comes over the event socket, then its full record in one request."""
        info = self.wait_many([task_id], timeout_s=timeout_s)[0]
        return whole(info, self.get(task_id)) if outcome_only(info) else info

    def _socket(self) -> SyncEndSocket:
        if self._end_socket is None:
            self._end_socket = SyncEndSocket(self)  # type: ignore[arg-type]
        return self._end_socket

    def _ends(self, ids: list[str], timeout_s: float | None) -> Iterator[TaskInfo]:
        """Each task's end as it arrives, first finished first."""
        deadline, wait = Deadline(timeout_s), TaskWait(ids, timeout_s)
        socket = self._socket()
        inbox: queue.SimpleQueue[Ended] = queue.SimpleQueue()
        sink = inbox.put
        try:
            while not wait.done:
                if not socket.usable:  # without the socket: one long poll per task, in order
                    for task_id in wait.polls():
                        yield wait.polled(self._long_poll(task_id, deadline.left_s()))
                    return
                socket.watch(wait.more(), sink)
                try:
                    ended = inbox.get(timeout=deadline.left_s())
                except queue.Empty:
                    raise wait.timed_out() from None
                info = wait.heard(ended, socket.usable)
                if isinstance(info, Fetch):  # a task the master did not know
                    info = wait.fetched(self.get(info.task_id))
                if info is not None:
                    yield info
        finally:
            socket.unwatch(wait.waiting, sink)

    def _long_poll(self, task_id: str, timeout_s: float | None) -> TaskInfo:
        """The task once it finishes (or ``timeout_s`` passes; then its current state), by
        long polls of the master."""
        deadline = Deadline(timeout_s)
        while True:
            info = self._send(calls.get_task(task_id, wait_s=deadline.wait_s()))
            if info.done or deadline.passed:
                return info

    def events(
        self,
        *,
        task_ids: Iterable[str] | None = None,
        workflow_id: str | None = None,
        group: str | None = None,
        kinds: Iterable[str] | None = None,
        from_index: int | None = None,
        current: bool = False,
        follow: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """The events the master holds that the filters take (those after ``from_index``
        only, if given; with ``current``, instead, the current state of the named tasks and
        workflow), each a dict with its ``index`` and ``kind``; with ``follow``, then every
        new one as it applies, resuming on another master after a drop. A resume point no
        master holds any more raises :class:`EventsLostError`."""
        stream = EventStream(
            task_ids=task_ids,
            workflow_id=workflow_id,
            group=group,
            kinds=kinds,
            from_index=from_index,
            current=current,
            follow=follow,
        )
        yield from self._stream(stream, Deadline(None))

    def _workflow_end(self, workflow_id: str, timeout_s: float | None) -> None:
        """Until the workflow's end event arrives, or ``timeout_s`` passes."""
        stream = EventStream(workflow_id=workflow_id, kinds=["workflow"], current=True)
        for event in self._stream(stream, Deadline(timeout_s)):
            if event["status"] != "running":
                return

    def _stream(self, stream: EventStream, deadline: Deadline) -> Iterator[dict[str, Any]]:
        """What ``stream`` reads, over one socket at a time, until it is finished or the
        deadline passes."""
        from websockets.sync.client import connect

        retries = self._failover.attempts()
        while True:
            url = self.ws_url(EVENTS_PATH)
            try:
                with connect(url, **stream.options, **self.ws_options(url)) as ws:
                    ws.send(stream.first_frame())
                    while True:
                        try:
                            raw = ws.recv(timeout=deadline.left_s())
                        except TimeoutError:
                            return
                        yield from stream.take(raw)
                        retries = self._failover.attempts()  # progress: a fresh budget
                        if stream.finished:
                            return
            except Exception as exc:
                stream.failed(exc)
            delay = next(retries, None)
            if delay is None:
                raise stream.unreachable(self.urls)
            self.follow_leader(None)
            time.sleep(delay)


class AsyncWaits(SocketAccess):
    """The waits of :class:`~agentflow.client.AsyncClient`: :class:`SyncWaits`' awaited."""

    _end_socket: EndSocket | None = None
    _failover: Failover
    urls: list[str]

    if TYPE_CHECKING:

        async def get(self, task_id: str) -> TaskInfo: ...
        async def _send(self, call: calls.Call[T]) -> T: ...

    async def gather(
        self, tasks: Tasks, *, timeout_s: float | None = None, return_exceptions: bool = False
    ) -> list[Any]:
        """As :meth:`Client.gather`."""
        ids = task_ids(tasks)
        infos = [info async for info in self._ends(ids, timeout_s)]
        return gathered(ids, infos, return_exceptions)

    async def as_completed(
        self, tasks: Tasks, *, timeout_s: float | None = None
    ) -> AsyncIterator[AsyncTaskFuture]:
        """As :meth:`Client.as_completed`: ``async for future in client.as_completed(fs)``."""
        given = list(tasks)
        futures = {f if isinstance(f, str) else f.id: f for f in given}
        async for info in self._ends(task_ids(given), timeout_s):
            future = futures[info.id]
            if not isinstance(future, AsyncTaskFuture):
                future = AsyncTaskFuture(self, info.id)  # type: ignore[arg-type]
            future._known = info
            yield future

    async def wait_many(self, tasks: Tasks, *, timeout_s: float | None = None) -> list[TaskInfo]:
        """As :meth:`Client.wait_many`."""
        ids = task_ids(tasks)
        found: dict[str, TaskInfo] = {}
        try:
            async for info in self._ends(ids, timeout_s):
                found[info.id] = info
        except TimeoutExpiredError:
            pass
        return [found[i] if i in found else await self.get(i) for i in ids]

    async def wait(self, task_id: str, timeout_s: float | None = None) -> TaskInfo:
        """As :meth:`Client.wait`."""
        info = (await self.wait_many([task_id], timeout_s=timeout_s))[0]
        return whole(info, await self.get(task_id)) if outcome_only(info) else info

    def _socket(self) -> EndSocket:
        if self._end_socket is None:
            self._end_socket = EndSocket(self)  # type: ignore[arg-type]
        return self._end_socket

    async def _ends(self, ids: list[str], timeout_s: float | None) -> AsyncIterator[TaskInfo]:
        deadline, wait = Deadline(timeout_s), TaskWait(ids, timeout_s)
        socket = self._socket()
        inbox: asyncio.Queue[Ended] = asyncio.Queue()
        sink = inbox.put_nowait
        try:
            while not wait.done:
                if not socket.usable:
                    for task_id in wait.polls():
                        yield wait.polled(await self._long_poll(task_id, deadline.left_s()))
                    return
                socket.watch(wait.more(), sink)
                try:
                    ended = await asyncio.wait_for(inbox.get(), deadline.left_s())
                except TimeoutError:
                    raise wait.timed_out() from None
                info = wait.heard(ended, socket.usable)
                if isinstance(info, Fetch):
                    info = wait.fetched(await self.get(info.task_id))
                if info is not None:
                    yield info
        finally:
            socket.unwatch(wait.waiting, sink)

    async def _long_poll(self, task_id: str, timeout_s: float | None) -> TaskInfo:
        deadline = Deadline(timeout_s)
        while True:
            info = await self._send(calls.get_task(task_id, wait_s=deadline.wait_s()))
            if info.done or deadline.passed:
                return info

    async def events(
        self,
        *,
        task_ids: Iterable[str] | None = None,
        workflow_id: str | None = None,
        group: str | None = None,
        kinds: Iterable[str] | None = None,
        from_index: int | None = None,
        current: bool = False,
        follow: bool = False,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """As :meth:`Client.events`: ``async for event in client.events(...)`` (close it with
        ``contextlib.aclosing`` when leaving the loop early)."""
        stream = EventStream(
            task_ids=task_ids,
            workflow_id=workflow_id,
            group=group,
            kinds=kinds,
            from_index=from_index,
            current=current,
            follow=follow,
        )
        async for event in self._stream(stream, Deadline(None)):
            yield event

    async def _workflow_end(self, workflow_id: str, timeout_s: float | None) -> None:
        stream = EventStream(workflow_id=workflow_id, kinds=["workflow"], current=True)
        async for event in self._stream(stream, Deadline(timeout_s)):
            if event["status"] != "running":
                return

    async def _stream(
        self, stream: EventStream, deadline: Deadline
    ) -> AsyncIterator[dict[str, Any]]:
        from websockets.asyncio.client import connect

        retries = self._failover.attempts()
        while True:
            url = self.ws_url(EVENTS_PATH)
            try:
                async with connect(url, **stream.options, **self.ws_options(url)) as ws:
                    await ws.send(stream.first_frame())
                    while True:
                        try:
                            raw = await asyncio.wait_for(ws.recv(), deadline.left_s())
                        except TimeoutError:
                            return
                        for event in stream.take(raw):
                            yield event
                        retries = self._failover.attempts()
                        if stream.finished:
                            return
            except Exception as exc:
                stream.failed(exc)
            delay = next(retries, None)
            if delay is None:
                raise stream.unreachable(self.urls)
            self.follow_leader(None)
            await asyncio.sleep(delay)
