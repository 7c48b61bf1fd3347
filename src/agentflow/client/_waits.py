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
from typing import TYPE_CHECKING, Any

from agentflow.client._core import Deadline, SocketAccess, TaskInfo
from agentflow.client._events import WATCH_MAX, Ended, EventStream
from agentflow.client._eventsocket import EVENTS_PATH, EndSocket, SyncEndSocket
from agentflow.client._functions import AsyncTaskFuture, TaskFuture, value_of
from agentflow.errors import ForbiddenError, TaskFailedError, TimeoutExpiredError

if TYPE_CHECKING:
    from agentflow.client._core import Failover

__all__ = ["AsyncWaits", "SyncWaits", "task_ids"]

Tasks = Iterable[TaskFuture | AsyncTaskFuture | str]


def task_ids(tasks: Tasks) -> list[str]:
    """The ids of ``tasks`` (futures or ids), in order."""
    return [t if isinstance(t, str) else t.id for t in tasks]


def _timed_out(left: int, timeout_s: float | None) -> TimeoutExpiredError:
    return TimeoutExpiredError(f"{left} task(s) still running after {timeout_s}s")


class _Window:
    """The tasks of one wait: watched at most :data:`WATCH_MAX` at once, in order."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = list(dict.fromkeys(ids))
        self.next = 0
        self.waiting: set[str] = set()

    def more(self) -> list[str]:
        """The tasks to start watching now."""
        room = WATCH_MAX - len(self.waiting)
        chunk = self.ids[self.next : self.next + max(0, room)]
        self.next += len(chunk)
        self.waiting.update(chunk)
        return chunk

    @property
    def done(self) -> bool:
        return not self.waiting and self.next >= len(self.ids)


def _gathered(ids: list[str], infos: Iterable[TaskInfo], return_exceptions: bool) -> list[Any]:
    values: dict[str, Any] = {}
    for info in infos:
        try:
            values[info.id] = value_of(info)
        except TaskFailedError as exc:
            if not return_exceptions:
                raise
            values[info.id] = exc
    return [values[i] for i in ids]


class SyncWaits(SocketAccess):
    """The waits of :class:`~agentflow.client.Client`."""

    _end_socket: SyncEndSocket | None = None
    _failover: Failover
    urls: list[str]

    if TYPE_CHECKING:

        def get(self, task_id: str) -> TaskInfo: ...
        def wait(self, task_id: str, timeout_s: float | None = None) -> TaskInfo: ...

    def gather(
        self, tasks: Tasks, *, timeout_s: float | None = None, return_exceptions: bool = False
    ) -> list[Any]:
        """The value of every task (futures or ids), in order, once all have finished; the
        first failure seen raises :class:`TaskFailedError` (or, with ``return_exceptions``,
        stands in the list for its task). :class:`TimeoutExpiredError` past ``timeout_s``."""
        ids = task_ids(tasks)
        return _gathered(ids, self._ends(ids, timeout_s), return_exceptions)

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

    def _socket(self) -> SyncEndSocket:
        if self._end_socket is None:
            self._end_socket = SyncEndSocket(self)  # type: ignore[arg-type]
        return self._end_socket

    def _ends(self, ids: list[str], timeout_s: float | None) -> Iterator[TaskInfo]:
        """Each task's end as it arrives, first finished first."""
        deadline, window = Deadline(timeout_s), _Window(ids)
        socket = self._socket()
        inbox: queue.SimpleQueue[Ended] = queue.SimpleQueue()
        sink = inbox.put
        try:
            while not window.done:
                if not socket.usable:
                    yield from self._polled(window, deadline, timeout_s)
                    return
                socket.watch(window.more(), sink)
                try:
                    ended = inbox.get(timeout=deadline.left_s())
                except queue.Empty:
                    raise _timed_out(len(window.waiting), timeout_s) from None
                info = self._ended(ended, window, socket.usable)
                if info is not None:
                    yield info
        finally:
            socket.unwatch(window.waiting, sink)

    def _ended(self, ended: Ended, window: _Window, usable: bool) -> TaskInfo | None:
        """The task's end from what its sink heard; None while it has not ended (or is not
        this wait's)."""
        if ended.task_id not in window.waiting:
            return None
        if ended.error is not None:
            if isinstance(ended.error, ForbiddenError) and not usable:
                return None  # the socket was refused: the long polls take over
            raise ended.error
        info = ended.info or self.get(ended.task_id)  # a task the master did not know
        if not info.done:
            return None
        window.waiting.discard(info.id)
        return info

    def _polled(
        self, window: _Window, deadline: Deadline, timeout_s: float | None
    ) -> Iterator[TaskInfo]:
        """Without the socket: one long poll per task, in order."""
        for task_id in sorted(window.waiting) + window.ids[window.next :]:
            info = self.wait(task_id, timeout_s=deadline.left_s())
            if not info.done:
                raise _timed_out(1, timeout_s)
            window.waiting.discard(task_id)
            yield info
        window.next = len(window.ids)

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
        async def wait(self, task_id: str, timeout_s: float | None = None) -> TaskInfo: ...

    async def gather(
        self, tasks: Tasks, *, timeout_s: float | None = None, return_exceptions: bool = False
    ) -> list[Any]:
        """As :meth:`Client.gather`."""
        ids = task_ids(tasks)
        infos = [info async for info in self._ends(ids, timeout_s)]
        return _gathered(ids, infos, return_exceptions)

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

    def _socket(self) -> EndSocket:
        if self._end_socket is None:
            self._end_socket = EndSocket(self)  # type: ignore[arg-type]
        return self._end_socket

    async def _ends(self, ids: list[str], timeout_s: float | None) -> AsyncIterator[TaskInfo]:
        deadline, window = Deadline(timeout_s), _Window(ids)
        socket = self._socket()
        inbox: asyncio.Queue[Ended] = asyncio.Queue()
        sink = inbox.put_nowait
        try:
            while not window.done:
                if not socket.usable:
                    async for polled in self._polled(window, deadline, timeout_s):
                        yield polled
                    return
                socket.watch(window.more(), sink)
                try:
                    ended = await asyncio.wait_for(inbox.get(), deadline.left_s())
                except TimeoutError:
                    raise _timed_out(len(window.waiting), timeout_s) from None
                info = await self._ended(ended, window, socket.usable)
                if info is not None:
                    yield info
        finally:
            socket.unwatch(window.waiting, sink)

    async def _ended(self, ended: Ended, window: _Window, usable: bool) -> TaskInfo | None:
        if ended.task_id not in window.waiting:
            return None
        if ended.error is not None:
            if isinstance(ended.error, ForbiddenError) and not usable:
                return None
            raise ended.error
        info = ended.info or await self.get(ended.task_id)
        if not info.done:
            return None
        window.waiting.discard(info.id)
        return info

    async def _polled(
        self, window: _Window, deadline: Deadline, timeout_s: float | None
    ) -> AsyncIterator[TaskInfo]:
        for task_id in sorted(window.waiting) + window.ids[window.next :]:
            info = await self.wait(task_id, timeout_s=deadline.left_s())
            if not info.done:
                raise _timed_out(1, timeout_s)
            window.waiting.discard(task_id)
            yield info
        window.next = len(window.ids)

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
