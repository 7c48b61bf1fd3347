"""Linearizable reads (ReadIndex): each read waits until this node has applied its read index.

A read is registered under a context unique to this node, the core answers with the commit
index at the time of the call (a ``ReadState`` in a Ready), and the read is released once the
applied index reaches it. The driver (:class:`agentflow.cluster.driver.ReadyDriver`) calls
:meth:`Reads.park` and :meth:`Reads.release` as it handles each Ready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from agentflow.raft import ReadState

__all__ = ["Reads"]


class Reads:
    """The reads waiting on this node: by context until the core answers, then by index."""

    def __init__(self, node_id: str) -> None:
        self._node_id = node_id
        self._seq = 0
        self._pending: dict[bytes, asyncio.Future[None]] = {}  # context -> the reader
        self._parked: list[tuple[int, asyncio.Future[None]]] = []  # (read index, the reader)

    def start(self) -> tuple[bytes, asyncio.Future[None]]:
        """A new read: its context (for ``read_index``) and the future released once applied."""
        self._seq += 1
        context = f"{self._node_id}:{self._seq}".encode()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[context] = future
        return context, future

    def forget(self, context: bytes) -> None:
        """The reader is gone (served, timed out or cancelled)."""
        self._pending.pop(context, None)

    def park(self, read_states: Iterable[ReadState]) -> None:
        """The core answered: each read waits for the applied index to reach its read index."""
        for state in read_states:
            future = self._pending.get(state.context)
            if future is not None and not future.done():
                self._parked.append((state.index, future))

    def release(self, applied: int) -> None:
        """Serve every parked read whose read index is applied."""
        still = []
        for index, future in self._parked:
            if future.done():
                continue
            if applied >= index:
                future.set_result(None)
            else:
                still.append((index, future))
        self._parked = still
