"""Step and tick functions of the leader: replication (§5.3), commit (§5.4.2), heartbeats,
check-quorum, ReadIndex (thesis §6.4), leadership transfer (thesis §3.10) and the leader's side
of membership changes (§6)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentflow.raft._errors import (
    CompactedError,
    ProposalDroppedError,
    SnapshotTemporarilyUnavailableError,
)
from agentflow.raft._progress import Progress
from agentflow.raft._types import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    Message,
    MessageType,
    NodeId,
    ProgressState,
    ReadState,
    StateRole,
    entry_size,
)

if TYPE_CHECKING:
    from agentflow.raft._raft import Raft

_APPEND = MessageType.APPEND


# -- ticks -------------------------------------------------------------------------------------


def tick_heartbeat(r: Raft) -> None:
    r.heartbeat_elapsed += 1
    r.election_elapsed += 1
    if r.election_elapsed >= r.election_timeout:
        r.election_elapsed = 0
        if r.config.check_quorum and not _check_quorum_active(r):
            return
        if r.lead_transferee is not None:
            r.lead_transferee = None  # the target did not take over within an election timeout
            if r.role is StateRole.LEADER and r.id not in r.tracker.voters:
                r.become_follower(r.term, None)  # removed: the hand-over failed, step down
    if r.role is not StateRole.LEADER:
        return
    if r.heartbeat_elapsed >= r.heartbeat_timeout:
        r.heartbeat_elapsed = 0
        broadcast_heartbeat(r, r.read_only.last_pending_context())


def _check_quorum_active(r: Raft) -> bool:
    """Step down when a majority of voters has not been heard from for an election timeout."""
    active = r.tracker.quorum_active(r.id)
    for node_id, pr in r.tracker.progress.items():
        if node_id != r.id:
            pr.recent_active = False
    if not active:
        r.become_follower(r.term, None)
    return active


# -- proposals ---------------------------------------------------------------------------------


def propose(r: Raft, entry_type: EntryType, data: bytes) -> int:
    if r.role is not StateRole.LEADER:
        raise ProposalDroppedError("not the leader")
    if r.lead_transferee is not None:
        raise ProposalDroppedError(f"leadership is moving to {r.lead_transferee}")
    return append_entries(r, [(entry_type, data)])


def propose_conf_change(r: Raft, cc: ConfChange) -> int:
    if r.role is StateRole.LEADER and r.pending_conf_index > r.log.applied:
        raise ProposalDroppedError("another membership change is not yet applied")
    tracker = r.tracker
    if cc.type is ConfChangeType.ADD_VOTER and cc.node_id in tracker.learners:
        pr = tracker.progress.get(cc.node_id)
        if pr is None or pr.match < r.log.committed:
            raise ProposalDroppedError(f"learner {cc.node_id} has not caught up yet")
    if cc.type is ConfChangeType.REMOVE_NODE and tracker.voters == {cc.node_id}:
        raise ProposalDroppedError("cannot remove the last voter")
    index = propose(r, EntryType.CONF_CHANGE, cc.encode())
    r.pending_conf_index = index
    return index


def append_entries(r: Raft, items: list[tuple[EntryType, bytes]]) -> int:
    """Append new entries of our term to our own log; they go out with the next broadcast."""
    log = r.log
    term = r.term
    first = log.last_index() + 1
    size = 0
    entries = []
    for offset, (entry_type, data) in enumerate(items):
        size += len(data)
        entries.append(Entry(term=term, index=first + offset, type=entry_type, data=data))
    limit = r.config.max_uncommitted_entries_size
    if limit and size and r.uncommitted_size and r.uncommitted_size + size > limit:
        raise ProposalDroppedError("too many uncommitted bytes")
    r.uncommitted_size += size
    last = log.append(entries)
    # The leader's own copy is not counted yet: the appends that carry these entries may go
    # out before it is on disk (thesis §10.2.1), and it counts toward the majority only once
    # the shell reports it durable (see self_ack).
    r.needs_broadcast = True
    return last


def self_ack(r: Raft) -> None:
    """The shell reported the leader's log durable up to its stable index: count it now.

    The leader's match index for itself is that durable index, never the last index of its
    log, so an entry only the leader holds in memory never makes a majority.
    """
    own = r.tracker.progress.get(r.id)
    if own is not None and own.maybe_update(r.log.stable_index()):
        maybe_commit(r)


def maybe_commit(r: Raft) -> bool:
    if not r.log.maybe_commit(r.tracker.committed(), r.term):
        return False
    r.needs_broadcast = True
    _release_pending_reads(r)
    return True


# -- sending -----------------------------------------------------------------------------------


def broadcast_append(r: Raft) -> None:
    r.needs_broadcast = False
    for peer in r.tracker.peers():
        if peer != r.id:
            maybe_send_append(r, peer, send_if_empty=True)


def maybe_send_append(r: Raft, to: NodeId, send_if_empty: bool) -> bool:
    """Send ``to`` the entries after its next index (one message); False if nothing went."""
    pr = r.tracker.progress[to]
    if pr.is_paused():
        return False
    log = r.log
    prev = pr.next - 1
    try:
        prev_term = log.term(prev)
        entries = log.entries(pr.next, r.config.max_size_per_msg)
    except CompactedError:
        return _send_snapshot(r, to, pr)
    if not entries and not send_if_empty:
        return False
    size = 0
    for entry in entries:
        size += entry_size(entry)
    msg = Message(
        type=_APPEND,
        from_=r.id,
        to=to,
        term=r.term,
        index=prev,
        log_term=prev_term,
        entries=tuple(entries),
        commit=log.committed,
    )
    r.msgs.append(msg)
    pr.sent_entries(entries[-1].index if entries else prev, len(entries), size)
    return True


def _send_snapshot(r: Raft, to: NodeId, pr: Progress) -> bool:
    """§7: the entries the follower needs are compacted; send the snapshot instead."""
    if not pr.recent_active:
        return False  # do not ship a snapshot to a peer that may be down
    try:
        snapshot = r.log.snapshot()
    except SnapshotTemporarilyUnavailableError:
        return False
    r.send(MessageType.SNAPSHOT, to, snapshot=snapshot)
    pr.become_snapshot(snapshot.metadata.index)
    return True


def broadcast_heartbeat(r: Raft, context: bytes) -> None:
    committed = r.log.committed
    for peer in r.tracker.peers():
        if peer != r.id:
            # Only up to what the follower is known to hold: its log may still diverge above.
            pr = r.tracker.progress[peer]
            commit = min(pr.match, committed)
            r.send(MessageType.HEARTBEAT, peer, commit=commit, context=context)


# -- receiving ---------------------------------------------------------------------------------


def step_leader(r: Raft, m: Message) -> None:
    t = m.type
    if t is MessageType.APPEND_RESP:
        _handle_append_resp(r, m)
    elif t is MessageType.HEARTBEAT_RESP:
        _handle_heartbeat_resp(r, m)
    elif t is MessageType.READ_INDEX and m.context:
        read_index(r, m.context, m.from_)
    # Vote responses of the election we won, and anything else, need nothing.


def _handle_append_resp(r: Raft, m: Message) -> None:
    pr = r.tracker.progress.get(m.from_)
    if pr is None:
        return
    pr.recent_active = True
    if m.reject:
        next_probe = m.reject_hint
        if m.log_term > 0:
            next_probe, _ = r.log.find_conflict_by_term(m.reject_hint, m.log_term)
        if pr.maybe_decr_to(m.index, next_probe):
            if pr.state is ProgressState.REPLICATE:
                pr.become_probe()
            maybe_send_append(r, m.from_, send_if_empty=True)
        return
    old_paused = pr.is_paused()
    if not pr.maybe_update(m.index) and not (
        pr.match == m.index and pr.state is ProgressState.PROBE
    ):
        return
    if pr.state is ProgressState.PROBE:
        pr.become_replicate()
    elif pr.state is ProgressState.SNAPSHOT:
        if pr.match >= pr.pending_snapshot or pr.match + 1 >= r.log.first_index():
            pr.become_probe()
            pr.become_replicate()
    else:
        pr.inflights.free_le(m.index)
    if not maybe_commit(r) and old_paused and not r.needs_broadcast:
        # Tell a follower that was paused where it stands (commit index) unless a broadcast
        # is about to do it anyway.
        maybe_send_append(r, m.from_, send_if_empty=True)
    while maybe_send_append(r, m.from_, send_if_empty=False):
        pass
    if r.id not in r.tracker.voters:
        maybe_hand_over(r)  # removed: waiting for the others to hold its log
    elif m.from_ == r.lead_transferee and pr.match == r.log.last_index():
        r.send(MessageType.TIMEOUT_NOW, m.from_)


def _handle_heartbeat_resp(r: Raft, m: Message) -> None:
    pr = r.tracker.progress.get(m.from_)
    if pr is None:
        return
    pr.recent_active = True
    pr.probe_sent = False
    if pr.state is ProgressState.REPLICATE and pr.inflights.full():
        pr.inflights.free_first_one()  # an append may have been lost: let one more go
    if pr.match < r.log.last_index():
        maybe_send_append(r, m.from_, send_if_empty=True)
    if not m.context:
        return
    acks = r.read_only.recv_ack(m.from_, m.context)
    if acks is None or not r.tracker.has_quorum(acks):
        return
    for request in r.read_only.advance(m.context):
        _respond_read(r, request.index, request.context, request.requester)


# -- ReadIndex -----------------------------------------------------------------------------------


def read_index(r: Raft, context: bytes, requester: NodeId) -> None:
    """Thesis §6.4: record the commit index, then confirm leadership by a heartbeat round."""
    if r.tracker.is_singleton() and r.id in r.tracker.voters:
        _respond_read(r, r.log.committed, context, requester)
        return
    if not r.committed_entry_in_current_term():
        # Our commit index may lag the previous leader's until an entry of our term commits.
        r.pending_reads.append((context, requester))
        return
    if r.read_only.add_request(r.log.committed, context, requester):
        r.read_only.recv_ack(r.id, context)
        broadcast_heartbeat(r, context)


def _release_pending_reads(r: Raft) -> None:
    if not r.pending_reads or not r.committed_entry_in_current_term():
        return
    pending, r.pending_reads = r.pending_reads, []
    for context, requester in pending:
        read_index(r, context, requester)


def _respond_read(r: Raft, index: int, context: bytes, requester: NodeId) -> None:
    if requester == r.id:
        r.read_states.append(ReadState(index=index, context=context))
    else:
        r.send(MessageType.READ_INDEX_RESP, requester, index=index, context=context)


# -- leadership transfer and membership ----------------------------------------------------------


def transfer_leadership(r: Raft, to: NodeId) -> None:
    if r.role is not StateRole.LEADER or to not in r.tracker.voters:
        return
    if r.lead_transferee is not None:
        if r.lead_transferee == to:
            return
        r.lead_transferee = None
    if to == r.id:
        return
    r.election_elapsed = 0  # the transfer must finish within one election timeout
    r.lead_transferee = to
    if r.tracker.progress[to].match == r.log.last_index():
        r.send(MessageType.TIMEOUT_NOW, to)
    else:
        maybe_send_append(r, to, send_if_empty=True)


def after_conf_change(r: Raft) -> None:
    """The leader's part of applying a committed membership change."""
    if r.id not in r.tracker.voters:
        # §4.2.2: a leader removed from the configuration steps down once the change commits;
        # but first it hands over. The commit index covering the change may not have reached
        # the others (a lost or rejected append), and configurations take effect when
        # applied: stepping down at once can leave a voter that still counts this member,
        # behind its log, and so never granted the vote it needs. So it refuses proposals
        # and steps down once every remaining voter holds its whole log (then any of them
        # wins its vote), asking the most caught-up one to campaign at once; or after an
        # election timeout whatever happened (see `tick_heartbeat`).
        successor = _successor(r)
        if successor is None:
            r.become_follower(r.term, None)
        else:
            r.lead_transferee = successor
            r.election_elapsed = 0
            last = r.log.last_index()
            for voter in sorted(r.tracker.voters):
                if r.tracker.progress[voter].match < last:
                    maybe_send_append(r, voter, send_if_empty=True)
            maybe_hand_over(r)
        return
    maybe_commit(r)  # the quorum may have shrunk
    for peer in r.tracker.peers():
        pr = r.tracker.progress[peer]
        if peer != r.id and pr.match == 0:
            maybe_send_append(r, peer, send_if_empty=True)  # first probe of a new member
    if r.lead_transferee is not None and r.lead_transferee not in r.tracker.voters:
        r.lead_transferee = None


def maybe_hand_over(r: Raft) -> None:
    """A removed leader steps down once every voter left holds its whole log."""
    last = r.log.last_index()
    if all(r.tracker.progress[v].match >= last for v in r.tracker.voters):
        if r.lead_transferee is not None:
            r.send(MessageType.TIMEOUT_NOW, r.lead_transferee)
        r.become_follower(r.term, None)


def _successor(r: Raft) -> NodeId | None:
    """The voter a removed leader hands over to: the most caught-up one."""
    voters = sorted(r.tracker.voters)
    if not voters:
        return None
    return max(voters, key=lambda v: r.tracker.progress[v].match)


def report_unreachable(r: Raft, peer: NodeId) -> None:
    pr = r.tracker.progress.get(peer)
    if pr is not None and pr.state is ProgressState.REPLICATE:
        pr.become_probe()


def report_snapshot(r: Raft, peer: NodeId, ok: bool) -> None:
    pr = r.tracker.progress.get(peer)
    if pr is None or pr.state is not ProgressState.SNAPSHOT:
        return
    if not ok:
        pr.pending_snapshot = 0
    pr.become_probe()
    # Success: wait for the follower's reply before the next append. Failure: wait for a
    # heartbeat round before trying again.
    pr.probe_sent = True
