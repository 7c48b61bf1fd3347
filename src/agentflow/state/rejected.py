"""The rejected-entry record: committed log entries that were skipped instead of applied.

An entry whose bytes cannot be decoded into a command, or whose command fails to apply with a
data error, is skipped on every replica alike and remembered here: a total and the last few
(index, reason) pairs, for operators (``GET /api/v1/cluster``, the
``agentflow_rejected_entries_total`` metric). The record is part of the replicated state (it is
in the snapshot and the digest), so the reasons must be deterministic: they are built from the
entry's bytes and the state only, never from the clock or the node.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["REASON_CHARS_MAX", "RejectedEntries", "RejectedEntry"]

REASON_CHARS_MAX = 200  # a reason longer than this is cut: it is for a human to read


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectedEntry:
    index: int
    reason: str


class RejectedEntries:
    """How many entries were rejected since the cluster began, and the last ``kept_max``."""

    def __init__(self, kept_max: int) -> None:
        assert kept_max > 0, kept_max
        self.total = 0
        self.last: deque[RejectedEntry] = deque(maxlen=kept_max)

    def add(self, index: int, reason: str) -> RejectedEntry:
        entry = RejectedEntry(index=index, reason=reason[:REASON_CHARS_MAX])
        self.total += 1
        self.last.append(entry)
        return entry

    def to_wire(self) -> dict[str, Any]:
        return {"total": self.total, "last": [[e.index, e.reason] for e in self.last]}

    def restore(self, wire: dict[str, Any]) -> None:
        self.total = int(wire["total"])
        self.last.clear()
        self.last.extend(RejectedEntry(index=int(i), reason=str(r)) for i, r in wire["last"])

    def view(self) -> dict[str, Any]:
        """What an operator sees: the total and the last few, oldest first."""
        return {
            "total": self.total,
            "last": [{"index": e.index, "reason": e.reason} for e in self.last],
        }
