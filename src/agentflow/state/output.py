"""Bounded output tails kept per task."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["OutputTail"]


@dataclass(slots=True)
class OutputTail:
    """The last ``limit`` bytes of one stream, and how many bytes fell off the front."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    @property
    def total(self) -> int:
        return self.dropped + len(self.data)

    def append(self, chunk: bytes) -> None:
        self.data += chunk
        excess = len(self.data) - self.limit
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess

    def since(self, offset: int) -> bytes:
        """Bytes from absolute ``offset`` on (what is still held of them)."""
        start = max(0, offset - self.dropped)
        return bytes(self.data[start:])

    def to_wire(self) -> dict[str, Any]:
        return {"limit": self.limit, "data": bytes(self.data), "dropped": self.dropped}

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> OutputTail:
        return cls(limit=wire["limit"], data=bytearray(wire["data"]), dropped=wire["dropped"])
