"""The simulated disk under the driver: unsynced writes lost, stalled fsync, torn last write."""

from __future__ import annotations

import random

import pytest

from agentflow.cluster.driver import Write
from agentflow.raft import (
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Snapshot,
    SnapshotMetadata,
    StateRole,
    bootstrap,
)
from agentflow.testing.sim import SimConfig, run_seed
from agentflow.testing.sim._disk import (
    CorruptDiskError,
    DiskFaults,
    SimDisk,
    decode_write,
    encode_write,
    recover,
)
from agentflow.testing.sim._invariants import SafetyChecker
from agentflow.testing.sim._shell import SimNode


def _write(index: int, term: int = 2) -> Write:
    return Write(
        snapshot=None,
        entries=(Entry(term=term, index=index, data=b"entry %d" % index),),
        hard_state=HardState(term=term, vote="1", commit=index - 1),
    )


def test_a_write_round_trips_through_its_record() -> None:
    snapshot = Snapshot(
        metadata=SnapshotMetadata(index=7, term=3, conf_state=ConfState(voters=frozenset("12"))),
        data=b"image",
    )
    write = Write(
        snapshot=snapshot,
        entries=(
            Entry(term=3, index=8, type=EntryType.CONF_CHANGE, data=b"cc"),
            Entry(term=3, index=9, data=b""),
        ),
        hard_state=HardState(term=3, vote=None, commit=9),
    )
    record = encode_write(write)
    assert decode_write(record[8:]) == write
    assert recover(record) == ([write], 0)


def test_a_torn_last_write_is_truncated_wherever_it_was_cut() -> None:
    first, second = encode_write(_write(1)), encode_write(_write(2))
    for cut in range(1, len(second)):
        writes, torn = recover(first + second[:cut])
        assert writes == [_write(1)], cut
        assert torn == cut


def test_a_bad_record_with_good_ones_after_it_is_refused_not_truncated() -> None:
    first, second, third = (encode_write(_write(i)) for i in (1, 2, 3))
    damaged = bytearray(second)
    damaged[-1] ^= 0xFF  # not torn: flipped, and a good record follows
    with pytest.raises(CorruptDiskError):
        recover(first + bytes(damaged) + third)
    assert recover(first + bytes(damaged)) == ([_write(1)], len(second))


def test_unsynced_writes_are_lost_in_a_crash_and_synced_ones_kept() -> None:
    disk = SimDisk(faults=DiskFaults())
    disk.write(_write(1))
    assert disk.sync() == [_write(1)]
    disk.write(_write(2))
    disk.write(_write(3))
    assert disk.crash(random.Random(1)) == []
    assert disk.stats == {"unsynced_writes_lost": 2}
    assert disk.sync() == []


def test_a_crash_may_keep_a_prefix_of_the_unsynced_writes_and_tear_the_next() -> None:
    kept_counts, torn = set(), 0
    for seed in range(200):
        disk = SimDisk(faults=DiskFaults(keep_unsynced=1.0, torn=True))
        for i in range(1, 4):
            disk.write(_write(i))
        kept = disk.crash(random.Random(seed))
        assert kept == [_write(i) for i in range(1, len(kept) + 1)]  # a prefix, in order
        kept_counts.add(len(kept))
        torn += disk.stats.get("torn_writes_truncated", 0)
    assert kept_counts == {0, 1, 2, 3}
    assert torn > 0


def _single_node(faults: DiskFaults) -> tuple[SimNode, MemoryStorage]:
    storage = MemoryStorage()
    bootstrap(storage, ["1"])
    checker = SafetyChecker()
    checker.register("1", storage)
    node = SimNode(
        "1",
        storage,
        rng=random.Random(7),
        checker=checker,
        config=Config(id="1", election_tick=10, heartbeat_tick=2),
    )
    node.disk.faults = faults
    node.start()
    return node, storage


def _elect(node: SimNode) -> None:
    for _ in range(40):
        if node.role is StateRole.LEADER and node.pending is None:
            return
        if node.pending is not None:
            node.finish_write()
        else:
            node.tick()
            node.process()
    raise AssertionError("the single node did not lead")


def test_a_stalled_fsync_holds_the_ready_and_a_crash_loses_its_write() -> None:
    node, storage = _single_node(DiskFaults())
    _elect(node)
    node.disk.faults = DiskFaults(stall_rate=1.0, stall_ms=400)
    assert node.raft is not None
    index = node.raft.propose(b"P|1|1|k|v")
    node.process()
    assert node.pending is not None and node.write_due and node.fsync_ms == 400
    node.tick()
    node.process()  # stalled: the driver feeds nothing until the write is durable
    assert node.pending is not None and storage.last_index() < index
    node.crash()
    assert storage.last_index() < index  # never synced: gone
    node.start()
    assert node.raft is not None and node.raft.status.last_index < index


def test_a_synced_write_survives_the_crash_and_is_replayed() -> None:
    node, storage = _single_node(DiskFaults())
    _elect(node)
    node.disk.faults = DiskFaults(fsync_ms_max=5)
    assert node.raft is not None
    index = node.raft.propose(b"P|1|1|k|v")
    _run_until_applied(node, index)
    assert storage.last_index() >= index
    node.crash()
    node.start()
    # Its commit index rode along with no later write (raft.db's rule, the simulator's too):
    # a lone voter learns it again by winning a new term and committing in it.
    _elect(node)
    _run_until_applied(node, index)
    assert node.kv.get("k") == "v"


def _run_until_applied(node: SimNode, index: int) -> None:
    for _ in range(200):
        if node.applied >= index:
            return
        node.process() if node.pending is None else node.finish_write()
    raise AssertionError(f"index {index} not applied: applied {node.applied}")


def test_seeds_with_disk_faults_pass_and_exercise_the_disk() -> None:
    seen: dict[str, int] = {}
    for seed in range(40):
        result = run_seed(SimConfig(seed=seed, steps=800))
        assert result.ok, result.report()
        for name in ("unsynced_writes_lost", "slow_leader_write"):
            seen[name] = seen.get(name, 0) + result.stats.get(name, 0)
    assert all(seen.values()), seen
