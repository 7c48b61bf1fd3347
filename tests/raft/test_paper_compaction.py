"""Log compaction: Raft paper §7 (snapshots and InstallSnapshot)."""

from __future__ import annotations

from network import cluster, elect, peek

from agentflow.raft import MessageType, ProgressState, StateRole

MT = MessageType


def test_leader_sends_snapshot_when_follower_needs_compacted_entries() -> None:
    """§7: "the leader must occasionally send snapshots to followers that lag behind", when
    "the leader has already discarded the next log entry that it needs to send"."""
    net = cluster(3)
    elect(net, "1")
    net.isolate("3")
    for i in range(10):
        net.nodes["1"].propose(f"v{i}".encode())
    net.stabilize()
    net.compact("1", 8)
    net.heal()
    net.tick("1", 1)
    net.stabilize()
    net.tick("1", 1)
    net.stabilize()
    assert net.storages["3"].snapshot().metadata.index == 8
    assert net.values("3") == [f"v{i}".encode() for i in range(10)]
    assert net.nodes["1"].status.progress["3"].state is ProgressState.REPLICATE


def test_follower_discards_log_covered_by_snapshot() -> None:
    """§7: "the follower discards its entire log; it is all superseded by the snapshot"."""
    net = cluster(3, check_quorum=False)
    elect(net, "1")
    net.isolate("1")
    for i in range(3):
        net.nodes["1"].propose(f"lost{i}".encode())  # an uncommitted tail on node 1 only
    net.stabilize()
    elect(net, "2")
    for i in range(5):
        net.nodes["2"].propose(f"v{i}".encode())
    net.stabilize()
    net.compact("2", 6)
    net.heal()
    for _ in range(3):
        net.tick("2", 1)
        net.stabilize()
    assert net.nodes["1"].role is StateRole.FOLLOWER
    assert net.storages["1"].snapshot().metadata.index == 6
    assert net.values("1") == net.values("2") == [f"v{i}".encode() for i in range(5)]


def test_failed_snapshot_goes_back_to_probe() -> None:
    """§7 with flow control: a snapshot that could not be delivered is reported; the leader
    probes again and retries."""
    net = cluster(3)
    elect(net, "1")
    net.isolate("3")
    for i in range(4):
        net.nodes["1"].propose(f"v{i}".encode())
    net.stabilize()
    net.compact("1", 5)
    net.heal()
    net.drop_filter = lambda m: m.type is MT.SNAPSHOT
    net.tick("1", 1)
    net.stabilize()
    assert net.nodes["1"].status.progress["3"].state is ProgressState.PROBE
    net.drop_filter = None
    for _ in range(2):
        net.tick("1", 1)
        net.stabilize()
    assert net.values("3") == net.values("1")


def test_storage_compaction_keeps_term_of_last_compacted_entry() -> None:
    """§7: the snapshot keeps "the last included index and term" for the consistency check."""
    net = cluster(1)
    elect(net, "1")
    net.nodes["1"].propose(b"x")
    net.stabilize()
    net.compact("1", 2)
    storage = net.storages["1"]
    assert storage.first_index() == 3 and storage.term(2) == 1
    net.nodes["1"].propose(b"y")
    assert [m for m in peek(net)] == []
    assert net.values("1") == [b"x", b"y"]
