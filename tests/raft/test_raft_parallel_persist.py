"""The leader writes its own log in parallel with replicating it: Raft thesis §10.2.1.

"The leader can write to its disk in parallel with replicating to the followers and the
followers writing to their disks... the leader should not count itself toward a majority
until its own entry is durable" (paraphrased). The leader's appends come out of a Ready as
``early_messages``, to be sent before or while the Ready is persisted; the leader's match index
for itself moves only when ``advance`` reports its write durable. A Ready here is taken with
``begin_ready`` (early messages sent) and finished with ``finish_ready`` (persist, the other
messages, apply, advance), so a test can run the followers while the leader's write is slow.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from network import Network, cluster, elect

from agentflow.raft import ConfChange, ConfChangeType, Message, MessageType

MT = MessageType


def route(net: Network, to: Iterable[str]) -> None:
    """Deliver the queued messages addressed to ``to``; the others are lost."""
    targets = set(to)
    batch, net.queue = list(net.queue), deque()
    for m in batch:
        if m.to in targets:
            net.deliver(m)


def appends(messages: Iterable[Message]) -> dict[str, Message]:
    return {m.to: m for m in messages if m.type is MT.APPEND}


def applied_indexes(net: Network) -> set[int]:
    return {index for items in net.applied.values() for index, _ in items}


def test_leader_sends_its_appends_before_its_own_write() -> None:
    net = cluster(3)
    elect(net, "1")
    leader = net.nodes["1"]
    index = leader.propose(b"x")
    rd = net.begin_ready("1")
    assert [e.index for e in rd.entries] == [index]
    sent = appends(rd.early_messages)
    assert sorted(sent) == ["2", "3"]
    assert all(m.entries[-1].index == index for m in sent.values())
    assert rd.messages == ()
    # Not counted until its own write is durable, though it is in the leader's log.
    assert leader.status.progress["1"].match == index - 1
    assert leader.status.last_index == index


def test_slow_leader_disk_commits_once_a_follower_acked_and_its_own_write_is_stable() -> None:
    net = cluster(3)
    elect(net, "1")
    leader = net.nodes["1"]
    index = leader.propose(b"x")
    rd = net.begin_ready("1")
    route(net, to={"2"})  # 3 is slow: its copy never arrives
    net.process_ready("2")  # 2 writes, then acknowledges
    route(net, to={"1"})  # the ack reaches the leader while its own write still runs
    assert leader.status.progress["2"].match == index
    assert leader.status.commit == index - 1  # 2 durable + 1 in memory: not a majority
    net.finish_ready("1", rd)  # the leader's write is durable: 1 + 2 of 3
    assert leader.status.commit == index
    net.process_ready("1")
    assert net.values("1") == [b"x"]


def test_leader_crash_before_its_write_never_commits_what_only_it_and_one_follower_saw() -> None:
    net = cluster(3)
    elect(net, "1")
    leader = net.nodes["1"]
    index = leader.propose(b"x")
    net.begin_ready("1")  # never finished: the leader dies before its fsync returns
    route(net, to={"2"})
    net.process_ready("2")
    route(net, to={"1"})
    assert leader.status.commit == index - 1
    net.restart("1")
    assert net.storages["1"].last_index() == index - 1  # its copy was only in memory
    assert net.nodes["2"].status.commit < index
    assert index not in applied_indexes(net)  # so no client was ever told it is done
    # A node without the entry may lead next and replace it on 2: it was never committed.
    net.isolate("2")
    elect(net, "3")
    net.heal()
    net.nodes["3"].propose(b"y")
    net.tick("3", net.configs["3"].heartbeat_tick)  # 2 missed the appends: probe it again
    net.stabilize()
    assert [net.values(n) for n in ("1", "2", "3")] == [[b"y"]] * 3


def test_two_durable_followers_commit_before_the_leaders_write_but_apply_waits_for_it() -> None:
    """Three voters: the two followers are a majority holding the entry durably, so it is
    committed while the leader's own write is still running. The leader applies it (and
    answers its client) only from a later Ready, after its own write."""
    net = cluster(3)
    elect(net, "1")
    leader = net.nodes["1"]
    index = leader.propose(b"x")
    rd = net.begin_ready("1")
    route(net, to={"2", "3"})
    net.process_ready("2")
    net.process_ready("3")
    route(net, to={"1"})
    assert leader.status.commit == index
    assert all(e.index != index for e in rd.committed_entries)
    assert net.values("1") == []
    net.finish_ready("1", rd)
    assert net.storages["1"].last_index() == index
    net.process_ready("1")
    assert net.values("1") == [b"x"]


def single_voter_with_learner() -> Network:
    net = Network()
    for node_id in ("1", "2"):
        net.add_node(node_id, voters=["1"], learners=["2"])
    elect(net, "1")
    return net


def test_single_voter_does_not_tell_a_learner_to_apply_what_it_has_not_written() -> None:
    """A voter alone is a majority: before its write is durable it must not count itself, or
    the append it sends early would carry a commit index its crash could undo."""
    net = single_voter_with_learner()
    leader = net.nodes["1"]
    index = leader.propose(b"x")
    rd = net.begin_ready("1")
    assert leader.status.commit == index - 1
    assert appends(rd.early_messages)["2"].commit == index - 1
    route(net, to={"2"})
    net.process_ready("2")
    net.restart("1")  # crash before the write: the learner holds x, uncommitted
    assert net.values("2") == []
    assert net.nodes["2"].status.commit == index - 1


def test_single_voter_commits_at_once_when_its_write_is_durable() -> None:
    net = single_voter_with_learner()
    leader = net.nodes["1"]
    index = leader.propose(b"x")
    rd = net.begin_ready("1")
    net.finish_ready("1", rd)
    assert leader.status.commit == index
    net.stabilize()
    assert net.values("1") == net.values("2") == [b"x"]


def test_messages_of_a_term_not_yet_durable_wait_for_the_write() -> None:
    """A voter alone wins its election inside one Ready: its appends carry a term that Ready
    makes durable, so they wait. Sent early, a crash could let it win that term again and
    send different entries under it."""
    net = Network()
    for node_id in ("1", "2"):
        net.add_node(node_id, voters=["1"], learners=["2"])
    net.nodes["1"].campaign()
    rd = net.begin_ready("1")
    assert rd.hard_state is not None and rd.hard_state.term == 1
    assert rd.early_messages == ()
    assert sorted(appends(rd.messages)) == ["2"]
    net.finish_ready("1", rd)
    net.stabilize()
    index = net.nodes["1"].propose(b"x")
    rd = net.begin_ready("1")  # now the term is durable: the append goes early
    assert appends(rd.early_messages)["2"].entries[-1].index == index


def test_a_committed_membership_change_is_told_only_once_the_commit_index_is_durable() -> None:
    """The leader may not tell a member that its removal committed before the leader's own
    commit index says so on disk: the member would stop campaigning, and a leader that lost
    that commit index in a crash would come back under the old configuration, needing the
    vote of a member that has left (kv seed 2009168: two voters shrunk to one)."""
    net = cluster(3)
    elect(net, "1")
    leader = net.nodes["1"]
    leader.propose_conf_change(ConfChange(type=ConfChangeType.REMOVE_NODE, node_id="3"))
    index = leader.status.last_index
    net.process_ready("1")
    route(net, to={"2", "3"})
    net.process_ready("2")
    net.process_ready("3")
    route(net, to={"1"})  # the acks commit the removal, in the leader's memory only
    assert leader.status.commit == index
    leader.propose(b"x")  # appends that would carry the new commit index
    rd = net.begin_ready("1")
    assert rd.hard_state is not None and rd.hard_state.commit == index
    assert all(m.commit < index for m in rd.early_messages)
    told = {m.to for m in rd.messages if m.commit >= index}
    assert told == {"2", "3"}  # sent once the write holding the commit index is done
    net.finish_ready("1", rd)
    index = leader.propose(b"y")
    rd = net.begin_ready("1")  # the change's commit is durable: appends go early again
    assert appends(rd.early_messages)["2"].entries[-1].index == index
