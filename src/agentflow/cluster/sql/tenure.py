"""Who writes, as one master on a SQL store knows it: the lease it holds, if any, the deadline
by which it steps down, and the lease row as it last read it.

Pure: time comes in as arguments, in the log's pacer seconds (monotonic). The database decides
expiry (``Lease.remaining_s`` is what its clock said was left at the call); a reader counts
that remainder from the start of its own call, so it never believes a lease live for longer
than the database does, and the holder steps down ``margin_s`` before even that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentflow.cluster.sql.contract import Lease

__all__ = ["Tenure"]


@dataclass(slots=True, kw_only=True)
class Tenure:
    node_id: str
    api_url: str
    ttl_s: float
    margin_s: float
    held: Lease | None = None  # the lease this master holds: it is the writer
    deadline: float = 0.0  # the writer steps down by then
    seen: Lease | None = None  # the lease row as last read...
    seen_at: float = 0.0  # ...at the start of that call
    epoch: int = 0  # the highest epoch seen: the log's "term"
    last_leader_id: str | None = None  # the last writer known, even once its lease lapsed
    last_leader_url: str | None = None

    @property
    def leads(self) -> bool:
        return self.held is not None

    def saw(self, lease: Lease, at: float) -> bool:
        """Note the lease row read by a call started ``at``; True when it names a live writer
        other than the last one known."""
        self.seen, self.seen_at = lease, at
        self.epoch = max(self.epoch, lease.epoch)
        if lease.remaining_s <= 0 or not lease.holder:
            return False
        self.last_leader_url = lease.api_url or None
        new = lease.holder != self.last_leader_id
        self.last_leader_id = lease.holder
        return new

    def hold(self, lease: Lease, started: float) -> None:
        """The lease was taken or renewed by a call started ``started``."""
        self.held, self.deadline = lease, self.deadline_after(started)
        self.saw(lease, started)

    def deadline_after(self, started: float) -> float:
        """When a writer whose lease call started at ``started`` steps down, at the latest."""
        return started + self.ttl_s - self.margin_s

    def drop(self) -> Lease | None:
        """This master stops writing; the lease it held (None: it held none)."""
        held, self.held = self.held, None
        if held is not None:
            self.seen = None  # who writes now is read again
        return held

    def leader_id(self, now: float) -> str | None:
        if self.held is not None:
            return self.node_id
        seen = self.seen
        if seen is None or seen.holder in ("", self.node_id):
            return None  # (its own lease, not held: it stepped down, or is taking it back)
        return seen.holder if self.seen_at + seen.remaining_s > now else None

    def leader_url(self, now: float) -> str | None:
        if self.held is not None:
            return self.api_url
        if self.seen is None or self.leader_id(now) is None:
            return None
        return self.seen.api_url or None

    def hint(self, now: float) -> dict[str, Any]:
        """The writer now, or else the last one known (for 503 problem bodies)."""
        leader = self.leader_id(now)
        if leader is not None:
            return {"leader_id": leader, "leader_url": self.leader_url(now), "leader_known": True}
        known = self.last_leader_id if self.last_leader_id != self.node_id else None
        url = self.last_leader_url if known else None
        return {"leader_id": known, "leader_url": url, "leader_known": False}
