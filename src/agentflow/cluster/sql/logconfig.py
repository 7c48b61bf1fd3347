"""The SQL log's settings, and the clock its loop paces itself by (injectable for tests)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

__all__ = ["MonotonicPacer", "Pacer", "SqlLogConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlLogConfig:
    node_id: str
    api_url: str
    cluster_id: str = "agentflow"
    store_url: str = ""  # the store's URL as shown (password redacted): status and logs
    lease_ttl_s: float = 1.5  # the writer's lease, as the database's clock counts it
    renew_s: float = 0.3  # the writer renews (a follower checks the lease) this often
    # The writer steps down this long before the lease it last renewed would expire, by its own
    # monotonic clock counted from the start of the renew call: always before the database's.
    margin_s: float = 0.3
    poll_s: float = 0.05  # a follower reads new entries this often
    snapshot_every: int = 10_000  # entries the writer applies between snapshots
    keep_after_snapshot: int = 1_000  # entries kept in the table behind a snapshot
    max_batch: int = 512  # proposals appended in one transaction (group commit)
    read_batch: int = 1_000  # entries a follower reads in one query
    max_pending: int = 100_000  # proposals waiting for the writer; beyond, 429
    propose_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        assert 0 < self.renew_s < self.lease_ttl_s - self.margin_s, self
        assert self.poll_s > 0 and self.max_batch > 0 and self.read_batch > 0, self

    @property
    def member_live_s(self) -> float:
        """A master whose row was not refreshed for this long no longer counts as a member."""
        return 10 * self.renew_s


class Pacer(Protocol):
    """The log's notion of time: a monotonic clock, and sleeping on it."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicPacer:
    """The process's monotonic clock."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
