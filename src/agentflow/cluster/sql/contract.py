"""What the SQL log needs of its store: the calls of design 20 §2, as a Protocol.

The store (``agentflow.cluster.sql.store.LogStore``) holds one connection and is synchronous:
:class:`~agentflow.cluster.sql.sqllog.SqlLog` calls it on a thread of its own, one call at a
time, never on the event loop. Every time decision about the lease is the database's (its
clock), so :class:`Lease` carries what is left of it as the database saw it at the call.

Fencing: every write that only the writer may make (``append``, ``save_snapshot``,
``compact``) names the lease it holds; the store refuses it with
:class:`~agentflow.errors.StoreFenced` unless that holder and epoch still hold the row and it
has not expired, in the same transaction as the write. A lost connection is
:class:`~agentflow.errors.StoreUnavailable` (the outcome of a write in flight is unknown).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Lease", "LogStoreLike", "MemberRow"]


@dataclass(frozen=True, slots=True)
class Lease:
    """The writer's lease row as the database saw it (``remaining_s`` <= 0: expired)."""

    holder: str
    api_url: str
    epoch: int
    remaining_s: float


@dataclass(frozen=True, slots=True)
class MemberRow:
    """One master's row: where it serves, what it applied and reads, when it was last seen."""

    node_id: str
    api_url: str
    seen_s_ago: float
    applied: int
    reads_format: int
    version: str


class LogStoreLike(Protocol):
    """The calls of ``LogStore`` that the SQL log makes (design 20 §2)."""

    def migrate(self, cluster_id: str) -> str:
        """Create or upgrade the schema; the cluster's uid (ConfigError on a mismatch)."""
        ...

    def lease(self) -> Lease: ...

    def acquire(self, node_id: str, api_url: str, ttl_s: float) -> Lease | None:
        """Take the lease if it expired or is ours (a takeover bumps the epoch); None when
        another master holds it live."""
        ...

    def renew(self, lease: Lease, ttl_s: float) -> Lease:
        """Extend ``lease``; StoreFenced if its holder or epoch changed, or it expired."""
        ...

    def release(self, lease: Lease) -> None:
        """Expire ``lease`` now (a clean stop: the next master takes over at once)."""
        ...

    def append(self, lease: Lease, first: int, entries: Sequence[bytes]) -> None:
        """Insert ``entries`` at ``first``, ``first + 1``, ... in one fenced transaction;
        durable when it returns. StoreFenced on a failed fence or an index already taken."""
        ...

    def read(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` entries whose index is above ``after``, ascending."""
        ...

    def last_index(self) -> int:
        """The highest index (the snapshot's when the log is empty; 0 for none)."""
        ...

    def save_snapshot(self, lease: Lease, index: int, data: bytes) -> None: ...

    def compact(self, lease: Lease, through: int) -> int:
        """Delete the entries at and below ``through`` (fenced); how many were deleted."""
        ...

    def snapshot(self) -> tuple[int, bytes] | None: ...

    def heartbeat(
        self, node_id: str, api_url: str, applied: int, reads_format: int, version: str
    ) -> None: ...

    def members(self) -> list[MemberRow]: ...

    def entry_limit(self) -> int | None:
        """The largest entry or snapshot (bytes) one row takes, as the server said at the last
        connect (MariaDB's max_allowed_packet); None: no limit known. No I/O."""
        ...

    def durability_warning(self) -> str | None:
        """Why the server might lose an acknowledged commit (its settings), or None."""
        ...

    def close(self) -> None: ...
