"""Bounded output tails kept per task, and one budget for all of them together.

Each stream keeps its last ``output_tail_bytes``; on top of that, the tails of all tasks together
hold at most ``retained_bytes``. Past the budget, the tails of the tasks that finished first are
emptied (``evicted``: their bytes count as dropped), so the newest results stay readable. Tails
of tasks still running are never evicted: at most one per slot of a live worker. Nothing here
reads a clock: the order is the order tasks finished in the log, the same on every replica.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["STREAMS", "OutputTable", "OutputTail"]

STREAMS = ("stdout", "stderr")


@dataclass(slots=True)
class OutputTail:
    """The last ``limit`` bytes of one stream, and how many bytes fell off the front."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0
    evicted: bool = False  # emptied to keep all tasks' output within the overall budget

    @property
    def total(self) -> int:
        return self.dropped + len(self.data)

    def append(self, chunk: bytes) -> int:
        """Add ``chunk``; returns how many more bytes are held (negative: fewer)."""
        before = len(self.data)
        self.data += chunk
        excess = len(self.data) - self.limit
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess
        return len(self.data) - before

    def evict(self) -> int:
        """Drop everything held; returns how many bytes that freed."""
        freed = len(self.data)
        self.dropped += freed
        self.data = bytearray()
        self.evicted = True
        return freed

    def since(self, offset: int) -> bytes:
        """Bytes from absolute ``offset`` on (what is still held of them)."""
        start = max(0, offset - self.dropped)
        return bytes(self.data[start:])

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "limit": self.limit,
            "data": bytes(self.data),
            "dropped": self.dropped,
        }
        if self.evicted:
            wire["evicted"] = True
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> OutputTail:
        return cls(
            limit=wire["limit"],
            data=bytearray(wire["data"]),
            dropped=wire["dropped"],
            evicted=bool(wire.get("evicted", False)),
        )


class OutputTable(Mapping[str, dict[str, OutputTail]]):
    """Every task's tails (``table[task_id]["stdout"]``) within ``retained_bytes`` in all."""

    def __init__(self, tail_bytes: int, retained_bytes: int) -> None:
        self.tail_bytes = tail_bytes
        self.retained_bytes = retained_bytes
        self.held_bytes = 0  # derived: bytes held by every tail
        self.evicted_tasks = 0  # tasks whose output was evicted (a counter for metrics)
        self._tails: dict[str, dict[str, OutputTail]] = {}
        self._finished: dict[str, None] = {}  # evictable task ids, the first finished first

    # -- Mapping ----------------------------------------------------------------------------

    def __getitem__(self, task_id: str) -> dict[str, OutputTail]:
        return self._tails[task_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tails)

    def __len__(self) -> int:
        return len(self._tails)

    # -- changes ----------------------------------------------------------------------------

    def append(self, task_id: str, stream: str, data: bytes) -> int:
        """Add ``data`` to a stream; returns that stream's byte count (dropped bytes too)."""
        tails = self._tails.get(task_id)
        if tails is None:
            tails = self._tails[task_id] = {s: OutputTail(self.tail_bytes) for s in STREAMS}
        self.held_bytes += tails[stream].append(data)
        self._evict()
        return tails[stream].total

    def finished(self, task_id: str) -> None:
        """``task_id`` ended: its output may now be evicted, after that of earlier ones."""
        self._finished.pop(task_id, None)
        self._finished[task_id] = None
        self._evict()

    def reopened(self, task_id: str) -> None:
        """``task_id`` runs again (a workflow retried it): its output is not evictable."""
        self._finished.pop(task_id, None)

    def remove(self, task_id: str) -> None:
        self._finished.pop(task_id, None)
        tails = self._tails.pop(task_id, None)
        for tail in (tails or {}).values():
            self.held_bytes -= len(tail.data)

    def _evict(self) -> None:
        while self.held_bytes > self.retained_bytes and self._finished:
            task_id = next(iter(self._finished))
            del self._finished[task_id]
            tails = self._tails.get(task_id)
            if tails is None or not any(t.data for t in tails.values()):
                continue  # no output (yet): a late chunk of a cancelled task is still bounded
            for tail in tails.values():
                self.held_bytes -= tail.evict()
            self.evicted_tasks += 1

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "tails": {
                tid: {s: tail.to_wire() for s, tail in tails.items()}
                for tid, tails in self._tails.items()
            },
            "finished": list(self._finished),
            "evicted_tasks": self.evicted_tasks,
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.__init__(self.tail_bytes, self.retained_bytes)  # type: ignore[misc]
        for tid, tails in data["tails"].items():
            self._tails[tid] = {s: OutputTail.from_wire(w) for s, w in tails.items()}
            self.held_bytes += sum(len(t.data) for t in self._tails[tid].values())
        self._finished = dict.fromkeys(data["finished"])
        self.evicted_tasks = data.get("evicted_tasks", 0)
        self._evict()  # the budget may be smaller than when the snapshot was taken
