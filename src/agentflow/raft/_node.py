"""RaftNode: the public face of the core. It batches the core's output into Ready values."""

from __future__ import annotations

from random import Random

from agentflow.raft import _leader
from agentflow.raft._errors import ProposalDroppedError
from agentflow.raft._raft import Raft
from agentflow.raft._ready import Ready
from agentflow.raft._storage import Storage
from agentflow.raft._types import (
    ConfChange,
    Config,
    ConfState,
    EntryType,
    HardState,
    Message,
    MessageType,
    NodeId,
    SoftState,
    StateRole,
    Status,
)


class RaftNode:
    """One Raft member, driven by its shell: ``tick``/``step``/``propose`` in, ``Ready`` out.

    Nothing here blocks or performs I/O. See :class:`Ready` for what the shell must do with
    the output, and in which order.
    """

    def __init__(self, config: Config, storage: Storage, rng: Random) -> None:
        self._raft = Raft(config, storage, rng)
        self._prev_hard_state = self._hard_state()
        self._prev_soft_state = self._soft_state()
        self._outstanding: Ready | None = None

    # -- input --------------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick (election and heartbeat timers)."""
        self._raft.tick_fn(self._raft)

    def step(self, msg: Message) -> None:
        """Feed a message received from a peer."""
        if msg.to != self._raft.id:
            raise ValueError(f"message for {msg.to} delivered to {self._raft.id}")
        self._raft.step(msg)

    def campaign(self) -> None:
        """Start an election now (pre-vote first when enabled)."""
        self._raft.hup()

    def propose(self, data: bytes) -> int:
        """Append ``data`` to the log; returns its index. Raises ProposalDroppedError."""
        return _leader.propose(self._raft, EntryType.NORMAL, data)

    def propose_conf_change(self, cc: ConfChange) -> int:
        """Propose one membership change; refused while another is not yet applied."""
        if self._raft.role is not StateRole.LEADER:
            raise ProposalDroppedError("not the leader")
        return _leader.propose_conf_change(self._raft, cc)

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Called by the shell when it applies a committed CONF_CHANGE entry."""
        return self._raft.apply_conf_change(cc)

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read; answered by a ReadState with ``context`` in a Ready.

        ``context`` must be non-empty and unique among reads in flight. Raises
        ProposalDroppedError when no leader is known.
        """
        if not context:
            raise ValueError("read context must not be empty")
        r = self._raft
        if r.role is StateRole.LEADER:
            _leader.read_index(r, context, r.id)
        elif r.leader_id is not None:
            r.send(MessageType.READ_INDEX, r.leader_id, term=0, context=context)
        else:
            raise ProposalDroppedError("no leader known")

    def transfer_leadership(self, to: NodeId) -> None:
        """Hand leadership to voter ``to`` (leader only; a no-op elsewhere)."""
        _leader.transfer_leadership(self._raft, to)

    def report_unreachable(self, peer: NodeId) -> None:
        if self._raft.role is StateRole.LEADER:
            _leader.report_unreachable(self._raft, peer)

    def report_snapshot(self, peer: NodeId, ok: bool) -> None:
        if self._raft.role is StateRole.LEADER:
            _leader.report_snapshot(self._raft, peer, ok)

    # -- output -------------------------------------------------------------------------------

    def has_ready(self) -> bool:
        r = self._raft
        if r.needs_broadcast:
            _leader.broadcast_append(r)
        log = r.log
        return bool(
            r.msgs
            or log.unstable.entries
            or log.unstable.snapshot is not None
            or r.read_states
            or self._hard_state() != self._prev_hard_state
            or self._soft_state() != self._prev_soft_state
            or (self._outstanding is None and log.has_next_committed())
        )

    def ready(self) -> Ready:
        """Take what the shell must do now; hand it back with :meth:`advance`."""
        if self._outstanding is not None:
            raise AssertionError("ready() called again before advance()")
        r = self._raft
        if r.needs_broadcast:
            _leader.broadcast_append(r)
        log = r.log
        hard_state = self._hard_state()
        soft_state = self._soft_state()
        sync_commit = self._commits_conf_change(self._prev_hard_state.commit, hard_state.commit)
        early, late = _split_early(r.msgs, self._prev_hard_state, sync_commit)
        rd = Ready(
            hard_state=hard_state if hard_state != self._prev_hard_state else None,
            entries=tuple(log.unstable.entries),
            snapshot=log.unstable.snapshot,
            messages=late,
            early_messages=early,
            committed_entries=tuple(log.next_committed()),
            read_states=tuple(r.read_states),
            soft_state=soft_state if soft_state != self._prev_soft_state else None,
            sync_commit=sync_commit,
        )
        r.msgs = []
        r.read_states = []
        self._prev_hard_state = hard_state
        self._prev_soft_state = soft_state
        self._outstanding = rd
        return rd

    def advance(self, ready: Ready) -> None:
        """Tell the core the shell has done everything ``ready`` asked."""
        if ready is not self._outstanding:
            raise AssertionError("advance() with a Ready that is not the outstanding one")
        self._outstanding = None
        r = self._raft
        if ready.entries:
            last = ready.entries[-1]
            r.log.stable_to(last.index, last.term)
            if r.role is StateRole.LEADER:
                _leader.self_ack(r)  # our own copy is durable now: it counts
        if ready.snapshot is not None:
            r.log.stable_snap_to(ready.snapshot.metadata.index)
        if ready.committed_entries:
            r.log.applied_to(ready.committed_entries[-1].index)
            if r.role is StateRole.LEADER and r.uncommitted_size:
                applied_size = sum(len(e.data) for e in ready.committed_entries)
                r.uncommitted_size = max(0, r.uncommitted_size - applied_size)

    # -- introspection ------------------------------------------------------------------------

    @property
    def id(self) -> NodeId:
        return self._raft.id

    @property
    def role(self) -> StateRole:
        return self._raft.role

    @property
    def leader_id(self) -> NodeId | None:
        return self._raft.leader_id

    @property
    def term(self) -> int:
        return self._raft.term

    @property
    def status(self) -> Status:
        r = self._raft
        progress = {}
        if r.role is StateRole.LEADER:
            progress = {node_id: pr.status() for node_id, pr in r.tracker.progress.items()}
        return Status(
            id=r.id,
            term=r.term,
            vote=r.vote,
            role=r.role,
            leader_id=r.leader_id,
            commit=r.log.committed,
            applied=r.log.applied,
            last_index=r.log.last_index(),
            conf_state=r.tracker.conf_state(),
            lead_transferee=r.lead_transferee,
            progress=progress,
        )

    def _commits_conf_change(self, durable: int, commit: int) -> bool:
        """Do the entries after ``durable`` up to ``commit`` hold a membership change?"""
        r = self._raft
        if commit <= durable or r.pending_conf_index <= durable:
            return False  # nothing newly committed, or no change in the log past it
        lo = max(durable + 1, r.log.first_index())
        entries = r.log.slice(lo, commit + 1, None)
        return any(e.type is EntryType.CONF_CHANGE for e in entries)

    def _hard_state(self) -> HardState:
        r = self._raft
        return HardState(term=r.term, vote=r.vote, commit=r.log.committed)

    def _soft_state(self) -> SoftState:
        return SoftState(leader_id=self._raft.leader_id, role=self._raft.role)


# Only a leader sends these; none claims anything of its own log is durable (its commit index
# counts its own copy only once durable, a snapshot comes from storage).
_EARLY_TYPES = frozenset(
    {MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT, MessageType.TIMEOUT_NOW}
)


def _split_early(
    msgs: list[Message], durable: HardState, sync_commit: bool
) -> tuple[tuple[Message, ...], tuple[Message, ...]]:
    """(messages that may go out before this Ready is persisted, those that must wait).

    Early: a leader's messages of a term already durable. One of a term this Ready makes
    durable must wait: a leader that crashed before writing its new term could win that term
    again and send different entries under it.

    So must one that tells a follower a membership change committed before the leader's own
    commit index says so on disk. Configurations take effect when applied: a follower told
    that the change removing it committed stops campaigning; were the leader to lose that
    commit index in a crash, it would come back under the old configuration, needing the
    vote of a member that has left (kv seed 2009168: two voters shrunk to one).
    """

    def is_early(m: Message) -> bool:
        if m.type not in _EARLY_TYPES or m.term != durable.term:
            return False
        return not (sync_commit and m.commit > durable.commit)

    early = [m for m in msgs if is_early(m)]
    if not early:
        return (), tuple(msgs)
    if len(early) == len(msgs):
        return tuple(early), ()
    late = tuple(m for m in msgs if not is_early(m))
    return tuple(early), late
