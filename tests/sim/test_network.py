"""The simulated network's partitions and per-message fate."""

from __future__ import annotations

import random

from agentflow.testing.sim import LinkFaults, SimNetwork

NODES = ["1", "2", "3", "4", "5"]


def test_symmetric_partition_cuts_both_ways_between_groups_only() -> None:
    net = SimNetwork(random.Random(0))
    net.partition([["1", "2"], ["3", "4", "5"]])
    assert net.connected("1", "2") and net.connected("3", "5")
    assert not net.connected("1", "3") and not net.connected("4", "2")
    net.heal()
    assert all(net.connected(a, b) for a in NODES for b in NODES)


def test_one_way_partition_is_asymmetric() -> None:
    net = SimNetwork(random.Random(0))
    net.isolate_one_way("1", ["2", "3"], inbound=True)
    assert net.connected("1", "2")
    assert not net.connected("2", "1")
    net.isolate_one_way("1", ["2", "3"], inbound=False)
    assert not net.connected("1", "2")
    assert net.connected("2", "1")


def test_bridge_node_talks_to_both_halves_that_cannot_talk_to_each_other() -> None:
    net = SimNetwork(random.Random(0))
    net.bridge(["1", "2"], "3", ["4", "5"])
    assert net.connected("3", "1") and net.connected("4", "3") and net.connected("1", "2")
    assert not net.connected("1", "4") and not net.connected("5", "2")


def test_cut_link_delivers_nothing() -> None:
    net = SimNetwork(random.Random(0))
    net.partition([["1"], ["2"]])
    assert net.delays_ms("1", "2") == []


def test_drops_duplicates_and_delays_follow_the_rates() -> None:
    net = SimNetwork(random.Random(7))
    net.faults = LinkFaults(drop_rate=0.25, duplicate_rate=0.2, delay_ms_min=2, delay_ms_max=9)
    copies = [len(net.delays_ms("1", "2")) for _ in range(4000)]
    assert 0.2 < copies.count(0) / 4000 < 0.3
    assert 0.1 < copies.count(2) / 4000 < 0.2
    delays = [d for _ in range(500) for d in net.delays_ms("1", "2")]
    assert min(delays) >= 2 and max(delays) <= 27


def test_fate_is_a_function_of_the_seed() -> None:
    def fates(seed: int) -> list[list[int]]:
        net = SimNetwork(random.Random(seed))
        net.faults = LinkFaults(drop_rate=0.1, duplicate_rate=0.1, delay_ms_max=30)
        return [net.delays_ms("1", "2") for _ in range(200)]

    assert fates(5) == fates(5)
    assert fates(5) != fates(6)
