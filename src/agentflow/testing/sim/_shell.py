"""One simulated master: the Raft core, its durable storage and its volatile state machine.

The shell is what a real master's driver loop does, minus the I/O: it takes each Ready and
performs it in the contract's order — send the early messages, persist (snapshot, entries,
hard state into the node's durable `MemoryStorage`), send the rest, apply, serve reads,
advance — calling the safety checker at each step. A leader's write may be slow: its Ready
then waits in `pending` while the core keeps stepping what arrives (thesis §10.2.1). A crash
throws away everything that is not in the durable storage:
the core (with its unstable log and any Ready not yet performed), the state machine and the
reads and proposals waiting on it. A restart rebuilds the core from the durable storage and
the state machine from the storage's snapshot, then replays the log from there.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from agentflow.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    EntryType,
    MemoryStorage,
    Message,
    RaftNode,
    Ready,
    StateRole,
)
from agentflow.testing.sim._invariants import InvariantViolationError, SafetyChecker
from agentflow.testing.sim._kv import KvStore
from agentflow.testing.sim._model import ModelFactory, ReplicaModel

__all__ = ["Applied", "SimNode"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    """An entry a node applied, and the compare-and-set outcome if it was one."""

    node_id: str
    index: int
    term: int
    data: bytes
    result: object  # what the model's apply returned (a compare-and-set: whether it took)
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
        self.raft: RaftNode | None = None
        self.incarnation = 0
        self._model_factory = model
        self.model: ReplicaModel = model()
        self.applied = 0
        self.conf_state = ConfState(voters=frozenset())
        self.role = StateRole.FOLLOWER
        self.leader_id: str | None = None
        self.removed = False  # applied a conf change that removed it
        # Crash in the middle of the next Ready: 0 before persisting (the early messages gone
        # already), 1 after persisting but before sending, 2 after sending but before applying.
        # None: no crash planned.
        self.crash_stage: int | None = None
        # A leader's own write may be slow (thesis §10.2.1): its Ready waits in `pending`, its
        # early messages already sent, while the core steps what arrives; `finish_write`
        # completes it. `write_due` asks the simulation to schedule that.
        self.slow_writes = False
        self.pending: Ready | None = None
        self.write_due = False
        # Work produced by the last `process()`, collected by the simulation.
        self.outbox: list[Message] = []
        self.applied_now: list[Applied] = []
        self.reads_ready: list[bytes] = []
        self._read_waiting: list[tuple[int, bytes]] = []

    @property
    def kv(self) -> KvStore:
        """The model, for the key-value clients (which run only over a `KvStore`)."""
        assert isinstance(self.model, KvStore), type(self.model)
        return self.model

    @property
    def alive(self) -> bool:
        return self.raft is not None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        assert self.raft is None, self.id
        snapshot = self.storage.snapshot()
        hard_state, conf_state = self.storage.initial_state()
        self.model.restore(snapshot.data)
        self.applied = snapshot.metadata.index
        self.conf_state = (
            conf_state if snapshot.metadata.index == 0 else snapshot.metadata.conf_state
        )
        config = dataclasses.replace(self._config, applied=self.applied)
        self.raft = RaftNode(config, self.storage, random.Random(self._rng.getrandbits(64)))
        self.incarnation += 1
        self.role = StateRole.FOLLOWER
        self.leader_id = None
        status = self.raft.status
        if status.term != hard_state.term or status.commit < hard_state.commit:
            raise InvariantViolationError(
                f"node {self.id} restarts at term {status.term} commit {status.commit} but "
                f"durable state is term {hard_state.term} commit {hard_state.commit}"
            )

    def crash(self) -> None:
        """Lose everything not durable: the core, unperformed Readies, the state machine."""
        self.raft = None
        self.crash_stage = None
        self.pending = None  # its write never finished: lost with the rest
        self.write_due = False
        self.model = self._model_factory()
        self._read_waiting.clear()
        self.role = StateRole.FOLLOWER
        self.leader_id = None

    # -- the Ready loop -------------------------------------------------------------------

    def process(self) -> bool:
        """Perform every pending Ready; False if a planned crash struck in the middle."""
        raft = self.raft
        assert raft is not None
        while self.pending is None and raft.has_ready():
            ready = raft.ready()
            # A leader's appends go out before its own write (thesis §10.2.1), so a crash
            # before persisting may leave followers holding what the leader lost.
            self._send(ready.early_messages, early=True)
            if self.crash_stage == 0:
                self.crash()
                return False
            if self.slow_writes and ready.early_messages and ready.entries:
                self.pending, self.write_due = ready, True
                return True
            if not self._finish(raft, ready):
                return False
        return True

    def finish_write(self) -> bool:
        """The slow write of the pending Ready is durable: the rest of it, then the next."""
        ready, self.pending = self.pending, None
        assert ready is not None and self.raft is not None
        return self._finish(self.raft, ready) and self.process()

    def _finish(self, raft: RaftNode, ready: Ready) -> bool:
        """Steps 1-5 of the contract; False if a planned crash struck in the middle."""
        self._persist(ready)
        if self.crash_stage == 1:
            self.crash()
            return False
        self._send(ready.messages, early=False)
        if self.crash_stage == 2:
            self.crash()
            return False
        self._apply(raft, ready)
        for read_state in ready.read_states:
            self._read_waiting.append((read_state.index, read_state.context))
        self._serve_reads()
        raft.advance(ready)
        return True

    def _send(self, messages: tuple[Message, ...], *, early: bool) -> None:
        self.outbox.extend(messages)
        for message in messages:
            self._checker.on_send(message, self.storage, early=early)

    def _persist(self, ready: Ready) -> None:
        checker = self._checker
        storage = self.storage
        if ready.soft_state is not None:
            self.role = ready.soft_state.role
            self.leader_id = ready.soft_state.leader_id
        new_term = ready.hard_state.term if ready.hard_state else storage.initial_state()[0].term
        if ready.snapshot is not None:
            checker.before_snapshot(self.id, ready.snapshot, storage)
            storage.apply_snapshot(ready.snapshot)
        if ready.entries:
            checker.before_append(self.id, ready.entries, storage, new_term)
            storage.append(ready.entries)
        if ready.hard_state is not None:
            leading = self.role is StateRole.LEADER
            voters = self.raft.status.conf_state.voters if leading and self.raft else frozenset()
            checker.on_hard_state(
                self.id, ready.hard_state, storage, leading=leading, voters=voters
            )
            storage.set_hard_state(ready.hard_state)
        if ready.soft_state is not None and self.role is StateRole.LEADER:
            checker.on_leader(self.id, storage)

    def _apply(self, raft: RaftNode, ready: Ready) -> None:
        if ready.snapshot is not None:
            meta = ready.snapshot.metadata
            if meta.index > self.applied:
                self.model.restore(ready.snapshot.data)
                self.applied = meta.index
                self.conf_state = meta.conf_state
        for entry in ready.committed_entries:
            if entry.index <= self.applied:
                continue  # already in the snapshot the state machine was restored from
            if entry.index != self.applied + 1:
                raise InvariantViolationError(
                    f"node {self.id} applies {entry.index} after {self.applied}: a gap"
                )
            self._checker.on_apply(self.id, entry)
            self.applied = entry.index
            result: object = None
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

    def _serve_reads(self) -> None:
        if not self._read_waiting:
            return
        still: list[tuple[int, bytes]] = []
        for index, context in self._read_waiting:
            if index <= self.applied:
                self.reads_ready.append(context)
            else:
                still.append((index, context))
        self._read_waiting = still

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
