"""The Raft state machine: term and vote, role transitions, elections, membership.

Roles are swapped functions, as in etcd-io/raft: ``step_fn``/``tick_fn`` point at the follower,
candidate or leader versions (modules ``_follower`` and ``_leader``), so no handler asks "am I
the leader?". This module owns what every role shares: the term rules of §5.1, vote requests
(§5.2, §5.4.1, pre-vote and the leader lease of the thesis §9.6), and conf changes (§6).
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from agentflow.raft import _follower, _leader
from agentflow.raft._log import RaftLog
from agentflow.raft._progress import ProgressTracker
from agentflow.raft._read_only import ReadOnly
from agentflow.raft._storage import Storage
from agentflow.raft._types import (
    CAMPAIGN_TRANSFER,
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    EntryType,
    Message,
    MessageType,
    NodeId,
    ReadState,
    StateRole,
)

StepFn = Callable[["Raft", Message], None]
TickFn = Callable[["Raft"], None]

_VOTE_RESPONSE = {
    MessageType.VOTE: MessageType.VOTE_RESP,
    MessageType.PRE_VOTE: MessageType.PRE_VOTE_RESP,
}
# Messages only a leader sends; a node that sees one at a higher term knows who leads.
_FROM_LEADER = frozenset({MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT})


class Raft:
    """One node's consensus state. Pure: output goes to ``msgs`` and ``read_states``."""

    def __init__(self, config: Config, storage: Storage, rng: Random) -> None:
        config.validate()
        self.id = config.id
        self.config = config
        self.rng = rng
        self.log = RaftLog(storage)
        self.tracker = ProgressTracker(config.max_inflight_msgs, config.max_inflight_bytes)
        self.election_timeout = config.election_tick
        self.heartbeat_timeout = config.heartbeat_tick
        self.term = 0
        self.vote: NodeId | None = None
        self.role = StateRole.FOLLOWER
        self.leader_id: NodeId | None = None
        self.lead_transferee: NodeId | None = None
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly()
        self.pending_reads: list[tuple[bytes, NodeId]] = []  # until a commit in our term
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self.needs_broadcast = False  # leader: new entries or commit not yet sent
        self.step_fn: StepFn = _follower.step_follower
        self.tick_fn: TickFn = _follower.tick_election
        self._restore_from_storage(storage)

    def _restore_from_storage(self, storage: Storage) -> None:
        hard_state, conf_state = storage.initial_state()
        self.tracker.load(conf_state, self.log.last_index() + 1)
        if hard_state.commit:
            self.log.commit_to(hard_state.commit)
        if self.config.applied:
            self.log.applied_to(self.config.applied)
        self.term = hard_state.term
        self.vote = hard_state.vote
        self.become_follower(self.term, None)

    # -- helpers ------------------------------------------------------------------------

    def send(self, msg_type: MessageType, to: NodeId, **fields: object) -> None:
        """Queue a message carrying our term unless ``fields`` names another."""
        fields.setdefault("term", self.term)
        self.msgs.append(Message(type=msg_type, from_=self.id, to=to, **fields))  # type: ignore[arg-type]

    @property
    def promotable(self) -> bool:
        """May this node become leader? Only a voter, and not while installing a snapshot."""
        return self.id in self.tracker.voters and self.log.unstable.snapshot is None

    def past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def reset_randomized_election_timeout(self) -> None:
        # §5.2: randomized in [election_tick, 2 * election_tick) so split votes are rare.
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(
            self.election_timeout
        )

    def committed_entry_in_current_term(self) -> bool:
        return self.log.zero_term_on_error(self.log.committed) == self.term

    # -- role transitions ---------------------------------------------------------------------

    def reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = None
        self.leader_id = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.reset_randomized_election_timeout()
        self.lead_transferee = None
        self.tracker.reset_votes()
        last = self.log.last_index()
        stable = self.log.stable_index()
        for node_id, pr in self.tracker.progress.items():
            pr.become_probe()
            pr.match = stable if node_id == self.id else 0  # our own copy counts once durable
            pr.next = last + 1
            pr.recent_active = False
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly()
        self.pending_reads = []
        self.needs_broadcast = False

    def become_follower(self, term: int, leader_id: NodeId | None) -> None:
        self.reset(term)
        self.step_fn = _follower.step_follower
        self.tick_fn = _follower.tick_election
        self.leader_id = leader_id
        self.role = StateRole.FOLLOWER

    def become_pre_candidate(self) -> None:
        # A pre-candidate changes neither term nor vote: losing the pre-vote costs nothing.
        if self.role is StateRole.LEADER:
            raise AssertionError("leader cannot become pre-candidate")
        self.step_fn = _follower.step_candidate
        self.tick_fn = _follower.tick_election
        self.tracker.reset_votes()
        self.leader_id = None
        self.role = StateRole.PRE_CANDIDATE

    def become_candidate(self) -> None:
        if self.role is StateRole.LEADER:
            raise AssertionError("leader cannot become candidate")
        self.reset(self.term + 1)
        self.step_fn = _follower.step_candidate
        self.tick_fn = _follower.tick_election
        self.vote = self.id
        self.role = StateRole.CANDIDATE

    def become_leader(self) -> None:
        if self.role is StateRole.FOLLOWER:
            raise AssertionError("follower cannot become leader without an election")
        self.reset(self.term)
        self.step_fn = _leader.step_leader
        self.tick_fn = _leader.tick_heartbeat
        self.leader_id = self.id
        self.role = StateRole.LEADER
        own = self.tracker.progress.get(self.id)
        if own is not None:
            own.become_replicate()
            own.recent_active = True
        # Any conf change in the uncommitted tail may still be pending: allow none until the
        # tail is applied.
        self.pending_conf_index = self.log.last_index()
        # §5.4.2 / §8: an empty entry of our term lets us commit the tail and serve reads.
        _leader.append_entries(self, [(EntryType.NORMAL, b"")])

    # -- elections ----------------------------------------------------------------------------

    def hup(self, *, transfer: bool = False) -> None:
        """Start an election if this node may: pre-vote first unless forced by a transfer."""
        if self.role is StateRole.LEADER or not self.promotable:
            return
        if self._has_unapplied_conf_change():
            return  # membership may be about to change under us
        if self.config.pre_vote and not transfer:
            self.campaign(pre_vote=True, transfer=False)
        else:
            self.campaign(pre_vote=False, transfer=transfer)

    def _has_unapplied_conf_change(self) -> bool:
        if self.log.committed <= self.log.applied:
            return False
        lo = max(self.log.applied + 1, self.log.first_index())
        ents = self.log.slice(lo, self.log.committed + 1, None)
        return any(e.type is EntryType.CONF_CHANGE for e in ents)

    def campaign(self, *, pre_vote: bool, transfer: bool) -> None:
        if pre_vote:
            self.become_pre_candidate()
            msg_type, term = MessageType.PRE_VOTE, self.term + 1
        else:
            self.become_candidate()
            msg_type, term = MessageType.VOTE, self.term
        if self.poll(self.id, granted=True, pre_vote=pre_vote):
            return  # a single voter wins at once
        context = CAMPAIGN_TRANSFER if transfer else b""
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for voter in sorted(self.tracker.voters):
            if voter != self.id:
                self.send(
                    msg_type,
                    voter,
                    term=term,
                    index=last_index,
                    log_term=last_term,
                    context=context,
                )

    def poll(self, node_id: NodeId, *, granted: bool, pre_vote: bool) -> bool:
        """Record a vote; act on the outcome. True once the election is decided."""
        self.tracker.record_vote(node_id, granted)
        yes, no = self.tracker.tally_votes()
        quorum = self.tracker.quorum()
        if yes >= quorum:
            if pre_vote:
                self.campaign(pre_vote=False, transfer=False)
            else:
                self.become_leader()
                _leader.broadcast_append(self)
            return True
        if no >= quorum:
            self.become_follower(self.term, None)
            return True
        return False

    # -- the step entry point ------------------------------------------------------------------

    def step(self, m: Message) -> None:
        if m.term > self.term:
            if not self._accept_higher_term(m):
                return
        elif 0 < m.term < self.term:
            self._answer_stale(m)
            return
        if m.type is MessageType.VOTE or m.type is MessageType.PRE_VOTE:
            self._handle_vote_request(m)
        else:
            self.step_fn(self, m)

    def _accept_higher_term(self, m: Message) -> bool:
        """§5.1 for a message from a later term; False when it must be ignored."""
        if m.type is MessageType.VOTE or m.type is MessageType.PRE_VOTE:
            forced = m.context == CAMPAIGN_TRANSFER
            in_lease = (
                self.config.check_quorum
                and self.leader_id is not None
                and self.election_elapsed < self.election_timeout
            )
            if in_lease and not forced:
                return False  # thesis §4.2.3: we heard from a live leader; no disruption
        if m.type is MessageType.PRE_VOTE:
            return True  # a pre-vote never changes our term
        if m.type is MessageType.PRE_VOTE_RESP and not m.reject:
            return True  # the term is the one we would campaign in; poll() bumps it
        leader = m.from_ if m.type in _FROM_LEADER else None
        self.become_follower(m.term, leader)
        return True

    def _answer_stale(self, m: Message) -> None:
        """A message from an older term is ignored, but its sender may need to learn ours."""
        if m.type is MessageType.APPEND or m.type is MessageType.HEARTBEAT:
            if self.config.check_quorum or self.config.pre_vote:
                # A leader cut off by a partition would otherwise never step down: with
                # pre-vote our term may never reach it through a vote request.
                self.send(MessageType.APPEND_RESP, m.from_)
        elif m.type is MessageType.PRE_VOTE:
            self.send(MessageType.PRE_VOTE_RESP, m.from_, reject=True)

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.from_
            or (self.vote is None and self.leader_id is None)
            or (m.type is MessageType.PRE_VOTE and m.term > self.term)
        )
        resp_type = _VOTE_RESPONSE[m.type]
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # The grant carries the request's term: a pre-vote grant for a future term must be
            # recognised by the pre-candidate, and never moves our own term.
            self.send(resp_type, m.from_, term=m.term)
            if m.type is MessageType.VOTE:
                self.election_elapsed = 0
                self.vote = m.from_  # persisted in hard_state before the grant is sent
        else:
            self.send(resp_type, m.from_, reject=True)

    # -- membership (§6, one change at a time) ----------------------------------------------------

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        tracker = self.tracker
        next_index = self.log.last_index() + 1
        if cc.type is ConfChangeType.ADD_VOTER:
            tracker.learners.discard(cc.node_id)
            tracker.voters.add(cc.node_id)
            tracker.ensure_progress(cc.node_id, next_index)
        elif cc.type is ConfChangeType.ADD_LEARNER:
            if cc.node_id not in tracker.voters:  # demoting a voter needs joint consensus
                tracker.learners.add(cc.node_id)
                tracker.ensure_progress(cc.node_id, next_index)
        else:
            tracker.remove(cc.node_id)
        if self.role is StateRole.LEADER:
            _leader.after_conf_change(self)
        return tracker.conf_state()
