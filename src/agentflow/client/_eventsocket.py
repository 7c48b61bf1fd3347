"""The event socket a client waits on: one ``WS /api/v1/events`` connection for every wait of
the client (``gather``, ``as_completed``, ``wait_many``, futures' ``result()``).

Opened on first use to the master the client talks to (any master serves events), kept open,
and opened again after a drop, moving on through the client's masters as its requests do,
within the same retry budget; see :class:`~agentflow.client._events.EndWatch` for what a
reconnect resumes. :class:`EndSocket` runs its reader as an asyncio task, :class:`SyncEndSocket`
in a thread. A master that refuses the socket (a token that may not use it) makes the waits fall
back to long polls: :attr:`usable` turns False.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from agentflow.client._events import EndWatch, Sink, refused
from agentflow.errors import AgentFlowError, EventsLostError, UnavailableError

if TYPE_CHECKING:
    from agentflow.client._async import AsyncClient
    from agentflow.client._sync import Client

__all__ = ["EVENTS_PATH", "EndSocket", "SyncEndSocket"]

log = logging.getLogger(__name__)

EVENTS_PATH = "/api/v1/events"
OPEN_TIMEOUT_S = 5.0
MAX_FRAME_BYTES = 16 << 20


def _pause_after(
    sock: SyncEndSocket | EndSocket, error: BaseException | None, retries: Iterator[float] | None
) -> tuple[float | None, Iterator[float] | None]:
    """After a connection ended with ``error``: how long to wait before the next (0: at once)
    or None to stop (the waiters told why), and the retry budget left. Both sockets' rule."""
    if error is None or sock._closed:
        return 0.0, None  # it went well for a while (or is closing): a fresh budget
    fatal = refused(error)
    if fatal is not None:
        sock.usable = False
        sock._fail(fatal)
        return None, retries
    if isinstance(error, EventsLostError):
        return 0.0, retries  # at once, from the current state
    sock._client.follow_leader(None)
    retries = retries or sock._client._failover.attempts()
    delay = next(retries, None)
    if delay is None:
        sock._fail(UnavailableError(f"the event socket cannot be reopened: {error}"))
    return delay, retries


class SyncEndSocket:
    """The event socket of a :class:`Client`, read by a thread of its own."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._watch = EndWatch()
        self._lock = threading.Lock()  # the watch, and sends
        self._ws: Any = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.usable = True

    def watch(self, task_ids: Iterable[str], sink: Sink) -> None:
        with self._lock:
            frames = self._watch.add_frames(self._watch.watch(task_ids, sink))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="events")
                self._thread.start()
            self._send(frames)

    def unwatch(self, task_ids: Iterable[str], sink: Sink) -> None:
        with self._lock:
            self._send(self._watch.unwatch(task_ids, sink))

    def close(self) -> None:
        self._closed = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _send(self, frames: list[str]) -> None:
        """Called with the lock held: the frames go out now, or with the next connection."""
        if self._ws is None:
            return
        try:
            for frame in frames:
                self._ws.send(frame)
        except Exception:
            log.debug("event socket: a send failed; the reconnect adds again", exc_info=True)

    def _run(self) -> None:
        retries: Iterator[float] | None = None
        while not self._closed:
            error = self._connection()
            delay, retries = _pause_after(self, error, retries)
            if delay is None:
                return
            if delay:
                time.sleep(delay)

    def _connection(self) -> BaseException | None:
        """One connection, read until it ends: the error it ended with (None: it had run
        and closed for a reason a reconnect at once mends)."""
        from websockets.sync.client import connect

        url = self._client.ws_url(EVENTS_PATH)
        options = self._client.ws_options(url)
        try:
            with connect(
                url, open_timeout=OPEN_TIMEOUT_S, max_size=MAX_FRAME_BYTES, **options
            ) as ws:
                with self._lock:
                    self._ws = ws
                    self._send(self._watch.opened())
                try:
                    for raw in ws:
                        with self._lock:
                            told = self._watch.take(raw)
                        for sink, ended in told:
                            sink(ended)
                finally:
                    with self._lock:
                        self._ws = None
                        self._watch.dropped()
        except EventsLostError as exc:
            with self._lock:
                self._watch.lost()
            return exc
        except Exception as exc:
            return exc
        return None

    def _fail(self, error: AgentFlowError) -> None:
        with self._lock:
            told = self._watch.fail_all(error)
        for sink, ended in told:
            sink(ended)


class EndSocket:
    """The event socket of an :class:`AsyncClient`, read by a task of its own. Tasks added
    in one turn of the event loop go out in one frame."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._watch = EndWatch()
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._outbox: list[str] = []
        self._flushing: asyncio.Task[None] | None = None
        self._removing: set[asyncio.Future[None]] = set()
        self._closed = False
        self.usable = True

    def watch(self, task_ids: Iterable[str], sink: Sink) -> None:
        self._outbox += self._watch.watch(task_ids, sink)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._run(), name="agentflow-events")
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())

    def unwatch(self, task_ids: Iterable[str], sink: Sink) -> None:
        frames = self._watch.unwatch(task_ids, sink)
        if frames and not self._closed:
            self._removing.add(asyncio.ensure_future(self._send(frames)))
            for task in list(self._removing):
                if task.done():
                    self._removing.discard(task)

    async def close(self) -> None:
        self._closed = True
        for task in (self._reader, self._flushing, *self._removing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the other waits of this turn add theirs
        ids, self._outbox = self._outbox, []
        await self._send(self._watch.add_frames(ids))

    async def _send(self, frames: list[str]) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            for frame in frames:
                await ws.send(frame)
        except Exception:
            log.debug("event socket: a send failed; the reconnect adds again", exc_info=True)

    async def _run(self) -> None:
        retries: Iterator[float] | None = None
        while not self._closed:
            error = await self._connection()
            delay, retries = _pause_after(self, error, retries)
            if delay is None:
                return
            if delay:
                await asyncio.sleep(delay)

    async def _connection(self) -> BaseException | None:
        from websockets.asyncio.client import connect

        url = self._client.ws_url(EVENTS_PATH)
        options = self._client.ws_options(url)
        try:
            async with connect(
                url, open_timeout=OPEN_TIMEOUT_S, max_size=MAX_FRAME_BYTES, **options
            ) as ws:
                self._ws = ws
                self._outbox.clear()  # opened() adds every task not confirmed
                try:
                    await self._send(self._watch.opened())
                    async for raw in ws:
                        for sink, ended in self._watch.take(raw):
                            sink(ended)
                finally:
                    self._ws = None
                    self._watch.dropped()
        except EventsLostError as exc:
            self._watch.lost()
            return exc
        except Exception as exc:
            return exc
        return None

    def _fail(self, error: AgentFlowError) -> None:
        for sink, ended in self._watch.fail_all(error):
            sink(ended)
