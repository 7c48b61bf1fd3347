"""The Ready driver: one synchronous, I/O-free loop between the Raft core and a shell.

Everything that reaches the core — peer messages, ticks, actions (reads, reports, membership
changes), proposals — is queued here and fed to it only between Readies. Each Ready is then
handled in the order its type documents, in three parts so that a shell may put its durable
write (and any delay of it) in between:

- :meth:`ReadyDriver.begin`: send the early messages (a leader's appends go out while its own
  write runs, thesis §10.2.1), adopt the soft state, and say what must be written
  (:class:`Write`: a snapshot to install, entries, the hard state);
- the shell makes that write durable — the asyncio master on its fsync thread, the simulator on
  its simulated disk (slow, stalled or lost in a crash) — and, for a snapshot, restores its
  machine and reports it with :meth:`ReadyDriver.installed`;
- :meth:`ReadyDriver.finish` (or its three steps :meth:`stored`, :meth:`send` and
  :meth:`complete`): show the write to the core's storage, send the rest, apply what committed
  in order (held back while the shell takes a snapshot), serve parked reads, advance.

A proposal resolves when its entry applies with the term it was proposed in (see
:mod:`agentflow.cluster.proposals`). The driver reads no clock (ticks are counted by the shell
and handed over with :meth:`ReadyDriver.tick`) and does no I/O: both the asyncio master
(:class:`agentflow.cluster.node.RaftLog`) and the simulator (``agentflow.testing.sim``) run it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from agentflow.cluster.proposals import Proposals, Waiter
from agentflow.raft import (
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDroppedError,
    RaftNode,
    ReadState,
    Ready,
    Snapshot,
    StateRole,
)

__all__ = [
    "Action",
    "ApplyGapError",
    "DriverShell",
    "EntryApplier",
    "LogStore",
    "MemoryLogStore",
    "Outbox",
    "ReadWaiters",
    "ReadyDriver",
    "Write",
]

Action = Callable[[RaftNode], Any]


class ApplyGapError(RuntimeError):
    """A committed entry came after a gap in what was applied: the driver is broken."""


@dataclass(frozen=True, slots=True)
class Write:
    """What one Ready asks to be made durable before anything else of it happens."""

    snapshot: Snapshot | None  # to install (only one ahead of what is applied)
    entries: tuple[Entry, ...]
    hard_state: HardState | None
    sync_commit: bool = False  # write the hard state now even if only its commit index moved

    @property
    def empty(self) -> bool:
        return self.snapshot is None and not self.entries and self.hard_state is None


class Outbox(Protocol):
    """Where messages to peers go (the transport); sending never blocks nor fails."""

    def send(self, message: Message) -> None: ...


class LogStore(Protocol):
    """The core's storage seen from the driver: a Ready's write became durable."""

    def stored(self, ready: Ready) -> None:
        """Make the entries and hard state of ``ready`` visible to the core's storage."""


class MemoryLogStore:
    """The core's in-memory storage, shown a Ready's write once a durable store has it."""

    def __init__(
        self, storage: MemoryStorage, *, on_entries: Callable[[tuple[Entry, ...]], None]
    ) -> None:
        self._storage = storage
        self._on_entries = on_entries

    def stored(self, ready: Ready) -> None:
        if ready.hard_state is not None:
            self._storage.set_hard_state(ready.hard_state)
        if ready.entries:
            self._storage.append(ready.entries)
            self._on_entries(ready.entries)


class EntryApplier(Protocol):
    """The state machine (and the configuration) behind the log."""

    def apply(self, raft: RaftNode, entry: Entry) -> Any:
        """Apply one committed entry; return what its proposer gets."""

    def after_apply(self, entries: tuple[Entry, ...]) -> None:
        """A batch was applied (``entries``, in order): publish what it caused."""

    def proposed(self, index: int, data: bytes, command: Any) -> None:
        """This node proposed ``data`` (encoded from ``command``) at ``index``."""


class ReadWaiters(Protocol):
    """Linearizable reads: parked by the core's answer, released once applied."""

    def park(self, read_states: Iterable[ReadState]) -> None: ...

    def release(self, applied: int) -> None: ...


class DriverShell(Protocol):
    """What the driver tells its shell, and the one thing it asks."""

    def leadership(self, leader_id: str | None, role: StateRole) -> None:
        """The core's soft state changed (before this Ready's write)."""

    def ticked(self, raft: RaftNode, ticks: int) -> None:
        """``ticks`` ticks were fed to the core (a leader may promote learners)."""

    def refused(self, exc: Exception) -> Any:
        """The result for a waiter whose action the core refused."""

    def not_leader(self) -> Exception:
        """The exception for a proposal the core dropped."""


@dataclass(slots=True)
class _Proposal:
    data: bytes
    waiter: Waiter
    command: Any


class ReadyDriver:
    """Feeds the core between Readies and handles each Ready in order; see the module."""

    def __init__(
        self,
        *,
        outbox: Outbox,
        store: LogStore,
        applier: EntryApplier,
        reads: ReadWaiters,
        shell: DriverShell,
    ) -> None:
        self._raft: RaftNode | None = None
        self.applied = 0
        self._outbox = outbox
        self._store = store
        self._applier = applier
        self._reads = reads
        self._shell = shell
        self.inbox: list[Message] = []
        self.ticks = 0
        self.actions: list[tuple[Action, Waiter]] = []
        self.proposals: list[_Proposal] = []
        self.waiting = Proposals()
        self.deferred: list[Entry] = []  # committed, not applied yet (held during a snapshot)
        self.holding = False  # the shell is taking a snapshot: applying waits
        self.campaign_at: int | None = None  # campaign once this much is applied (alone)

    def start(self, raft: RaftNode, *, applied: int) -> None:
        """Drive ``raft``, whose state machine has applied up to ``applied``; what was queued
        before is fed to it first."""
        self._raft = raft
        self.applied = applied

    @property
    def started(self) -> bool:
        return self._raft is not None

    def conf_state(self) -> ConfState | None:
        """The core's configuration (None before it starts)."""
        return self._raft.status.conf_state if self._raft is not None else None

    @property
    def raft(self) -> RaftNode:
        assert self._raft is not None, "the driver has not started"
        return self._raft

    # -- inputs -----------------------------------------------------------------------------

    def step(self, message: Message) -> None:
        self.inbox.append(message)

    def tick(self, ticks: int = 1) -> None:
        self.ticks += ticks

    def act(self, action: Action, waiter: Waiter) -> None:
        """Run ``action`` against the core between Readies; a refusal resolves ``waiter``."""
        self.actions.append((action, waiter))

    def propose(self, data: bytes, waiter: Waiter, command: Any = None) -> None:
        """Propose ``data`` between Readies; ``waiter`` resolves when its entry applies."""
        self.proposals.append(_Proposal(data, waiter, command))

    @property
    def queued(self) -> int:
        """Proposals queued or waiting for their entries."""
        return len(self.proposals) + len(self.waiting)

    def feed(self) -> None:
        """Hand the core everything queued: held-back entries first, then messages, ticks,
        actions and proposals, in that order."""
        raft = self.raft
        if self.deferred:
            self.apply_in_order()
        if self.inbox:
            inbox, self.inbox = self.inbox, []
            for msg in inbox:
                raft.step(msg)
        if self.ticks:
            ticks, self.ticks = self.ticks, 0
            for _ in range(ticks):
                raft.tick()
            self._shell.ticked(raft, ticks)
        if self.actions:
            self._feed_actions(raft)
        if self.proposals:
            self._feed_proposals(raft)

    def _feed_actions(self, raft: RaftNode) -> None:
        actions, self.actions = self.actions, []
        for action, waiter in actions:
            try:
                action(raft)
            except (ProposalDroppedError, ValueError) as exc:
                if not waiter.done():
                    waiter.set_result(self._shell.refused(exc))

    def _feed_proposals(self, raft: RaftNode) -> None:
        proposals, self.proposals = self.proposals, []
        for proposal in proposals:
            if proposal.waiter.done():
                continue
            try:
                index = raft.propose(proposal.data)
            except ProposalDroppedError:
                proposal.waiter.set_exception(self._shell.not_leader())
                continue
            self.waiting.wait(index, raft.term, proposal.waiter)
            self._applier.proposed(index, proposal.data, proposal.command)

    # -- one Ready --------------------------------------------------------------------------

    def next_ready(self) -> Ready | None:
        """Feed the core, then take its next Ready (None: nothing to do)."""
        self.feed()
        return self.raft.ready() if self.raft.has_ready() else None

    def begin(self, ready: Ready) -> Write:
        """Send the early messages, adopt the soft state; return what must be made durable."""
        for msg in ready.early_messages:
            self._outbox.send(msg)
        if ready.soft_state is not None:
            self._shell.leadership(ready.soft_state.leader_id, ready.soft_state.role)
        snapshot = ready.snapshot
        if snapshot is not None and snapshot.metadata.index <= self.applied:
            snapshot = None
        return Write(
            snapshot=snapshot,
            entries=ready.entries,
            hard_state=ready.hard_state,
            sync_commit=ready.sync_commit,
        )

    def installed(self, index: int) -> None:
        """The shell restored its machine from a snapshot at ``index`` (from :meth:`begin`):
        entries up to it never apply here."""
        self.applied = index
        self.deferred = [e for e in self.deferred if e.index > index]
        self.waiting.superseded(index)

    def finish(self, ready: Ready) -> None:
        """The write of ``ready`` is durable: do the rest of it, then advance."""
        self.stored(ready)
        self.send(ready)
        self.complete(ready)

    def stored(self, ready: Ready) -> None:
        self._store.stored(ready)

    def send(self, ready: Ready) -> None:
        """Send the messages that may depend on the write, less stale acknowledgements.

        Fed a batch, the core may acknowledge a deposed leader's entries and then, stepping a
        later leader's append, replace them: the Ready then acknowledges, in the old term,
        entries its write no longer holds. The old leader must not count them; its term is
        over for this node anyway, so such acknowledgements are dropped (as if lost).
        """
        term = ready.hard_state.term if ready.hard_state is not None else 0
        for msg in ready.messages:
            if msg.type is MessageType.APPEND_RESP and not msg.reject and msg.term < term:
                continue
            self._outbox.send(msg)

    def complete(self, ready: Ready) -> None:
        """Apply what committed (in order), serve the reads it allows, advance the core."""
        self.deferred.extend(ready.committed_entries)
        self.apply_in_order()
        self._reads.park(ready.read_states)
        self._reads.release(self.applied)
        self.raft.advance(ready)
        if self.campaign_at is not None and self.applied >= self.campaign_at:
            self.campaign_at = None  # a cluster of one need not wait to elect
            self.raft.campaign()

    def apply_in_order(self) -> None:
        """Apply every committed entry not yet applied, oldest first, unless a snapshot is
        being taken (then they wait, in order, for it to finish)."""
        if not self.deferred or self.holding:
            return
        entries, self.deferred = self.deferred, []
        done: list[Entry] = []
        for entry in entries:
            if entry.index <= self.applied:
                continue  # in the snapshot the machine was restored from
            if entry.index != self.applied + 1:
                raise ApplyGapError(f"entry {entry.index} committed after {self.applied}")
            result = self._applier.apply(self.raft, entry)
            self.applied = entry.index
            self.waiting.applied(entry, result)
            done.append(entry)
        if done:
            self._applier.after_apply(tuple(done))
        self._reads.release(self.applied)
