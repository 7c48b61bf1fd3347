"""A test double of the SQL log's store interface (``LogStoreLike``), in process: no database.

It tests the log's own logic (``agentflow.cluster.sql.sqllog.SqlLog``), not SQL: the real
store is tested against real PostgreSQL and MariaDB servers (tests/sql). It keeps the
contract's rules honestly (design 20 §2): a fenced write is refused unless its lease's holder
and epoch hold the row and it has not expired by the database's clock (here an injected one);
an append at an index already taken is refused and nothing of it is written; a takeover bumps
the epoch. :class:`DictDatabase` is the shared database; each master gets its own
:class:`DictStore` handle (its "connection"), which it closes on its own.

:class:`FakeClock` is both the database's clock and the masters' pacer: sleepers wait until
the test moves it; :meth:`FakeClock.jump` moves it to the earliest sleeper's deadline, and
:func:`run_until` jumps only while every log's loop sleeps (trio's autojump clock), so the
runs do not depend on the wall clock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from agentflow.cluster.sql.contract import Lease, MemberRow
from agentflow.errors import ConfigError, StoreFenced, StoreUnavailable

__all__ = ["DictDatabase", "DictStore", "FakeClock", "run_until"]

_T = TypeVar("_T")


class FakeClock:
    """Seconds that move only when the test says; ``sleep`` waits for them."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self.t

    @property
    def sleeping(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + seconds, next(self._order), future))
        await future

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self._wake()

    def jump(self) -> None:
        """Move to the earliest deadline of a sleeper still waiting, and wake it."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        if self._sleepers:
            self.t = max(self.t, self._sleepers[0][0])
            self._wake()

    def _wake(self) -> None:
        while self._sleepers and (self._sleepers[0][0] <= self.t or self._sleepers[0][2].done()):
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)


async def run_until(
    condition: Callable[[], bool],
    clock: FakeClock,
    loops: int,
    deadline_s: float = 20.0,
    invariant: Callable[[], None] | None = None,
) -> None:
    """Wait for ``condition``, moving ``clock`` on whenever all ``loops`` logs sleep on it;
    ``invariant`` is checked at every step.

    The deadline is on the wall clock and generous: it only stops a broken run."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        if invariant is not None:
            invariant()
        assert time.monotonic() < deadline, "the condition never held"
        if clock.sleeping >= loops:
            clock.jump()
        await asyncio.sleep(0.001)


@dataclass
class _Member:
    api_url: str
    seen_at: float
    applied: int
    reads_format: int
    version: str


@dataclass
class DictDatabase:
    """The shared "database": a log, a lease row, a snapshot row and member rows."""

    clock: Callable[[], float] = time.monotonic
    cluster_id: str | None = None
    holder: str = ""
    api_url: str = ""
    epoch: int = 0
    expires_at: float = 0.0
    log: dict[int, bytes] = field(default_factory=dict)
    snapshot_row: tuple[int, bytes] | None = None
    member_rows: dict[str, _Member] = field(default_factory=dict)
    appends: int = 0  # append transactions committed
    down: bool = False  # every call fails with StoreUnavailable
    # The next call of this name fails with StoreUnavailable: before it did anything, or after
    # it committed (the answer lost on the way back).
    fail_call: str | None = None
    fail_landed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    # As a MariaDB server's max_allowed_packet: the largest row (None: no limit); a write
    # over it is refused as the real store refuses it (ConfigError naming the setting).
    row_limit: int | None = None
    durability: str | None = None  # what durability_warning() says

    def lease_now(self) -> Lease:
        return Lease(self.holder, self.api_url, self.epoch, self.expires_at - self.clock())

    def last_index(self) -> int:
        """The highest index held: the log's, or the snapshot's when the log is empty."""
        if self.log:
            return max(self.log)
        return self.snapshot_row[0] if self.snapshot_row else 0

    def expire(self) -> None:
        """The lease lapses now (as a stalled writer's would)."""
        with self.lock:
            self.expires_at = self.clock()

    def fail_next(self, call: str, *, landed: bool = False) -> None:
        self.fail_call, self.fail_landed = call, landed


class DictStore:
    """One master's handle on a :class:`DictDatabase` (implements ``LogStoreLike``)."""

    def __init__(self, db: DictDatabase) -> None:
        self.db = db
        self.closed = False

    def _enter(self, name: str) -> bool:
        """Whether the call named ``name`` is to fail after committing (else it may go on)."""
        if self.closed or self.db.down:
            raise StoreUnavailable(f"{name}: the database does not answer")
        if self.db.fail_call == name:
            self.db.fail_call = None
            if not self.db.fail_landed:
                raise StoreUnavailable(f"{name}: the connection was lost")
            return True
        return False

    def _fence(self, lease: Lease) -> None:
        db = self.db
        if (db.holder, db.epoch) != (lease.holder, lease.epoch) or db.expires_at <= db.clock():
            raise StoreFenced(f"the lease is {db.holder}'s at epoch {db.epoch}")

    def migrate(self, cluster_id: str) -> str:
        with self.db.lock:
            self._enter("migrate")
            if self.db.cluster_id is None:
                self.db.cluster_id = cluster_id
            if self.db.cluster_id != cluster_id:
                raise ConfigError(f"the database belongs to cluster {self.db.cluster_id}")
            return "c0ffee"

    def lease(self) -> Lease:
        with self.db.lock:
            self._enter("lease")
            return self.db.lease_now()

    def acquire(self, node_id: str, api_url: str, ttl_s: float) -> Lease | None:
        db = self.db
        with db.lock:
            lost = self._enter("acquire")
            now = db.clock()
            expired = db.expires_at <= now
            if not expired and db.holder != node_id:
                return None
            if expired or db.holder != node_id:
                db.epoch += 1
            db.holder, db.api_url, db.expires_at = node_id, api_url, now + ttl_s
            return _answer(lost, db.lease_now())

    def renew(self, lease: Lease, ttl_s: float) -> Lease:
        db = self.db
        with db.lock:
            lost = self._enter("renew")
            self._fence(lease)
            db.expires_at = db.clock() + ttl_s
            return _answer(lost, db.lease_now())

    def release(self, lease: Lease) -> None:
        db = self.db
        with db.lock:
            self._enter("release")
            if (db.holder, db.epoch) == (lease.holder, lease.epoch):
                db.expires_at = db.clock()

    def _check_size(self, size: int, what: str) -> None:
        if self.db.row_limit is not None and size > self.db.row_limit:
            raise ConfigError(f"{what} of {size} bytes does not fit max_allowed_packet")

    def entry_limit(self) -> int | None:
        return self.db.row_limit

    def durability_warning(self) -> str | None:
        return self.db.durability

    def append(self, lease: Lease, first: int, entries: Sequence[bytes]) -> None:
        db = self.db
        with db.lock:
            lost = self._enter("append")
            for data in entries:
                self._check_size(len(data), "a log entry")
            self._fence(lease)
            indexes = range(first, first + len(entries))
            taken = [i for i in indexes if i in db.log]
            if taken:  # (a compacted index is free again, as a primary key's would be)
                raise StoreFenced(f"index {first} is taken")
            db.log.update(zip(indexes, entries, strict=True))
            db.appends += 1
            _answer(lost, None)

    def read(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        with self.db.lock:
            self._enter("read")
            found = sorted(i for i in self.db.log if i > after)[:limit]
            return [(i, self.db.log[i]) for i in found]

    def last_index(self) -> int:
        with self.db.lock:
            self._enter("last_index")
            return self.db.last_index()

    def save_snapshot(self, lease: Lease, index: int, data: bytes) -> None:
        with self.db.lock:
            self._enter("save_snapshot")
            self._check_size(len(data), "a snapshot")
            self._fence(lease)
            self.db.snapshot_row = (index, data)

    def compact(self, lease: Lease, through: int) -> int:
        with self.db.lock:
            self._enter("compact")
            self._fence(lease)
            gone = [i for i in self.db.log if i <= through]
            for i in gone:
                del self.db.log[i]
            return len(gone)

    def snapshot(self) -> tuple[int, bytes] | None:
        with self.db.lock:
            self._enter("snapshot")
            return self.db.snapshot_row

    def heartbeat(
        self, node_id: str, api_url: str, applied: int, reads_format: int, version: str
    ) -> None:
        with self.db.lock:
            self._enter("heartbeat")
            row = _Member(api_url, self.db.clock(), applied, reads_format, version)
            self.db.member_rows[node_id] = row

    def members(self) -> list[MemberRow]:
        with self.db.lock:
            self._enter("members")
            now = self.db.clock()
            return [
                MemberRow(nid, m.api_url, now - m.seen_at, m.applied, m.reads_format, m.version)
                for nid, m in sorted(self.db.member_rows.items())
            ]

    def close(self) -> None:
        self.closed = True


def _answer(lost: bool, value: _T) -> _T:
    if lost:
        raise StoreUnavailable("the connection was lost before the answer came back")
    return value
