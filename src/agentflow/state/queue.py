"""The ready queue: one static-key heap per group.

Every queued task ages at the same rate, so ordering by
``score(level) + rate * (now - enqueued_at) - penalty * retries`` is the same as ordering by the
static key ``score(level) - rate * enqueued_at - penalty * retries``: ``now`` drops out, and a
plain heap keeps the order with no re-sorting. Ties go to the earlier sequence number (FIFO).

Removal is lazy: a removed or re-prioritised task leaves a stale heap entry that is skipped, and
the top of the heap is cleaned whenever it is stale, so the scheduler's walk stays short.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field

from agentflow.state.records import Priority

__all__ = ["PriorityPolicy", "ReadyQueue"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PriorityPolicy:
    """Scores per level and how age and retries move them (all configurable)."""

    urgent: float = 1000.0
    high: float = 750.0
    medium: float = 500.0
    low: float = 250.0
    age_per_s: float = 10.0
    retry_penalty: float = 50.0

    def score(self, level: Priority) -> float:
        return float(getattr(self, level.value))

    def static_key(self, level: Priority, enqueued_at_ms: int, retries: int) -> float:
        """Smaller runs first: the negated static score."""
        static = (
            self.score(level)
            - self.age_per_s * (enqueued_at_ms / 1000.0)
            - self.retry_penalty * retries
        )
        return -static

    def effective(self, level: Priority, enqueued_at_ms: int, retries: int, now_ms: int) -> float:
        """The score a task has at ``now_ms`` (for display; ordering uses the static key)."""
        waited_s = max(0, now_ms - enqueued_at_ms) / 1000.0
        return self.score(level) + self.age_per_s * waited_s - self.retry_penalty * retries


_Entry = tuple[float, int, str]  # (static key, sequence, task id)


@dataclass(slots=True)
class _GroupHeap:
    heap: list[_Entry] = field(default_factory=list)
    live: dict[str, int] = field(default_factory=dict)  # task id -> its live sequence number


class ReadyQueue:
    """Per-group heaps of queued task ids with lazy deletion. O(log n) push and pop."""

    __slots__ = ("_groups", "_seq")

    def __init__(self) -> None:
        self._groups: dict[str, _GroupHeap] = {}
        self._seq = 0

    def __len__(self) -> int:
        return sum(len(g.live) for g in self._groups.values())

    def __contains__(self, task_id: object) -> bool:
        return any(task_id in g.live for g in self._groups.values())

    def groups(self) -> list[str]:
        return [name for name, g in self._groups.items() if g.live]

    def depth(self, group: str) -> int:
        g = self._groups.get(group)
        return len(g.live) if g else 0

    def push(self, group: str, task_id: str, key: float) -> None:
        """Add a task, or move it to a new key if it is already queued."""
        g = self._groups.setdefault(group, _GroupHeap())
        self._seq += 1
        g.live[task_id] = self._seq
        heapq.heappush(g.heap, (key, self._seq, task_id))

    def remove(self, group: str, task_id: str) -> bool:
        g = self._groups.get(group)
        if g is None or g.live.pop(task_id, None) is None:
            return False
        self._clean_top(g)
        return True

    def pushed(self) -> dict[str, list[str]]:
        """Each group's queued ids in the order they were pushed: what breaks ties between
        equal keys (FIFO), and what a snapshot keeps so that a restored queue breaks them alike
        (:meth:`restore_pushed`)."""
        return {
            name: sorted(g.live, key=g.live.__getitem__)
            for name, g in self._groups.items()
            if g.live
        }

    def ordered(self, group: str) -> Iterator[str]:
        """Live task ids of a group, best first, without mutating the heap.

        Walks the heap as a tree with a frontier heap, so taking the first k costs
        O(k log k) however long the queue is.
        """
        g = self._groups.get(group)
        if g is None or not g.heap:
            return
        heap, live = g.heap, g.live
        frontier: list[tuple[_Entry, int]] = [(heap[0], 0)]
        while frontier:
            entry, pos = heapq.heappop(frontier)
            _key, seq, task_id = entry
            if live.get(task_id) == seq:
                yield task_id
            for child in (2 * pos + 1, 2 * pos + 2):
                if child < len(heap):
                    heapq.heappush(frontier, (heap[child], child))

    def _clean_top(self, g: _GroupHeap) -> None:
        heap, live = g.heap, g.live
        while heap and live.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)
        # Rebuild when stale entries dominate, so memory stays proportional to live tasks.
        if len(heap) > 64 and len(heap) > 4 * len(live):
            g.heap = [e for e in heap if live.get(e[2]) == e[1]]
            heapq.heapify(g.heap)
