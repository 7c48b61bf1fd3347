"""This master's copy of the state over a SQL store: entries applied in order, snapshots.

Every path that changes the state machine holds :attr:`Replica.lock` from the store call that
decides what comes next until what it read or wrote is applied: a follower reading the table,
a read barrier catching up, the writer appending its batch, a snapshot loaded or taken. So an
entry is applied once, at its index, whichever of them reaches it first.

Entries read back are decoded as every replica decodes them (``apply_entry`` never raises on
their bytes); the writer applies its own commands as proposed where decoding their bytes gives
them back exactly (:func:`agentflow.state.verbatim.decodes_to_itself`), as the Raft leader does.
Nothing is applied before the store says the batch is durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agentflow import faults
from agentflow.cluster.image import Image, restore_error
from agentflow.cluster.seam import EventSink
from agentflow.cluster.sql.contract import Lease, LogStoreLike
from agentflow.cluster.sql.proposals import Proposal
from agentflow.cluster.timings import RaftTimings
from agentflow.errors import PayloadTooLargeError, UnavailableError
from agentflow.raft import ConfState
from agentflow.state import StateMachine, encode_command
from agentflow.state.events import EntryRejected, Event, StateRestored
from agentflow.state.verbatim import decodes_to_itself

__all__ = ["Replica", "StoreCall"]

log = logging.getLogger(__name__)

# Runs a blocking store call on the store's own thread: ``await call(store.read, 0, 10)``.
StoreCall = Callable[..., Awaitable[Any]]


class Replica:
    def __init__(
        self,
        machine: StateMachine,
        store: LogStoreLike,
        call: StoreCall,
        *,
        sinks: list[EventSink],
        timings: RaftTimings,
        read_batch: int,
    ) -> None:
        self.machine = machine
        self._store = store
        self._call = call
        self._sinks = sinks  # the log's subscribers (the same list: added to later)
        self._timings = timings
        self._read_batch = read_batch
        self.lock = asyncio.Lock()
        self.snapshot_index = 0  # of the latest snapshot loaded or taken here
        self.last_index = 0  # the highest index this master knows the table holds

    @property
    def applied(self) -> int:
        return self.machine.applied_index

    # -- following ---------------------------------------------------------------------------

    async def catch_up(self, target: int | None = None) -> None:
        """Apply what the table holds after the applied index: through ``target``, or until a
        read comes back short (nothing more committed for now)."""
        async with self.lock:
            while target is None or self.applied < target:
                rows = await self._call(self._store.read, self.applied, self._read_batch)
                gap = rows[0][0] > self.applied + 1 if rows else target is not None
                if gap:  # compacted away: the snapshot covers it
                    await self._load_snapshot(rows[0][0] - 1 if rows else target)
                    continue
                self._apply_rows(rows)
                if len(rows) < self._read_batch:
                    return

    async def load_snapshot(self) -> None:
        """Restore the store's snapshot if it is ahead of the applied index (at start)."""
        async with self.lock:
            await self._load_snapshot(None)

    async def _load_snapshot(self, needed: int | None) -> None:
        """Restore the store's snapshot; it must reach at least ``needed`` (the entries up to
        there were compacted away; None: whatever there is, if anything)."""
        got = await self._call(self._store.snapshot)
        if needed is not None and (got is None or got[0] < needed):
            raise UnavailableError(
                f"the store's log resumes after index {needed} but its snapshot is at"
                f" {got[0] if got else 'none'} (this master applied {self.applied})"
            )
        if got is None or got[0] <= self.applied:
            return
        started = time.perf_counter()
        index, data = got
        why = await asyncio.get_running_loop().run_in_executor(
            None, _restore_error, data, self.machine
        )
        if why is not None:  # never restored over the state: tried on a scratch machine first
            raise UnavailableError(f"the store's snapshot at index {index} does not restore: {why}")
        image = Image.unpack(data)
        self.machine.restore(image.machine)  # on the loop: the routes read the machine there
        self.snapshot_index = index
        self.last_index = max(self.last_index, index)
        log.info("loaded the store's snapshot at index %d (%d bytes)", index, len(data))
        self._timings.snapshot_install.observe(time.perf_counter() - started)
        for sink in self._sinks:  # what was skipped has no events: tell whoever keeps them
            sink([StateRestored(index=index)])

    def _apply_rows(self, rows: Sequence[tuple[int, bytes]]) -> None:
        if not rows:
            return
        started = time.perf_counter()
        for index, data in rows:
            if index != self.applied + 1:
                break  # a hole: the next read starts there, and finds a gap or the entry
            self.machine.apply_entry(index, data)
        self.last_index = max(self.last_index, self.applied)
        self._publish(self._drain())
        self._timings.apply.observe(time.perf_counter() - started)

    # -- writing -----------------------------------------------------------------------------

    async def commit(self, lease: Lease, batch: list[Proposal], fmt: int) -> None:
        """Append ``batch`` after the applied index in one fenced transaction, then apply it
        and settle its proposers. The store's errors propagate: nothing is applied then."""
        async with self.lock:
            first = self.applied + 1
            batch, datas = self._fitting(batch, [encode_command(p.command, fmt) for p in batch])
            if not batch:
                return
            started = time.perf_counter()
            await self._call(self._store.append, lease, first, datas)
            if faults.ARMED and any(b"SubmitTasks" in data[:16] for data in datas):
                faults.reached("before_apply")  # tests only: committed, not yet applied
            applying = time.perf_counter()
            self._timings.fsync.observe(applying - started)
            results = [
                self.machine.apply(index, p.command)
                if decodes_to_itself(p.command)
                else self.machine.apply_entry(index, data)
                for index, p, data in zip(
                    range(first, first + len(batch)), batch, datas, strict=True
                )
            ]
            self.last_index = self.applied
            self._publish(self._drain())
            self._timings.apply.observe(time.perf_counter() - applying)
        for proposal, result in zip(batch, results, strict=True):
            proposal.settle(result)

    def _fitting(
        self, batch: list[Proposal], datas: list[bytes]
    ) -> tuple[list[Proposal], list[bytes]]:
        """The proposals whose entries the store takes; the others are refused here (413),
        before any index is given out, so one oversized command never fails its neighbours."""
        limit = self._store.entry_limit()
        if limit is None or all(len(data) <= limit for data in datas):
            return batch, datas
        kept: tuple[list[Proposal], list[bytes]] = ([], [])
        for proposal, data in zip(batch, datas, strict=True):
            if len(data) <= limit:
                kept[0].append(proposal)
                kept[1].append(data)
                continue
            proposal.fail(
                PayloadTooLargeError(
                    f"the command is {len(data)} bytes encoded, more than one log entry may"
                    f" be on this store ({limit} bytes, from the server's max_allowed_packet):"
                    " send less, or raise max_allowed_packet on the server",
                    size_bytes=len(data),
                    limit_bytes=limit,
                )
            )
        return kept

    async def take_snapshot(self, lease: Lease, voters: frozenset[str], keep_after: int) -> int:
        """Save the image of the state at the applied index, fenced, and compact the table
        behind it but ``keep_after`` entries; the snapshot's index."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        async with self.lock:  # nothing applies while a thread reads the machine
            index = self.applied
            machine = await loop.run_in_executor(None, self.machine.snapshot)
        image = Image(
            index=index, term=lease.epoch, conf_state=ConfState(voters=voters), machine=machine
        )
        data = await loop.run_in_executor(None, image.pack)
        await self._call(self._store.save_snapshot, lease, index, data)
        self.snapshot_index = index
        if index - keep_after > 0:
            await self._call(self._store.compact, lease, index - keep_after)
        self._timings.snapshot_take.observe(time.perf_counter() - started)
        log.info("snapshot at index %d (%d bytes)", index, len(data))
        return index

    # -- events ------------------------------------------------------------------------------

    def _drain(self) -> list[Event]:
        events = self.machine.drain_events()
        for event in events:
            if isinstance(event, EntryRejected):
                log.warning("skipped the log entry at %d: %s", event.index, event.reason)
        return events

    def _publish(self, events: list[Event]) -> None:
        if events:
            for sink in self._sinks:
                sink(events)


def _restore_error(data: bytes, machine: StateMachine) -> str | None:
    """Why the image ``data`` would not restore into a machine like ``machine`` (None: it does)."""
    scratch = StateMachine(
        machine.policy, machine.limits, machine.locks.limits, machine.messages.limits
    )
    return restore_error(data, scratch)
