"""Step and tick functions of followers and (pre-)candidates, and what they do with a leader's
AppendEntries, heartbeats and snapshots (§5.2, §5.3, §7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentflow.raft._types import Message, MessageType, ReadState, StateRole

if TYPE_CHECKING:
    from agentflow.raft._raft import Raft


def tick_election(r: Raft) -> None:
    """§5.2: a follower that hears nothing for an election timeout starts an election."""
    r.election_elapsed += 1
    if r.promotable and r.past_election_timeout():
        r.election_elapsed = 0
        r.hup()


def step_follower(r: Raft, m: Message) -> None:
    t = m.type
    if t is MessageType.APPEND:
        r.election_elapsed = 0
        r.leader_id = m.from_
        handle_append(r, m)
    elif t is MessageType.HEARTBEAT:
        r.election_elapsed = 0
        r.leader_id = m.from_
        handle_heartbeat(r, m)
    elif t is MessageType.SNAPSHOT:
        r.election_elapsed = 0
        r.leader_id = m.from_
        handle_snapshot(r, m)
    elif t is MessageType.TIMEOUT_NOW:
        # The leader asks us to take over (leadership transfer): campaign at once, skipping
        # pre-vote, with a flag that lets voters ignore their leader lease.
        r.hup(transfer=True)
    elif t is MessageType.READ_INDEX_RESP:
        r.read_states.append(ReadState(index=m.index, context=m.context))
    # A READ_INDEX that reaches a follower (leadership moved on) is dropped, never forwarded
    # again, so it cannot loop; the reader times out and retries.


def step_candidate(r: Raft, m: Message) -> None:
    """Shared by pre-candidates and candidates; only the matching vote responses count."""
    t = m.type
    if t is MessageType.APPEND:
        # §5.2: a candidate that hears from a leader of a term at least its own steps down.
        r.become_follower(m.term, m.from_)
        handle_append(r, m)
    elif t is MessageType.HEARTBEAT:
        r.become_follower(m.term, m.from_)
        handle_heartbeat(r, m)
    elif t is MessageType.SNAPSHOT:
        r.become_follower(m.term, m.from_)
        handle_snapshot(r, m)
    elif t is MessageType.PRE_VOTE_RESP or t is MessageType.VOTE_RESP:
        pre_vote = r.role is StateRole.PRE_CANDIDATE
        if pre_vote == (t is MessageType.PRE_VOTE_RESP):
            r.poll(m.from_, granted=not m.reject, pre_vote=pre_vote)


def handle_append(r: Raft, m: Message) -> None:
    log = r.log
    if m.index < log.committed:
        # Everything up to our commit index is settled; say so, whatever the message holds.
        r.send(MessageType.APPEND_RESP, m.from_, index=log.committed)
        return
    last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
    if last_new is not None:
        r.send(MessageType.APPEND_RESP, m.from_, index=last_new)
        return
    # §5.3 with the optimisation of the paper's end: hint the largest index that could match,
    # and its term, so the leader skips every entry of a term we cannot share.
    hint_index, hint_term = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
    r.send(
        MessageType.APPEND_RESP,
        m.from_,
        index=m.index,
        reject=True,
        reject_hint=hint_index,
        log_term=hint_term,
    )


def handle_heartbeat(r: Raft, m: Message) -> None:
    # The leader sends min(match, commit), which we are known to hold.
    r.log.commit_to(m.commit)
    r.send(MessageType.HEARTBEAT_RESP, m.from_, context=m.context)


def handle_snapshot(r: Raft, m: Message) -> None:
    snap = m.snapshot
    if snap is None:
        return
    meta = snap.metadata
    log = r.log
    if meta.index <= log.committed:
        r.send(MessageType.APPEND_RESP, m.from_, index=log.committed)
        return
    if log.match_term(meta.index, meta.term):
        # We already hold the snapshot's last entry: just fast-forward the commit.
        log.commit_to(meta.index)
        r.send(MessageType.APPEND_RESP, m.from_, index=log.committed)
        return
    log.restore(snap)
    r.tracker.load(meta.conf_state, log.last_index() + 1)
    r.send(MessageType.APPEND_RESP, m.from_, index=log.last_index())
