"""The attempts a worker holds queued, waiting for a slot, in the master's priority order.

The master sends each assignment with its ``order`` (the ready queue's static key: smaller
starts first); ties start in the order they arrived. The master may take a queued attempt back
(``withdraw``) for more urgent work, so removal by task id is part of the interface.
"""

from __future__ import annotations

import heapq
from typing import Generic, Protocol, TypeVar

__all__ = ["Backlog"]


class _Held(Protocol):
    @property
    def task_id(self) -> str: ...


A = TypeVar("A", bound=_Held)


class Backlog(Generic[A]):
    """A heap of (order, arrival, attempt) with lazy removal; bounded by what the master
    sends (its slots plus queue depth)."""

    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, A]] = []
        self._live: dict[str, int] = {}  # task id -> arrival of its live entry
        self._seq = 0

    def __len__(self) -> int:
        return len(self._live)

    def __bool__(self) -> bool:
        return bool(self._live)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._live

    def push(self, attempt: A, order: float) -> None:
        self._seq += 1
        self._live[attempt.task_id] = self._seq
        heapq.heappush(self._heap, (order, self._seq, attempt))

    def peek(self) -> A | None:
        """The most urgent waiting attempt, left waiting; None when empty."""
        while self._heap:
            _, seq, attempt = self._heap[0]
            if self._live.get(attempt.task_id) == seq:
                return attempt
            heapq.heappop(self._heap)  # a removed one: drop it now
        return None

    def pop(self) -> A:
        """The most urgent waiting attempt (raises IndexError when empty)."""
        while True:
            _, seq, attempt = heapq.heappop(self._heap)
            if self._live.get(attempt.task_id) == seq:
                del self._live[attempt.task_id]
                return attempt

    def remove(self, task_id: str) -> bool:
        """Forget a waiting attempt; False if it is not waiting (started, or unknown)."""
        return self._live.pop(task_id, None) is not None
