"""Leader election: Raft paper §5.1-§5.2, with pre-vote and check-quorum (thesis §9.6)."""

from __future__ import annotations

from network import Network, cluster, elect, msg, sent

from agentflow.raft import MessageType, StateRole

MT = MessageType


def test_follower_starts_election_after_timeout() -> None:
    """§5.2: "If a follower receives no communication over a period of time called the
    election timeout", it "begins an election"."""
    net = cluster(3, pre_vote=False)
    node = net.nodes["1"]
    net.tick(node.id, 2 * 10)
    assert node.role is StateRole.CANDIDATE
    assert node.term == 1
    votes = [m for m in sent(net) if m.type is MT.VOTE]
    assert sorted(m.to for m in votes) == ["2", "3"]


def test_election_timeout_is_randomized() -> None:
    """§5.2: "election timeouts are chosen randomly from a fixed interval"; here
    [election_tick, 2 * election_tick)."""
    seen = set()
    for seed in range(40):
        net = Network()
        node = net.add_node("1", voters=["1", "2", "3"], seed=seed, pre_vote=False)
        ticks = 0
        while node.role is StateRole.FOLLOWER:
            net.tick("1")
            ticks += 1
        seen.add(ticks)
    assert min(seen) >= 10
    assert max(seen) < 20
    assert len(seen) > 3


def test_candidate_votes_for_itself_and_increments_term() -> None:
    """§5.2: "a follower increments its current term and transitions to candidate state. It
    then votes for itself"."""
    net = cluster(3, pre_vote=False)
    net.nodes["1"].campaign()
    status = net.nodes["1"].status
    assert (status.term, status.vote, status.role) == (1, "1", StateRole.CANDIDATE)
    net.process_all()
    assert net.storages["1"].initial_state()[0].vote == "1"


def test_candidate_with_majority_becomes_leader() -> None:
    """§5.2: "A candidate wins an election if it receives votes from a majority"."""
    net = cluster(5, pre_vote=False)
    net.partition(["1", "2", "3"], ["4", "5"])
    elect(net, "1")
    assert net.nodes["1"].term == 1


def test_candidate_without_majority_does_not_win() -> None:
    """§5.2: a candidate short of "a majority of the servers" stays candidate."""
    net = cluster(5, pre_vote=False)
    net.partition(["1", "2"], ["3", "4", "5"])
    net.nodes["1"].campaign()
    net.stabilize()
    assert net.nodes["1"].role is StateRole.CANDIDATE


def test_each_server_votes_for_at_most_one_candidate_per_term() -> None:
    """§5.2: "Each server will vote for at most one candidate in a given term"."""
    net = cluster(3, pre_vote=False)
    node = net.nodes["3"]
    node.step(msg(MT.VOTE, "1", "3", 1, index=0, log_term=0))
    node.step(msg(MT.VOTE, "2", "3", 1, index=0, log_term=0))
    replies = [m for m in sent(net) if m.type is MT.VOTE_RESP]
    assert [(m.to, m.reject) for m in replies] == [("1", False), ("2", True)]
    # A repeated request from the one we voted for is granted again (a lost reply).
    node.step(msg(MT.VOTE, "1", "3", 1, index=0, log_term=0))
    assert [m.reject for m in sent(net)] == [False]


def test_vote_is_persisted_before_the_grant_is_sent() -> None:
    """§5.1 / Figure 2: votedFor is persistent state, updated "before responding to RPCs"."""
    net = cluster(3, pre_vote=False)
    net.nodes["3"].step(msg(MT.VOTE, "1", "3", 1, index=0, log_term=0))
    rd = net.nodes["3"].ready()
    assert rd.hard_state is not None and rd.hard_state.vote == "1"
    assert [m.type for m in rd.messages] == [MT.VOTE_RESP]
    net.nodes["3"].advance(rd)


def test_candidate_steps_down_on_append_from_current_leader() -> None:
    """§5.2: "If the leader's term ... is at least as large as the candidate's current term,
    then the candidate recognizes the leader as legitimate"."""
    net = cluster(3, pre_vote=False)
    net.nodes["1"].campaign()
    net.nodes["1"].step(msg(MT.APPEND, "2", "1", 1, index=0, log_term=0))
    assert net.nodes["1"].role is StateRole.FOLLOWER
    assert net.nodes["1"].leader_id == "2"


def test_stale_term_messages_are_rejected() -> None:
    """§5.1: "If a server receives a request with a stale term number, it rejects the
    request"; the reply carries the newer term."""
    net = cluster(3, check_quorum=False)
    elect(net, "1")
    elect(net, "2")
    node = net.nodes["3"]
    node.step(msg(MT.APPEND, "1", "3", 1, index=1, log_term=1, commit=1))
    (reply,) = sent(net)
    assert reply.type is MT.APPEND_RESP and reply.to == "1" and reply.term == 2
    net.nodes["1"].step(reply)
    assert net.nodes["1"].role is StateRole.FOLLOWER


def test_higher_term_turns_leader_into_follower() -> None:
    """§5.1: "If a candidate or leader discovers that its term is out of date, it immediately
    reverts to follower state"."""
    net = cluster(3)
    elect(net, "1")
    net.nodes["1"].step(msg(MT.APPEND_RESP, "2", "1", 5, index=0))
    status = net.nodes["1"].status
    assert (status.role, status.term) == (StateRole.FOLLOWER, 5)


def test_prevote_does_not_bump_term() -> None:
    """Thesis §9.6: pre-vote asks "whether it could win"; a lost pre-vote leaves terms alone."""
    net = cluster(3)
    net.isolate("1")
    for _ in range(5):
        net.tick("1", 20)
        net.stabilize()
    assert net.nodes["1"].term == 0
    assert net.nodes["1"].role is StateRole.PRE_CANDIDATE


def test_prevote_granted_with_request_term_without_bumping() -> None:
    """Thesis §9.6: a pre-vote is granted without changing the voter's term; the grant carries
    the proposed term so the pre-candidate recognises it."""
    net = cluster(3, check_quorum=False)
    node = net.nodes["2"]
    node.step(msg(MT.PRE_VOTE, "1", "2", 4, index=0, log_term=0))
    (reply,) = sent(net)
    assert (reply.type, reply.term, reply.reject) == (MT.PRE_VOTE_RESP, 4, False)
    assert node.term == 0 and node.status.vote is None


def test_prevote_then_vote_elects_leader() -> None:
    """Thesis §9.6: after winning the pre-vote, the node "increments its term and starts a
    normal election"."""
    net = cluster(3)
    elect(net, "2")
    assert net.nodes["2"].term == 1
    assert all(n.leader_id == "2" for n in net.nodes.values())


def test_check_quorum_leader_steps_down_without_majority() -> None:
    """Thesis §6.2: a leader "steps down if an election timeout elapses without a successful
    round of heartbeats to a majority"."""
    net = cluster(3)
    elect(net, "1")
    net.isolate("1")
    for _ in range(2):
        net.tick("1", 10)
        net.stabilize()
    assert net.nodes["1"].role is StateRole.FOLLOWER


def test_check_quorum_followers_ignore_votes_while_leader_lives() -> None:
    """Thesis §4.2.3: a server that heard from a leader "within the minimum election timeout"
    does not grant votes (leader stickiness)."""
    net = cluster(3)
    elect(net, "1")
    node = net.nodes["2"]
    node.step(msg(MT.VOTE, "3", "2", 5, index=1, log_term=1))
    assert node.term == 1
    assert sent(net) == []


def test_transfer_vote_bypasses_lease() -> None:
    """Thesis §3.10: a TimeoutNow-forced campaign is not blocked by leader stickiness."""
    net = cluster(3)
    elect(net, "1")
    node = net.nodes["2"]
    node.step(msg(MT.VOTE, "3", "2", 2, index=1, log_term=1, context=b"CampaignTransfer"))
    (reply,) = sent(net)
    assert (reply.type, reply.reject, node.term) == (MT.VOTE_RESP, False, 2)


def test_node_outside_config_does_not_campaign() -> None:
    """§6: a server not in the configuration must not disrupt the cluster by campaigning."""
    net = Network()
    node = net.add_node("9", voters=["1", "2", "3"])
    net.tick("9", 50)
    node.campaign()
    assert node.role is StateRole.FOLLOWER and node.term == 0


def test_single_node_elects_itself() -> None:
    """§5.2 with one server: its own vote is a majority."""
    net = cluster(1)
    net.nodes["1"].campaign()
    net.stabilize()
    assert net.nodes["1"].role is StateRole.LEADER
    assert net.nodes["1"].status.commit == 1


def test_split_votes_resolve() -> None:
    """§5.2: randomized timeouts make split votes "rare and ... resolved quickly"."""
    net = cluster(5, pre_vote=False)
    for _ in range(60):
        for node_id in sorted(net.nodes):
            net.tick(node_id)
        net.stabilize()
        if net.leader() is not None:
            break
    leader = net.leader()
    assert leader is not None
    assert all(n.leader_id == leader for n in net.nodes.values())
