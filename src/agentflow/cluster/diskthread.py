"""One thread that runs a store's blocking calls, in order, for the event loop.

``loop.run_in_executor`` on a one-thread ``ThreadPoolExecutor`` cost about twice the CPU per
call of this (two locks, a semaphore, a concurrent future chained to an asyncio one); raft.db
makes such a call for every Ready that carries entries, so on the master's hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["DiskThread"]

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class DiskThread:
    """``await thread.run(fn, *args)``: ``fn(*args)`` on the thread, after every earlier call."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()  # on first use, as a ThreadPoolExecutor starts its thread
        self._calls.put((loop, future, fn, args))
        return future

    def shutdown(self) -> None:
        """Run what is queued, then stop (blocks until the thread is done)."""
        if self._thread.ident is not None:
            self._calls.put(None)
            self._thread.join()

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            loop, future, fn, args = call
            try:
                outcome: tuple[bool, Any] = (True, fn(*args))
            except BaseException as exc:  # handed to the caller, as run_in_executor does
                outcome = (False, exc)
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, future, outcome)


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # cancelled meanwhile (a timeout): the call ran all the same
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
