"""Log replication: Raft paper §5.3, with etcd-style flow control (progress, in-flight limits)."""

from __future__ import annotations

from network import cluster, elect, msg, peek, sent

from agentflow.raft import (
    Entry,
    MessageType,
    ProgressState,
    ProposalDroppedError,
    StateRole,
)

MT = MessageType


def test_leader_appends_and_replicates_proposals() -> None:
    """§5.3: "The leader appends the command to its log as a new entry, then issues
    AppendEntries RPCs in parallel to each of the other servers"."""
    net = cluster(3)
    elect(net, "1")
    index = net.nodes["1"].propose(b"x")
    assert index == 2
    appends = [m for m in sent(net) if m.type is MT.APPEND]
    assert sorted(m.to for m in appends) == ["2", "3"]
    assert all([e.data for e in m.entries] == [b"x"] for m in appends)


def test_entry_committed_once_on_majority_and_applied_everywhere() -> None:
    """§5.3: "A log entry is committed once the leader that created the entry has replicated
    it on a majority of the servers"."""
    net = cluster(3)
    elect(net, "1")
    net.cut("1", "3")
    net.nodes["1"].propose(b"a")
    net.stabilize()
    assert net.nodes["1"].status.commit == 2
    assert net.values("1") == [b"a"] and net.values("2") == [b"a"]
    assert net.values("3") == []
    net.heal()
    net.tick("1", 1)
    net.stabilize()
    assert net.values("3") == [b"a"]


def test_follower_rejects_append_with_mismatched_previous_entry() -> None:
    """§5.3: "If the follower does not find an entry in its log with the same index and term,
    then it refuses the new entries"."""
    net = cluster(3)
    node = net.nodes["2"]
    node.step(msg(MT.APPEND, "1", "2", 1, index=5, log_term=1))
    (reply,) = sent(net)
    assert reply.reject and reply.index == 5 and reply.reject_hint == 0


def test_follower_truncates_conflicting_uncommitted_suffix() -> None:
    """§5.3: "If an existing entry conflicts with a new one (same index but different terms),
    delete the existing entry and all that follow it"."""
    net = cluster(3, check_quorum=False)
    node = net.nodes["2"]
    old = tuple(Entry(term=1, index=i) for i in (1, 2, 3))
    node.step(msg(MT.APPEND, "1", "2", 1, index=0, log_term=0, entries=old))
    net.process_all()
    new = (Entry(term=2, index=2, data=b"n"),)
    node.step(msg(MT.APPEND, "3", "2", 2, index=1, log_term=1, entries=new))
    net.process_all()
    storage = net.storages["2"]
    assert storage.last_index() == 2
    assert storage.term(2) == 2


def test_duplicate_or_reordered_append_never_truncates() -> None:
    """§5.3 / Figure 2: only a conflicting entry is deleted; an old AppendEntries that arrives
    late leaves the newer entries in place."""
    net = cluster(3, check_quorum=False)
    node = net.nodes["2"]
    first = msg(MT.APPEND, "1", "2", 1, index=0, log_term=0, entries=(Entry(term=1, index=1),))
    second = msg(
        MT.APPEND, "1", "2", 1, index=1, log_term=1, commit=2, entries=(Entry(term=1, index=2),)
    )
    node.step(first)
    node.step(second)
    node.step(first)  # duplicate, reordered
    net.process_all()
    assert net.storages["2"].last_index() == 2
    assert node.status.commit == 2


def test_fast_backtracking_skips_a_term_per_round_trip() -> None:
    """§5.3 (end): the follower "can include the term of the conflicting entry and the first
    index it stores for that term", so one rejection can skip a whole term."""
    net = cluster(3, check_quorum=False)
    node = net.nodes["2"]
    ents = tuple(Entry(term=1, index=i) for i in range(1, 4)) + tuple(
        Entry(term=2, index=i) for i in range(4, 9)
    )
    node.step(msg(MT.APPEND, "1", "2", 2, index=0, log_term=0, entries=ents))
    sent(net)
    node.step(msg(MT.APPEND, "3", "2", 3, index=10, log_term=3))
    (reply,) = sent(net)
    # Not a single entry of term <= 3 after index 8 exists; hint the last entry, term 2.
    assert reply.reject and (reply.reject_hint, reply.log_term) == (8, 2)
    # A leader whose entry 6 has term 1 probes there: every term-2 entry above 3 is skipped.
    node.step(msg(MT.APPEND, "3", "2", 3, index=6, log_term=1))
    (reply,) = sent(net)
    assert reply.reject and (reply.reject_hint, reply.log_term) == (3, 1)


def test_leader_catches_up_divergent_follower() -> None:
    """§5.3: "the leader must find the latest log entry where the two logs agree, delete any
    entries in the follower's log after that point, and send the follower all of the leader's
    entries after that point"."""
    net = cluster(3, check_quorum=False, pre_vote=False)
    elect(net, "1")
    net.isolate("1")
    for i in range(5):
        net.nodes["1"].propose(f"lost{i}".encode())
    net.stabilize()
    elect(net, "2")
    for i in range(3):
        net.nodes["2"].propose(f"kept{i}".encode())
    net.stabilize()
    net.heal()
    net.tick("2", 1)
    net.stabilize()
    assert net.nodes["1"].role is StateRole.FOLLOWER
    expected = [b"kept0", b"kept1", b"kept2"]
    assert net.values("1") == net.values("2") == net.values("3") == expected


def test_probe_then_replicate_progress() -> None:
    """§5.3: the leader keeps nextIndex per follower; it probes until a match, then streams."""
    net = cluster(3)
    elect(net, "1")
    progress = net.nodes["1"].status.progress
    assert progress["2"].state is ProgressState.REPLICATE
    assert (progress["2"].match, progress["2"].next) == (1, 2)


def test_inflight_window_bounds_unacknowledged_appends() -> None:
    """Flow control: at most max_inflight_msgs appends are outstanding to a follower; acks
    free the window."""
    net = cluster(3, max_inflight_msgs=2)
    elect(net, "1")
    leader = net.nodes["1"]
    for i in range(5):
        leader.propose(f"p{i}".encode())
        net.process_all()
    to2 = [m for m in peek(net) if m.type is MT.APPEND and m.to == "2"]
    assert len(to2) == 2
    assert leader.status.progress["2"].inflight == 2
    net.stabilize()
    assert net.values("2") == [f"p{i}".encode() for i in range(5)]
    assert leader.status.progress["2"].inflight == 0


def test_many_entries_batched_per_message_within_size_limit() -> None:
    """Batching: one AppendEntries carries many entries, up to max_size_per_msg bytes."""
    net = cluster(3, max_size_per_msg=200)
    elect(net, "1")
    for i in range(20):
        net.nodes["1"].propose(b"%02d" % i)
    appends = [m for m in peek(net) if m.type is MT.APPEND and m.to == "2"]
    assert len(appends) == 1
    assert 1 < len(appends[0].entries) < 20
    net.stabilize()
    assert len(net.values("3")) == 20


def test_heartbeat_commit_is_capped_by_follower_match() -> None:
    """§5.3: a follower learns the commit index from the leader, but never past what it is
    known to hold (min(match, commit))."""
    net = cluster(3)
    elect(net, "1")
    net.cut("1", "3")
    net.nodes["1"].propose(b"a")
    net.stabilize()
    net.heal()
    net.tick("1", 1)
    beats = [m for m in sent(net) if m.type is MT.HEARTBEAT]
    assert {m.to: m.commit for m in beats} == {"2": 2, "3": 1}


def test_follower_and_candidate_refuse_proposals() -> None:
    """§8: "Clients of Raft send all of their requests to the leader"; others refuse."""
    net = cluster(3)
    try:
        net.nodes["1"].propose(b"x")
    except ProposalDroppedError:
        pass
    else:
        raise AssertionError("a follower accepted a proposal")


def test_lost_appends_are_retried_after_heartbeat() -> None:
    """§5.3: "the leader retries AppendEntries RPCs indefinitely" when a follower misses them."""
    net = cluster(3)
    elect(net, "1")
    net.drop_filter = lambda m: m.type is MT.APPEND and m.to == "3"
    for i in range(3):
        net.nodes["1"].propose(f"x{i}".encode())
        net.stabilize()
    net.drop_filter = None
    for _ in range(3):
        net.tick("1", 1)
        net.stabilize()
    assert net.values("3") == [b"x0", b"x1", b"x2"]
