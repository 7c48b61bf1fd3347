"""Membership changes: Raft paper §6 (one server at a time, as in the thesis §4.1)."""

from __future__ import annotations

from collections import deque

import pytest
from network import Network, cluster, elect, sent

from agentflow.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    EntryType,
    HardState,
    MemoryStorage,
    MessageType,
    ProposalDroppedError,
    StateRole,
    bootstrap,
)

MT = MessageType


def add(kind: ConfChangeType, node_id: str) -> ConfChange:
    return ConfChange(type=kind, node_id=node_id)


def test_learner_receives_log_but_does_not_vote_or_count() -> None:
    """Thesis §4.2.1: new servers join "as non-voting members" that receive the log; they are
    not counted for majorities."""
    net = Network()
    for node_id in ("1", "2"):
        net.add_node(node_id, voters=["1", "2"], learners=["3"])
    net.add_node("3", voters=["1", "2"], learners=["3"])
    elect(net, "1")
    net.isolate("2")
    net.nodes["1"].propose(b"x")
    net.stabilize()
    assert net.nodes["1"].status.commit == 1  # the learner's ack is not a majority
    assert net.nodes["3"].status.last_index == 2
    net.tick("3", 100)
    assert net.nodes["3"].role is StateRole.FOLLOWER  # a learner never campaigns


def test_add_learner_then_promote_after_catch_up() -> None:
    """Thesis §4.2.1: a new server catches up as a learner before it becomes a voter."""
    net = cluster(3, conf_in_log=True)
    net.add_node("4")  # joins from an empty storage: the log tells it the membership
    elect(net, "1")
    for i in range(3):
        net.nodes["1"].propose(f"v{i}".encode())
    net.nodes["1"].propose_conf_change(add(ConfChangeType.ADD_LEARNER, "4"))
    net.stabilize()
    net.tick("1", 1)
    net.stabilize()
    assert net.values("4") == [b"v0", b"v1", b"v2"]
    net.nodes["1"].propose_conf_change(add(ConfChangeType.ADD_VOTER, "4"))
    net.stabilize()
    assert net.nodes["1"].status.conf_state.voters == {"1", "2", "3", "4"}
    assert net.nodes["4"].status.conf_state.voters == {"1", "2", "3", "4"}


def test_learner_far_behind_is_not_promoted() -> None:
    """Thesis §4.2.1: promoting a server that has not caught up would hurt availability."""
    net = cluster(3)
    net.add_node("4")
    elect(net, "1")
    net.nodes["1"].propose_conf_change(add(ConfChangeType.ADD_LEARNER, "4"))
    net.isolate("4")
    net.stabilize()
    with pytest.raises(ProposalDroppedError):
        net.nodes["1"].propose_conf_change(add(ConfChangeType.ADD_VOTER, "4"))


def test_only_one_uncommitted_conf_change() -> None:
    """Thesis §4.1: "a leader must not begin a new change until the previous one is
    committed" (here: applied)."""
    net = cluster(3)
    elect(net, "1")
    net.nodes["1"].propose_conf_change(add(ConfChangeType.ADD_LEARNER, "4"))
    with pytest.raises(ProposalDroppedError):
        net.nodes["1"].propose_conf_change(add(ConfChangeType.ADD_LEARNER, "5"))
    net.stabilize()
    net.nodes["1"].propose_conf_change(add(ConfChangeType.ADD_LEARNER, "5"))


def test_conf_change_takes_effect_only_when_applied() -> None:
    """etcd's rule (stricter than §6's "as soon as it is added to the log"): the membership
    changes when the shell applies the committed entry."""
    net = cluster(3)
    elect(net, "1")
    net.nodes["1"].propose_conf_change(add(ConfChangeType.REMOVE_NODE, "3"))
    assert net.nodes["1"].status.conf_state.voters == {"1", "2", "3"}
    net.stabilize()
    assert net.nodes["1"].status.conf_state.voters == {"1", "2"}


def test_removed_leader_steps_down_after_commit() -> None:
    """§6: a leader not in the new configuration "steps down ... once the new
    configuration is committed"."""
    net = cluster(3)
    elect(net, "1")
    net.nodes["1"].propose_conf_change(add(ConfChangeType.REMOVE_NODE, "1"))
    net.stabilize()
    assert net.nodes["1"].role is StateRole.FOLLOWER
    for node_id in ("2", "3"):
        assert net.nodes[node_id].status.conf_state.voters == {"2", "3"}
    for _ in range(30):
        for node_id in ("1", "2", "3"):
            net.tick(node_id)
        net.stabilize()
    leader = net.leader()
    assert leader in {"2", "3"}
    net.nodes[leader].propose(b"after")
    net.stabilize()
    assert net.values("2")[-1:] == net.values("3")[-1:] == [b"after"]
    assert net.nodes["1"].role is StateRole.FOLLOWER


def test_removed_node_does_not_campaign() -> None:
    """§6: "removed servers ... can disrupt the cluster"; here they never time out."""
    net = cluster(3)
    elect(net, "1")
    net.nodes["1"].propose_conf_change(add(ConfChangeType.REMOVE_NODE, "3"))
    net.stabilize()
    net.tick("3", 100)
    assert net.nodes["3"].role is StateRole.FOLLOWER
    assert [m for m in sent(net) if m.from_ == "3"] == []


def test_removing_voter_shrinks_quorum() -> None:
    """§6: after the change commits, majorities are counted in the new configuration."""
    net = cluster(3)
    elect(net, "1")
    net.nodes["1"].propose_conf_change(add(ConfChangeType.REMOVE_NODE, "3"))
    net.stabilize()
    net.isolate("3")
    net.nodes["1"].propose(b"two")
    net.stabilize()
    assert net.values("1") == [b"two"]


def test_bootstrap_writes_the_initial_voters_into_the_log() -> None:
    """As etcd's Bootstrap: the founding voters are committed conf-change entries 1..n of term
    1, the same bytes on every founding member, so the log alone holds the membership."""
    storage = MemoryStorage()
    bootstrap(storage, ["3", "1", "2"])
    entries = storage.entries(1, storage.last_index() + 1)
    assert [(e.index, e.term, e.type) for e in entries] == [
        (i, 1, EntryType.CONF_CHANGE) for i in (1, 2, 3)
    ]
    assert [ConfChange.decode(e.data) for e in entries] == [
        add(ConfChangeType.ADD_VOTER, node_id) for node_id in ("1", "2", "3")
    ]
    other = MemoryStorage()
    bootstrap(other, ["2", "3", "1"])
    assert other.entries(1, 4) == entries
    assert storage.initial_state() == (
        HardState(term=1, commit=3),
        ConfState(voters=frozenset({"1", "2", "3"})),
    )


def test_bootstrap_refuses_a_storage_that_has_state() -> None:
    storage = MemoryStorage()
    bootstrap(storage, ["1"])
    with pytest.raises(ValueError, match="empty storage"):
        bootstrap(storage, ["1"])
    with pytest.raises(ValueError, match="empty storage"):
        bootstrap(MemoryStorage(conf_state=ConfState(voters=frozenset({"1"}))), ["1"])
    with pytest.raises(ValueError, match="at least one voter"):
        bootstrap(MemoryStorage(), [])


def test_joiner_with_empty_storage_never_campaigns_before_it_learns_the_membership() -> None:
    """A node that joins knows no configuration, so it is no voter and must not campaign
    (alone, it would be a majority of the empty configuration)."""
    net = cluster(3, conf_in_log=True)
    joiner = net.add_node("4")
    net.isolate("4")
    net.tick("4", 100)
    joiner.campaign()
    assert joiner.role is StateRole.FOLLOWER and joiner.term == 0
    assert [m for m in sent(net) if m.from_ == "4"] == []
    assert joiner.status.conf_state.voters == frozenset()


def test_joiner_with_empty_storage_replays_the_leaders_membership() -> None:
    """notes/raft_bugs.md bug 1: a voter is removed, a new node joins with an empty storage
    and is added as a voter. Catching up by AppendEntries from index 1, it replays the
    bootstrap entries first, so it ends with the leader's configuration, not with {itself}."""
    net = cluster(3, conf_in_log=True)
    elect(net, "1")
    net.nodes["1"].propose_conf_change(add(ConfChangeType.REMOVE_NODE, "3"))
    net.stabilize()
    net.isolate("3")
    joiner = net.add_node("4")
    net.nodes["1"].propose_conf_change(add(ConfChangeType.ADD_VOTER, "4"))
    net.stabilize()
    expected = frozenset({"1", "2", "4"})
    for node_id in ("1", "2", "4"):
        assert net.nodes[node_id].status.conf_state.voters == expected, node_id
    assert joiner.status.commit == net.nodes["1"].status.commit
    # The new voter now counts: with 1 cut off, 2 and 4 elect a leader among themselves.
    net.isolate("1")
    for _ in range(30):
        for node_id in ("2", "4"):
            net.tick(node_id)
        net.stabilize()
    leaders = {i for i in ("2", "4") if net.nodes[i].role is StateRole.LEADER}
    assert len(leaders) == 1


def _run_without(net: Network, cut: str, rounds: int = 10) -> None:
    """Process and deliver everything, but messages to or from ``cut`` are lost."""
    for _ in range(rounds):
        for node_id in net.nodes:
            if node_id != cut:
                net.process_ready(node_id)
        batch, net.queue = list(net.queue), deque()
        for m in batch:
            if cut not in (m.to, m.from_):
                net.deliver(m)


def test_removed_leader_hands_over_once_the_remaining_voters_hold_its_log() -> None:
    """Configurations take effect when applied: a removed leader that stepped down while a
    remaining voter lacked part of its log would leave that voter unable to win the vote of
    a member it still counts (simulator, kv seed 126). It refuses proposals and waits."""
    net = cluster(3)
    elect(net, "1")
    leader = net.nodes["1"]
    leader.propose_conf_change(add(ConfChangeType.REMOVE_NODE, "1"))
    _run_without(net, cut="3")  # 1 and 2 commit and apply the removal; 3 hears nothing
    assert leader.status.conf_state.voters == {"2", "3"}
    assert leader.role is StateRole.LEADER
    with pytest.raises(ProposalDroppedError):
        leader.propose(b"x")
    net.tick("1", times=2)  # a heartbeat reaches 3 now, which catches up:
    net.stabilize()  # the removed leader steps down
    assert leader.role is StateRole.FOLLOWER
    for _ in range(30):
        for node_id in ("1", "2", "3"):
            net.tick(node_id)
        net.stabilize()
    assert net.leader() in {"2", "3"}


def test_removed_leader_steps_down_after_an_election_timeout_anyway() -> None:
    net = cluster(3)
    elect(net, "1")
    leader = net.nodes["1"]
    leader.propose_conf_change(add(ConfChangeType.REMOVE_NODE, "1"))
    _run_without(net, cut="3")
    assert leader.role is StateRole.LEADER
    net.tick("1", times=20)  # an election timeout is 10 ticks here
    assert leader.role is StateRole.FOLLOWER
