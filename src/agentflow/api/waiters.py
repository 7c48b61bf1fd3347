"""Futures keyed by a name (a lock session, an agent's inbox, a request's correlation id),
set by the applied events that concern it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

__all__ = ["KeyedWaiters", "wait_for"]


class KeyedWaiters:
    def __init__(self) -> None:
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    @contextlib.contextmanager
    def watch(self, key: str) -> Iterator[asyncio.Future[None]]:
        """A future set by the next ``notify(key)``. Enter it *before* reading the state it
        waits on, so an event applied in between is not missed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(future)
        try:
            yield future
        finally:
            waiters = self._waiters.get(key, [])
            if future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiters[key]

    def notify(self, key: str) -> None:
        for future in self._waiters.pop(key, ()):
            if not future.done():
                future.set_result(None)


async def wait_for(future: asyncio.Future[None], timeout_s: float) -> bool:
    """Whether ``future`` was set within ``timeout_s`` (it is not cancelled either way)."""
    try:
        await asyncio.wait_for(asyncio.shield(future), timeout=max(0.0, timeout_s))
    except TimeoutError:
        return False
    return True
