"""One WebSocket shared by many calls: frames out with a ``ref``, answers matched by it.

Agents send messages this way (``WS /api/v1/agents/{id}/stream?push=false``) and leases take
and renew locks (``WS /api/v1/locks``): no HTTP request per operation. When the socket is
down, callers fall back to HTTP with the same idempotency keys, so nothing happens twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agentflow.errors import error_from_problem

if TYPE_CHECKING:
    from agentflow.client._async import AsyncClient
    from agentflow.client._sync import Client

__all__ = ["FrameSocket", "SocketDownError", "SyncFrameSocket"]

log = logging.getLogger(__name__)


def _answered(reply: dict[str, Any]) -> dict[str, Any]:
    if "error" in reply:
        problem = reply["error"]
        raise error_from_problem(int(problem.get("status", 400)), problem)
    return reply


def _route(client: AsyncClient | Client, pending: Mapping[int, Any], raw: str | bytes) -> bool:
    """Hand one answer frame to the call waiting for its ``ref``; False when the socket must
    go (this master is not the leader: the next socket goes to it, or on)."""
    frame = json.loads(raw)
    if "leader_url" in frame:
        client.follow_leader(frame["leader_url"])
        return False
    waiter = pending.get(frame.get("ref"))
    if waiter is not None and not waiter.done():
        waiter.set_result(frame)
    return True


def _fail_waiting(pending: Mapping[int, Any]) -> None:
    """The socket is gone: every call still waiting falls back (see SocketDownError)."""
    for waiter in list(pending.values()):
        if not waiter.done():
            waiter.set_exception(ConnectionError("frame socket closed"))


class SocketDownError(Exception):
    """The socket is not usable now; the caller falls back to HTTP."""


class FrameSocket:
    """A WebSocket for request/answer frames: each call adds a ``ref`` and waits for the frame
    that carries it back. Opened on first use (to the master the client talks to now) and
    again after it drops; a frame with ``leader_url`` points the client at the leader."""

    def __init__(self, client: AsyncClient, path: str) -> None:
        self._client = client
        self._path = path
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._refs = iter(range(1, 1 << 62))
        self._connecting = asyncio.Lock()
        self._retry_at = 0.0

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def call(self, frame: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
        """The answer to ``frame``; its problem raised as the typed error; SocketDownError if
        the socket cannot carry it (the caller may retry by HTTP)."""
        from websockets.exceptions import WebSocketException

        ws = await self._open()
        ref = next(self._refs)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ref] = answer
        try:
            await ws.send(json.dumps(frame | {"ref": ref}))
            reply = await asyncio.wait_for(answer, timeout=timeout_s)
        except (OSError, WebSocketException, TimeoutError) as exc:
            raise SocketDownError from exc
        finally:
            self._pending.pop(ref, None)
        return _answered(reply)

    async def _open(self) -> Any:
        from websockets.asyncio.client import connect

        async with self._connecting:
            if self._ws is not None:
                return self._ws
            if time.monotonic() < self._retry_at:
                raise SocketDownError
            try:
                url = self._client.ws_url(self._path)
                self._ws = await connect(url, **self._client.ws_options(url))
            except Exception as exc:
                self._retry_at = time.monotonic() + 1.0  # HTTP meanwhile
                raise SocketDownError from exc
            self._reader = asyncio.create_task(self._read(self._ws))
            return self._ws

    async def _read(self, ws: Any) -> None:
        try:
            async for raw in ws:
                if not _route(self._client, self._pending, raw):
                    break
        except Exception:
            log.debug("frame socket closed", exc_info=True)
        finally:
            if self._ws is ws:
                self._ws = None
            _fail_waiting(self._pending)
            with contextlib.suppress(Exception):
                await ws.close()

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


class SyncFrameSocket:
    """:class:`FrameSocket` for the thread-based client: a reader thread matches answers."""

    def __init__(self, client: Client, path: str) -> None:
        self._client = client
        self._path = path
        self._ws: Any = None
        self._pending: dict[int, concurrent.futures.Future[dict[str, Any]]] = {}
        self._refs = itertools.count(1)
        self._opening = threading.Lock()
        self._sending = threading.Lock()
        self._retry_at = 0.0

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def call(self, frame: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
        """As :meth:`FrameSocket.call`, blocking."""
        from websockets.exceptions import WebSocketException

        ws = self._open()
        ref = next(self._refs)
        answer: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self._pending[ref] = answer
        try:
            with self._sending:
                ws.send(json.dumps(frame | {"ref": ref}))
            reply = answer.result(timeout=timeout_s)
        except (OSError, WebSocketException, concurrent.futures.TimeoutError) as exc:
            raise SocketDownError from exc
        finally:
            self._pending.pop(ref, None)
        return _answered(reply)

    def _open(self) -> Any:
        with self._opening:
            if self._ws is not None:
                return self._ws
            if time.monotonic() < self._retry_at:
                raise SocketDownError
            opened: concurrent.futures.Future[Any] = concurrent.futures.Future()
            url = self._client.ws_url(self._path)
            threading.Thread(target=self._run, args=(url, opened), daemon=True).start()
            try:
                self._ws = opened.result(timeout=10)
            except Exception as exc:
                self._retry_at = time.monotonic() + 1.0  # HTTP meanwhile
                raise SocketDownError from exc
            return self._ws

    def _run(self, url: str, opened: concurrent.futures.Future[Any]) -> None:
        """The socket's thread: connect, hand the connection over, read until it ends."""
        from websockets.sync.client import connect

        try:
            with connect(url, open_timeout=5, **self._client.ws_options(url)) as ws:
                opened.set_result(ws)
                self._read(ws)
        except Exception as exc:
            if not opened.done():
                opened.set_exception(exc)

    def _read(self, ws: Any) -> None:
        try:
            for raw in ws:
                if not _route(self._client, self._pending, raw):
                    break
        except Exception:
            log.debug("frame socket closed", exc_info=True)
        finally:
            with self._opening:
                if self._ws is ws:
                    self._ws = None
            _fail_waiting(self._pending)
            with contextlib.suppress(Exception):
                ws.close()

    def close(self) -> None:
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
