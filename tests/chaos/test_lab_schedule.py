"""The nemesis' schedule: a pure function of its seed, within the rules that keep a cluster
able to recover."""

from __future__ import annotations

from agentflow.testing.chaos.nemesis import (
    KINDS,
    MASTER_IMPAIRING,
    SPLITS,
    Fault,
    schedule,
)

SEEDS = range(100)
DURATION_S = 60.0


def _overlapping(faults: list[Fault]) -> list[list[Fault]]:
    """For each fault, the faults in force at its start (itself included)."""
    return [
        [g for g in faults if g.at_s <= f.at_s < g.at_s + max(g.heal_after_s, 1e-9)] for f in faults
    ]


def test_the_same_seed_gives_the_same_schedule_and_seeds_differ() -> None:
    first = schedule(42, duration_s=DURATION_S, masters=3, workers=2)
    again = schedule(42, duration_s=DURATION_S, masters=["m1", "m2", "m3"], workers=["w1", "w2"])
    assert first == again
    assert [f.describe() for f in first] == [f.describe() for f in again]
    others = {
        tuple(f.describe() for f in schedule(s, duration_s=DURATION_S, masters=3, workers=2))
        for s in SEEDS
    }
    assert len(others) == len(SEEDS)


def test_every_kind_is_drawn_and_kinds_can_be_chosen() -> None:
    drawn = {
        f.kind for s in SEEDS for f in schedule(s, duration_s=DURATION_S, masters=3, workers=2)
    }
    assert drawn == set(KINDS)
    only = schedule(1, duration_s=DURATION_S, masters=3, workers=2, kinds=["loss", "delay"])
    assert only and {f.kind for f in only} <= {"loss", "delay"}


def test_a_majority_of_masters_stays_up_and_splits_do_not_overlap() -> None:
    for seed in SEEDS:
        for masters in (3, 5):
            faults = schedule(seed, duration_s=DURATION_S, masters=masters, workers=2)
            for active in _overlapping(faults):
                impaired = [f for f in active if f.kind in MASTER_IMPAIRING]
                assert len(impaired) <= (masters - 1) // 2, (seed, [f.describe() for f in active])
                assert sum(f.kind == "membership" for f in active) <= 1
                changes = any(f.kind == "membership" for f in active)
                assert not (changes and any(f.kind in SPLITS for f in active)), (seed, active)
                assert sum(f.kind in SPLITS for f in active) <= 1, (seed, active)
            assert all(f.at_s + f.heal_after_s <= DURATION_S for f in faults)
            assert faults == sorted(faults, key=lambda f: f.at_s)


def test_a_single_master_gets_no_fault_that_needs_a_quorum() -> None:
    for seed in SEEDS:
        kinds = {f.kind for f in schedule(seed, duration_s=DURATION_S, masters=1, workers=1)}
        assert not kinds & (MASTER_IMPAIRING | SPLITS | {"transfer-leader"})


def test_a_majority_partition_puts_every_bystander_on_one_side() -> None:
    sides = []
    for seed in SEEDS:
        faults = schedule(seed, duration_s=DURATION_S, masters=3, workers=2, bystanders=["storage"])
        for f in faults:
            if f.kind == "partition-majority":
                hosts = [*f.params["with_minority"], *f.params["with_majority"]]
                assert sorted(hosts) == ["storage", "w1", "w2"], f.describe()
                sides.append("storage" in f.params["with_minority"])
    assert set(sides) == {True, False}  # the storage host is cut off from the majority too
