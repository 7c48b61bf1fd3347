"""Safety: Raft paper §5.4 (election restriction, commit rule, Figure 8) and restart (Figure 2)."""

from __future__ import annotations

from network import Network, cluster, elect, msg, sent

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


def _log_terms(net: Network, node_id: str) -> list[int]:
    storage = net.storages[node_id]
    return [storage.term(i) for i in range(1, storage.last_index() + 1)]


def _figure_8_c() -> Network:
    """Build the Raft paper's Figure 8 up to (c), step by step, five servers S1..S5.

    Indexes and terms are the figure's. One liberty: at (c) S1 replicates index 2 to S3 and
    S4, where the figure names S2 and S3, because a leader only counts a copy that was
    acknowledged to it, and S2's copy (from term 2) is never acknowledged in term 4.
    """
    net = cluster(5, pre_vote=False, check_quorum=False, max_size_per_msg=1)
    elect(net, "5")  # term 1: index 1 (term 1) reaches everyone and commits
    # (a) S1 leads term 2 and replicates index 2 (its entry of term 2) to S2 only.
    net.drop_filter = lambda m: m.type is MT.APPEND and m.to in {"3", "4", "5"}
    elect(net, "1")
    assert net.nodes["1"].term == 2
    # (b) S1 crashes; S5 is elected for term 3 by S3, S4 and itself (S2's log is more
    # up-to-date than S5's, so S2 refuses) and writes index 2 (term 3), on its log only.
    net.down.add("1")
    net.drop_filter = lambda m: m.type is MT.APPEND
    elect(net, "5")
    assert net.nodes["5"].term == 3
    net.down.add("5")
    # (c) S5 crashes; S1 restarts, is elected for term 4 (S3 and S4 voted in term 3 for S5,
    # so its first try, in term 3, fails) and writes index 3 (term 4). It replicates index 2
    # to S3 and S4; nothing of term 4 reaches any other log yet.
    net.restart("1")
    net.drop_filter = lambda m: (
        m.type is MT.APPEND
        and any(e.term == 4 for e in m.entries)
        and net.storages[m.to].last_index() >= m.index  # the follower would store it
    )
    net.nodes["1"].campaign()
    net.stabilize()
    elect(net, "1")
    assert net.nodes["1"].term == 4
    assert {n: _log_terms(net, n) for n in net.nodes} == {
        "1": [1, 2, 4],
        "2": [1, 2],
        "3": [1, 2],
        "4": [1, 2],
        "5": [1, 3],
    }
    net.drop_filter = None
    return net


def test_figure_8_entry_of_an_earlier_term_on_a_majority_is_not_committed() -> None:
    """§5.4.2, Figure 8 (c)-(d): "a log entry may be replicated on a majority of servers ...
    yet still be overwritten by a future leader"; so "only log entries from the leader's
    current term are committed by counting replicas"."""
    net = _figure_8_c()
    leader = net.nodes["1"]
    holders = [n for n, pr in leader.status.progress.items() if pr.match >= 2]
    assert len(holders) >= 3  # the leader itself knows index 2 is on a majority ...
    assert leader.status.commit == 1  # ... and still does not commit it
    # (d) S1 crashes; S5 is elected for term 5 by S2, S3 and S4 (its last term, 3, beats
    # their 2) and overwrites index 2 everywhere: safe, since nobody committed it.
    net.down.add("1")
    net.restart("5")
    net.nodes["5"].campaign()  # term 4: they all voted for S1 in term 4
    net.stabilize()
    elect(net, "5")
    assert net.nodes["5"].term == 5
    for node_id in ("2", "3", "4", "5"):
        assert _log_terms(net, node_id) == [1, 3, 5], node_id
        assert net.nodes[node_id].status.commit == 3
    assert leader.status.commit == 1  # S1 never applied what is now lost


def test_figure_8_entry_of_the_current_term_commits_earlier_ones() -> None:
    """§5.4.2, Figure 8 (e): once the leader's entry of its own term is on a majority, it
    commits, and every entry before it indirectly; S5 can no longer be elected."""
    net = _figure_8_c()
    net.tick("1", 1)  # a heartbeat round resumes replication to S2, S3 and S4
    net.stabilize()
    assert net.nodes["1"].status.commit == 3
    net.down.add("1")
    net.restart("5")
    for _ in range(3):
        net.nodes["5"].campaign()
        net.stabilize()
        assert net.nodes["5"].role is not StateRole.LEADER
    for node_id in ("2", "3", "4"):
        assert _log_terms(net, node_id) == [1, 2, 4], node_id
