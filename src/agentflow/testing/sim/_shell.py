"""One simulated master: the real Ready driver over the Raft core, a disk, a state machine.

The Ready loop is the master's own: :class:`agentflow.cluster.driver.ReadyDriver` feeds the
core between Readies and handles each Ready in order; this shell is only what the asyncio
shell of :class:`agentflow.cluster.node.RaftLog` is around it, minus the I/O. Messages and
ticks are queued in the driver and fed between Readies, as in the master (so a node whose
write is slow or stalled steps nothing meanwhile, as a master awaiting its fsync does). Each
Ready's write goes to the node's simulated disk (:mod:`agentflow.testing.sim._disk`) between
:meth:`ReadyDriver.begin` and :meth:`ReadyDriver.finish`; its fsync may be instant, slow or
stalled, and the rest of the Ready waits for it (``pending``) while the early messages have
already gone out (thesis §10.2.1). The safety checker sees every send, write and apply.

A crash throws away everything that is not durable: the driver and the core (with their
queues, unstable log and any Ready not yet performed), the state machine, the reads and
proposals waiting on it, and the writes not yet synced (a torn one included). A restart
rebuilds the core from the durable storage and the state machine from the storage's
snapshot, then replays the log from there.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agentflow.cluster.driver import ReadyDriver, Write
from agentflow.cluster.hardstate import CommitDeferral
from agentflow.errors import NotLeaderError
from agentflow.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    RaftNode,
    ReadState,
    Ready,
    Snapshot,
    StateRole,
)
from agentflow.testing.sim._disk import SimDisk
from agentflow.testing.sim._invariants import InvariantViolationError, SafetyChecker
from agentflow.testing.sim._kv import KvStore
from agentflow.testing.sim._model import ModelFactory, ReplicaModel

__all__ = ["Applied", "ReplicaModel", "SimNode"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    """An entry a node applied, and the state machine's answer to it."""

    node_id: str
    index: int
    term: int
    data: bytes
    result: Any
    conf_change: ConfChange | None = None


class SimNode:
    def __init__(
        self,
        node_id: str,
        storage: MemoryStorage,
        *,
        rng: random.Random,
        checker: SafetyChecker,
        config: Config,
        model: ModelFactory = KvStore,
    ) -> None:
        self.id = node_id
        self.storage = storage  # durable: survives crashes, written only from a Ready
        self._rng = rng
        self._checker = checker
        self._config = dataclasses.replace(config, id=node_id)
        self._new_model = model
        self.driver: ReadyDriver | None = None
        self.incarnation = 0
        self.model: ReplicaModel = model()
        self.conf_state = ConfState(voters=frozenset())
        self.role = StateRole.FOLLOWER
        self.leader_id: str | None = None
        self.removed = False  # applied a conf change that removed it
        # Crash in the middle of the next Ready: 0 before persisting (the early messages gone
        # already), 1 after persisting but before sending, 2 after sending but before applying.
        # None: no crash planned.
        self.crash_stage: int | None = None
        # A leader's own write may be slow (thesis §10.2.1): its Ready waits in `pending`, its
        # early messages already sent; `finish_write` completes it. `write_due` asks the
        # simulation to schedule that.
        self.slow_writes = False
        self.pending: Ready | None = None
        self.write_due = False
        self.fsync_ms = 0  # how long the pending write's fsync takes (0: a leader's slow write)
        self.disk = SimDisk()
        self._deferral = CommitDeferral()
        # Work produced by the last `process()`, collected by the simulation.
        self.outbox: list[Message] = []
        self.applied_now: list[Applied] = []
        self.reads_ready: list[bytes] = []
        self._read_waiting: list[tuple[int, bytes]] = []
        self._early = False

    @property
    def alive(self) -> bool:
        return self.driver is not None

    @property
    def raft(self) -> RaftNode | None:
        return self.driver.raft if self.driver is not None else None

    @property
    def applied(self) -> int:
        return self.driver.applied if self.driver is not None else 0

    @property
    def kv(self) -> KvStore:
        """The model, when it is the key-value store."""
        assert isinstance(self.model, KvStore), type(self.model)
        return self.model

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        assert self.driver is None, self.id
        snapshot = self.storage.snapshot()
        hard_state, conf_state = self.storage.initial_state()
        self.model.restore(snapshot.data)
        applied = snapshot.metadata.index
        self.conf_state = conf_state if applied == 0 else snapshot.metadata.conf_state
        config = dataclasses.replace(self._config, applied=applied)
        raft = RaftNode(config, self.storage, random.Random(self._rng.getrandbits(64)))
        self.driver = ReadyDriver(outbox=self, store=self, applier=self, reads=self, shell=self)
        self._deferral = CommitDeferral()  # a new process: raft.db opened afresh
        self.driver.start(raft, applied=applied)
        self.incarnation += 1
        self.role = StateRole.FOLLOWER
        self.leader_id = None
        status = raft.status
        if status.term != hard_state.term or status.commit < hard_state.commit:
            raise InvariantViolationError(
                f"node {self.id} restarts at term {status.term} commit {status.commit} but "
                f"durable state is term {hard_state.term} commit {hard_state.commit}"
            )

    def crash(self) -> None:
        """Lose everything not durable: the driver and core, unperformed Readies, the model,
        the writes not synced (but what of them the disk kept, recovery finds)."""
        self.driver = None
        self.crash_stage = None
        self.pending = None  # its write never finished: lost with the rest
        self.write_due = False
        self.model = self._new_model()
        self._read_waiting.clear()
        self.role = StateRole.FOLLOWER
        self.leader_id = None
        for write in self.disk.crash(self._rng):
            self._store(write)

    # -- inputs (fed to the core by the driver, between Readies) ----------------------------

    def step(self, message: Message) -> None:
        assert self.driver is not None
        self.driver.step(message)

    def tick(self) -> None:
        assert self.driver is not None
        self.driver.tick()

    # -- the Ready loop -------------------------------------------------------------------

    def process(self) -> bool:
        """Perform every Ready the driver has; False if a planned crash struck in the middle."""
        driver = self.driver
        assert driver is not None
        while self.pending is None and (ready := driver.next_ready()) is not None:
            self._early = True
            write = self._deferred(driver.begin(ready))
            self._early = False
            if not write.empty:
                self.disk.write(write)
            if self.crash_stage == 0:  # written, not synced: the disk decides what is kept
                self.crash()
                return False
            fsync_ms = self.disk.faults.fsync_ms(self._rng) if not write.empty else 0
            leader_slow = self.slow_writes and bool(ready.early_messages and ready.entries)
            if fsync_ms or leader_slow:
                self.pending, self.write_due, self.fsync_ms = ready, True, fsync_ms
                return True
            self._sync(ready, write.snapshot)
            if not self._finish(driver, ready):
                return False
        return True

    def _deferred(self, write: Write) -> Write:
        """The write raft.db would make: a hard state that only moves the commit index waits
        for the next write (:mod:`agentflow.cluster.hardstate`)."""
        now, hard = self._deferral.plan(
            write.hard_state, other=bool(write.entries or write.snapshot), sync=write.sync_commit
        )
        if not now:
            return Write(snapshot=None, entries=(), hard_state=None)
        return dataclasses.replace(write, hard_state=hard)

    def finish_write(self) -> bool:
        """The slow write of the pending Ready is durable: the rest of it, then the next."""
        ready, self.pending = self.pending, None
        assert ready is not None and self.driver is not None
        snapshot = ready.snapshot
        if snapshot is not None and snapshot.metadata.index <= self.driver.applied:
            snapshot = None
        self._sync(ready, snapshot)
        return self._finish(self.driver, ready) and self.process()

    def _finish(self, driver: ReadyDriver, ready: Ready) -> bool:
        """The write is durable: the rest of the Ready; False if a planned crash struck."""
        driver.stored(ready)
        if self.crash_stage == 1:
            self.crash()
            return False
        driver.send(ready)
        if self.crash_stage == 2:
            self.crash()
            return False
        driver.complete(ready)
        if self.crash_stage == 3:  # applied, and its messages lost (BUGGIFY silenced it)
            self.crash()
            return False
        return True

    def _sync(self, ready: Ready, snapshot: Snapshot | None) -> None:
        """fsync: the disk's unsynced writes become durable; the machine adopts ``snapshot``
        (the one :meth:`ReadyDriver.begin` said to install)."""
        for synced in self.disk.sync():
            self._store(synced)
        if snapshot is not None:
            self._restore(snapshot.data, snapshot.metadata.conf_state)
            assert self.driver is not None
            self.driver.installed(snapshot.metadata.index)
        if ready.soft_state is not None and self.role is StateRole.LEADER:
            self._checker.on_leader(self.id, self.storage)

    def _store(self, write: Write) -> None:
        """Put one durable write into the durable storage, each step shown to the checker."""
        checker = self._checker
        storage = self.storage
        new_term = write.hard_state.term if write.hard_state else storage.initial_state()[0].term
        if write.snapshot is not None:
            checker.before_snapshot(self.id, write.snapshot, storage)
            storage.apply_snapshot(write.snapshot)
        if write.entries:
            checker.before_append(self.id, write.entries, storage, new_term)
            storage.append(write.entries)
        if write.hard_state is not None:
            leading = self.role is StateRole.LEADER
            raft = self.raft
            voters = raft.status.conf_state.voters if leading and raft else frozenset()
            checker.on_hard_state(
                self.id, write.hard_state, storage, leading=leading, voters=voters
            )
            storage.set_hard_state(write.hard_state)

    def _restore(self, data: bytes, conf_state: ConfState) -> None:
        self.model.restore(data)
        self.conf_state = conf_state

    # -- what the driver calls: outbox, log store, applier, reads, shell ---------------------

    def send(self, message: Message) -> None:
        self.outbox.append(message)
        self._checker.on_send(message, self.storage, early=self._early)

    def stored(self, ready: Ready) -> None:
        """Nothing to show the core: its storage is the durable one, written by _persist."""

    def apply(self, raft: RaftNode, entry: Entry) -> Any:
        self._checker.on_apply(self.id, entry)
        result: Any = None
        change: ConfChange | None = None
        if entry.type is EntryType.CONF_CHANGE:
            change = ConfChange.decode(entry.data)
            self.conf_state = raft.apply_conf_change(change)
            if change.type is ConfChangeType.REMOVE_NODE and change.node_id == self.id:
                self.removed = True
        elif entry.data:
            result = self.model.apply(entry.index, entry.data)
        self.applied_now.append(
            Applied(
                node_id=self.id,
                index=entry.index,
                term=entry.term,
                data=entry.data,
                result=result,
                conf_change=change,
            )
        )
        return result

    def after_apply(self, entries: tuple[Entry, ...]) -> None:
        """A batch applied: the simulation collects ``applied_now`` after the step."""

    def proposed(self, index: int, data: bytes, command: Any) -> None:
        """Tell a proposer that watches (``placed(index, term)``) where its entry went."""
        placed = getattr(command, "placed", None)
        if placed is not None:
            placed(index, self.raft.term if self.raft is not None else 0)

    def park(self, read_states: Iterable[ReadState]) -> None:
        self._read_waiting.extend((state.index, state.context) for state in read_states)

    def release(self, applied: int) -> None:
        if not self._read_waiting:
            return
        still: list[tuple[int, bytes]] = []
        for index, context in self._read_waiting:
            if index <= applied:
                self.reads_ready.append(context)
            else:
                still.append((index, context))
        self._read_waiting = still

    def leadership(self, leader_id: str | None, role: StateRole) -> None:
        self.role = role
        self.leader_id = leader_id

    def ticked(self, raft: RaftNode, ticks: int) -> None:
        """No learner promotions of its own: the nemesis changes membership."""

    def refused(self, exc: Exception) -> Any:
        return exc

    def not_leader(self) -> Exception:
        return NotLeaderError(f"master {self.id} is not the leader")

    # -- maintenance ----------------------------------------------------------------------

    def compact(self) -> bool:
        """Snapshot the state machine at the applied index and drop the log up to it."""
        if not self.alive or self.applied <= self.storage.first_index():
            return False
        if self.applied > self.storage.last_index():
            return False
        self.storage.create_snapshot(self.applied, self.conf_state, self.model.snapshot())
        # A restart replays the log from the snapshot, so the membership it starts from must
        # be the snapshot's, not the bootstrap one.
        self.storage.set_conf_state(self.conf_state)
        self.storage.compact(self.applied)
        return True
