"""Client interaction: Raft paper §8 (read-only queries via ReadIndex), and leadership
transfer (thesis §3.10)."""

from __future__ import annotations

import pytest
from network import cluster, elect, msg, peek

from agentflow.raft import MessageType, ProposalDroppedError, StateRole

MT = MessageType


def test_read_index_waits_for_heartbeat_quorum() -> None:
    """§8: the leader must "check whether it has been deposed before processing a read-only
    request" by "exchang[ing] heartbeat messages with a majority"."""
    net = cluster(3)
    elect(net, "1")
    net.isolate("1")
    net.nodes["1"].read_index(b"r1")
    net.stabilize()
    assert net.read_states["1"] == []
    net.heal()
    net.tick("1", 1)
    net.stabilize()
    assert [(rs.index, rs.context) for rs in net.read_states["1"]] == [(1, b"r1")]


def test_read_index_deferred_until_leader_commits_in_its_term() -> None:
    """§8: "a leader must have the latest information on which entries are committed"; it
    commits a blank no-op entry of its term first."""
    net = cluster(3)
    net.nodes["1"].campaign()
    for _ in range(4):  # pre-vote, vote, and the leader's first append out, not yet acked
        net.process_all()
        net.deliver_round()
    leader = net.nodes["1"]
    assert leader.role is StateRole.LEADER and leader.status.commit == 0
    leader.read_index(b"early")
    assert not [m for m in peek(net) if m.type is MT.HEARTBEAT]
    net.stabilize()
    assert [rs.context for rs in net.read_states["1"]] == [b"early"]


def test_single_node_read_index_answers_at_once() -> None:
    """§8 with one server: it is its own majority, no round trip is needed."""
    net = cluster(1)
    elect(net, "1")
    net.nodes["1"].read_index(b"now")
    net.process_all()
    assert [(rs.index, rs.context) for rs in net.read_states["1"]] == [(1, b"now")]


def test_follower_forwards_read_index_to_leader() -> None:
    """Thesis §6.4: a follower "requests the current commit index from the leader" and serves
    the read once it has applied up to it."""
    net = cluster(3)
    elect(net, "1")
    net.nodes["1"].propose(b"x")
    net.stabilize()
    net.nodes["2"].read_index(b"f")
    net.stabilize()
    assert [(rs.index, rs.context) for rs in net.read_states["2"]] == [(2, b"f")]


def test_read_index_without_leader_is_refused() -> None:
    """Thesis §6.4: without a known leader there is nobody to confirm the read."""
    net = cluster(3)
    with pytest.raises(ProposalDroppedError):
        net.nodes["2"].read_index(b"x")


def test_deposed_leader_does_not_serve_reads() -> None:
    """§8: a deposed leader must not answer with stale data."""
    net = cluster(3)
    elect(net, "1")
    net.nodes["1"].read_index(b"stale")
    net.process_all()
    net.queue.clear()  # the heartbeats are lost
    net.nodes["1"].step(msg(MT.APPEND_RESP, "2", "1", 9, index=0))
    net.stabilize()
    assert net.nodes["1"].role is StateRole.FOLLOWER
    assert net.read_states["1"] == []


def test_transfer_leadership_to_up_to_date_follower() -> None:
    """Thesis §3.10: the leader "sends it a TimeoutNow request", and the target starts an
    election at once."""
    net = cluster(3)
    elect(net, "1")
    net.nodes["1"].transfer_leadership("2")
    net.stabilize()
    assert net.nodes["2"].role is StateRole.LEADER
    assert net.nodes["1"].leader_id == "2"


def test_transfer_catches_target_up_first_and_blocks_proposals() -> None:
    """Thesis §3.10: the leader "stops accepting new client requests" and brings the target's
    log up to date before TimeoutNow."""
    net = cluster(3)
    elect(net, "1")
    net.isolate("3")
    net.nodes["1"].propose(b"x")
    net.stabilize()
    net.heal()
    net.nodes["1"].transfer_leadership("3")
    with pytest.raises(ProposalDroppedError):
        net.nodes["1"].propose(b"y")
    net.tick("1", 1)
    net.stabilize()
    assert net.nodes["3"].role is StateRole.LEADER
    assert net.values("3") == [b"x"]


def test_transfer_aborts_after_election_timeout() -> None:
    """Thesis §3.10: "If the transfer does not complete within ... an election timeout, the
    prior leader aborts the transfer and resumes accepting client requests"."""
    net = cluster(3)
    elect(net, "1")
    net.isolate("3")
    net.nodes["1"].propose(b"x")
    net.stabilize()
    net.nodes["1"].transfer_leadership("3")
    net.tick("1", 5)
    net.stabilize()
    net.heal()  # node 3 stays reachable for check-quorum from here on
    net.tick("1", 5)
    net.stabilize()
    assert net.nodes["1"].role is StateRole.LEADER
    assert net.nodes["1"].status.lead_transferee is None
    net.nodes["1"].propose(b"y")
