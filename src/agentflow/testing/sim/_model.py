"""What a simulated node replicates: the seam between the Raft shell and the state on top.

A `SimNode` applies committed entries to a `ReplicaModel` made by a factory, snapshots it when
it compacts and restores it from a snapshot on restart or install. `KvStore` (the registers the
linearizable clients use) is one; `SystemModel` (the real `StateMachine`) is the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["ModelFactory", "ReplicaModel"]


class ReplicaModel(Protocol):
    def apply(self, index: int, data: bytes) -> object:
        """Apply the committed entry at ``index`` (indexes only rise); its result."""
        ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's (empty bytes: the initial state)."""
        ...

    def digest(self) -> bytes:
        """A hash of the state, equal on replicas that applied the same entries."""
        ...


ModelFactory = Callable[[], ReplicaModel]
