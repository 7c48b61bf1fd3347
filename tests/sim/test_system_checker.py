"""The commit-durability check across a membership change (found by the system simulation:
`--model system --seed-base 2 --steps 2000` failed before the fix, a false alarm)."""

from __future__ import annotations

import pytest

from agentflow.raft import ConfState, Entry, HardState, MemoryStorage
from agentflow.testing.sim import InvariantViolationError, SafetyChecker

OLD = frozenset({"1", "2", "3"})
NEW = frozenset({"1", "2", "3", "4"})


def _storages(checker: SafetyChecker, last: dict[str, int]) -> dict[str, MemoryStorage]:
    out = {}
    for node, upto in last.items():
        storage = MemoryStorage(conf_state=ConfState(voters=OLD))
        entries = [Entry(term=1, index=i, data=b"x") for i in range(1, upto + 1)]
        if entries:
            storage.append(entries)
        checker.register(node, storage)
        out[node] = storage
    return out


def test_a_commit_counted_among_the_voters_before_an_added_one_is_not_a_violation() -> None:
    # The leader counted index 3 on {1, 2} of {1, 2, 3}, then applied "add voter 4" before
    # persisting that commit: 2 of 4 now, but every majority of either set meets {1, 2}.
    checker = SafetyChecker()
    storages = _storages(checker, {"1": 3, "2": 3, "3": 0, "4": 0})
    checker.on_hard_state(
        "1", HardState(term=1, vote="1", commit=2), storages["1"], leading=True, voters=OLD
    )
    checker.on_hard_state(
        "1", HardState(term=1, vote="1", commit=3), storages["1"], leading=True, voters=NEW
    )


def test_a_commit_held_by_no_majority_of_either_configuration_still_fails() -> None:
    checker = SafetyChecker()
    storages = _storages(checker, {"1": 3, "2": 2, "3": 0, "4": 0})
    checker.on_hard_state(
        "1", HardState(term=1, vote="1", commit=2), storages["1"], leading=True, voters=OLD
    )
    with pytest.raises(InvariantViolationError, match="durable only on"):
        checker.on_hard_state(
            "1", HardState(term=1, vote="1", commit=3), storages["1"], leading=True, voters=NEW
        )
