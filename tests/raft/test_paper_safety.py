"""Safety: Raft paper §5.4 (election restriction, commit rule) and restart (Figure 2)."""

from __future__ import annotations

from network import cluster, elect, msg, sent

from agentflow.raft import Entry, MessageType, StateRole

MT = MessageType


def test_voter_rejects_candidate_with_less_up_to_date_log() -> None:
    """§5.4.1: "the voter denies its vote if its own log is more up-to-date than that of the
    candidate"."""
    net = cluster(3, pre_vote=False, check_quorum=False)
    node = net.nodes["3"]
    ents = (Entry(term=2, index=1), Entry(term=2, index=2))
    node.step(msg(MT.APPEND, "1", "3", 2, index=0, log_term=0, entries=ents))
    sent(net)
    cases = [(1, 5, True), (2, 1, True), (2, 2, False), (3, 1, False)]
    for term, (log_term, index, reject) in enumerate(cases, start=3):
        node.step(msg(MT.VOTE, "2", "3", term, index=index, log_term=log_term))
        (reply,) = sent(net)
        assert reply.reject is reject, (log_term, index)


def test_leader_commits_only_entries_of_its_own_term_by_counting() -> None:
    """§5.4.2: "Raft never commits log entries from previous terms by counting replicas"."""
    net = cluster(3, pre_vote=False, check_quorum=False, max_size_per_msg=1)
    elect(net, "1")
    net.isolate("1")
    net.nodes["1"].propose(b"old")  # index 2, term 1, only on node 1
    net.stabilize()
    net.restart("1")
    net.heal()
    net.isolate("3")
    # Node 2 gets entry 2 (term 1); its acknowledgement of the term-2 entry 3 is lost.
    net.drop_filter = lambda m: (
        m.type is MT.APPEND_RESP and m.from_ == "2" and not m.reject and m.index >= 3
    )
    elect(net, "1")
    leader = net.nodes["1"]
    assert leader.term == 2 and leader.status.progress["2"].match == 2
    assert leader.status.commit == 1  # a majority holds entry 2, yet it is not committed
    net.drop_filter = None
    net.tick("1", 1)
    net.stabilize()
    assert leader.status.commit == 3  # committed with the term-2 entry, indirectly
    assert net.values("2") == [b"old"]


def test_committed_entries_survive_leader_changes() -> None:
    """§5.4.3 Leader Completeness: "if a log entry is committed in a given term, then that
    entry will be present in the logs of the leaders for all higher-numbered terms"."""
    net = cluster(5, check_quorum=False)
    elect(net, "1")
    net.nodes["1"].propose(b"c")
    net.stabilize()
    for new_leader in ("2", "3", "4", "5"):
        net.isolate(str(int(new_leader) - 1))
        elect(net, new_leader)
        net.heal()
        assert net.values(new_leader)[0] == b"c"


def test_restart_resumes_as_follower_with_persisted_state() -> None:
    """Figure 2: currentTerm, votedFor and log[] are persistent "on all servers"; a restarted
    server resumes from them as a follower."""
    net = cluster(3)
    elect(net, "1")
    for i in range(3):
        net.nodes["1"].propose(f"v{i}".encode())
    net.stabilize()
    node = net.restart("1")
    status = node.status
    assert (status.role, status.term, status.vote) == (StateRole.FOLLOWER, 1, "1")
    assert status.commit == 4 and status.last_index == 4
    net.stabilize()
    assert net.values("1") == [b"v0", b"v1", b"v2"]


def test_restart_loses_only_unpersisted_state() -> None:
    """§5.1: state is persistent only once stored; a vote never handed to storage is not."""
    net = cluster(3, pre_vote=False)
    node = net.nodes["3"]
    node.step(msg(MT.VOTE, "1", "3", 1, index=0, log_term=0))
    node = net.restart("3")  # crashed before the Ready was persisted
    assert node.term == 0 and node.status.vote is None
