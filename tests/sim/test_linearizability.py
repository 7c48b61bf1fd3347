"""The linearizability checker on hand-written histories, then on the simulated read paths."""

from __future__ import annotations

import pytest

from agentflow.testing.linearizability import (
    CheckResult,
    History,
    Operation,
    OpKind,
    Verdict,
    check_history,
)
from agentflow.testing.sim import ReadMode, SimConfig, run_seed


def put(client: int, key: str, value: str, start: int, end: int | None) -> Operation:
    return Operation(
        client=client, kind=OpKind.PUT, key=key, value=value, invoke_ms=start, return_ms=end
    )


def get(client: int, key: str, seen: str | None, start: int, end: int | None) -> Operation:
    return Operation(
        client=client, kind=OpKind.GET, key=key, result=seen, invoke_ms=start, return_ms=end
    )


def cas(
    client: int, key: str, old: str | None, new: str, ok: bool | None, start: int, end: int | None
) -> Operation:
    return Operation(
        client=client,
        kind=OpKind.CAS,
        key=key,
        expected=old,
        value=new,
        result=ok,
        invoke_ms=start,
        return_ms=end,
    )


def verdict(*ops: Operation) -> Verdict:
    return check_history(ops).verdict


def test_empty_history_is_linearizable() -> None:
    assert verdict() is Verdict.LINEARIZABLE


def test_sequential_put_then_get_sees_the_write() -> None:
    assert verdict(put(1, "k", "a", 0, 5), get(2, "k", "a", 6, 8)) is Verdict.LINEARIZABLE


def test_read_of_an_absent_key_is_none() -> None:
    assert verdict(get(1, "k", None, 0, 1)) is Verdict.LINEARIZABLE
    assert verdict(get(1, "k", "a", 0, 1)) is Verdict.NOT_LINEARIZABLE


def test_stale_read_after_a_completed_write_is_caught() -> None:
    # c1 writes a then b, both acknowledged; c2 then reads a: a stale read.
    history = (
        put(1, "k", "a", 0, 2),
        put(1, "k", "b", 3, 5),
        get(2, "k", "a", 6, 7),
    )
    result = check_history(history)
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    assert result.key == "k"
    assert "get(k)" in result.explanation


def test_concurrent_read_may_see_either_value() -> None:
    for seen in ("a", "b"):
        history = (put(1, "k", "a", 0, 2), put(1, "k", "b", 3, 10), get(2, "k", seen, 4, 6))
        assert verdict(*history) is Verdict.LINEARIZABLE


def test_reads_cannot_go_back_in_time_while_a_write_is_in_flight() -> None:
    # The write of b overlaps both reads, but once one read saw b a later read cannot see a.
    history = (
        put(1, "k", "a", 0, 1),
        put(1, "k", "b", 2, 20),
        get(2, "k", "b", 3, 4),
        get(3, "k", "a", 5, 6),
    )
    assert verdict(*history) is Verdict.NOT_LINEARIZABLE


def test_write_that_never_returned_may_have_happened() -> None:
    history = (put(1, "k", "a", 0, None), get(2, "k", "a", 50, 51), get(2, "k", "a", 60, 61))
    assert verdict(*history) is Verdict.LINEARIZABLE


def test_write_that_never_returned_may_have_not_happened() -> None:
    history = (put(1, "k", "a", 0, None), get(2, "k", None, 50, 51))
    assert verdict(*history) is Verdict.LINEARIZABLE


def test_write_that_never_returned_takes_effect_once_not_twice() -> None:
    # Seen, then overwritten, then seen again: an unacknowledged write cannot reappear.
    history = (
        put(1, "k", "a", 0, None),
        get(2, "k", "a", 10, 11),
        put(2, "k", "b", 12, 13),
        get(2, "k", "a", 14, 15),
    )
    assert verdict(*history) is Verdict.NOT_LINEARIZABLE


def test_write_cannot_take_effect_before_it_was_invoked() -> None:
    history = (get(2, "k", "a", 0, 1), put(1, "k", "a", 5, None))
    assert verdict(*history) is Verdict.NOT_LINEARIZABLE


def test_compare_and_set_success_and_failure() -> None:
    ok = (put(1, "k", "a", 0, 1), cas(2, "k", "a", "b", True, 2, 3), get(3, "k", "b", 4, 5))
    assert verdict(*ok) is Verdict.LINEARIZABLE
    refused = (put(1, "k", "a", 0, 1), cas(2, "k", "x", "b", False, 2, 3), get(3, "k", "a", 4, 5))
    assert verdict(*refused) is Verdict.LINEARIZABLE


def test_two_winning_compare_and_sets_on_one_value_are_caught() -> None:
    history = (
        put(1, "k", "a", 0, 1),
        cas(2, "k", "a", "b", True, 2, 10),
        cas(3, "k", "a", "c", True, 2, 10),
    )
    assert verdict(*history) is Verdict.NOT_LINEARIZABLE


def test_compare_and_set_that_lies_about_failing_is_caught() -> None:
    history = (put(1, "k", "a", 0, 1), cas(2, "k", "a", "b", False, 2, 3))
    assert verdict(*history) is Verdict.NOT_LINEARIZABLE


def test_pending_compare_and_set_can_explain_a_read() -> None:
    history = (put(1, "k", "a", 0, 1), cas(2, "k", "a", "b", None, 2, None), get(3, "k", "b", 9, 9))
    assert verdict(*history) is Verdict.LINEARIZABLE


def test_keys_are_independent_registers() -> None:
    history = (put(1, "x", "a", 0, 1), put(1, "y", "b", 2, 3), get(2, "x", "a", 4, 5))
    assert verdict(*history) is Verdict.LINEARIZABLE
    history = (put(1, "x", "a", 0, 1), get(2, "y", "a", 4, 5))
    result = check_history(history)
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    assert result.key == "y"


def test_operations_touching_at_one_instant_are_concurrent() -> None:
    # A return and an invocation at the same simulated millisecond are not ordered.
    history = (put(1, "k", "a", 0, 5), get(2, "k", None, 5, 6))
    assert verdict(*history) is Verdict.LINEARIZABLE


def test_search_budget_is_reported_as_unknown_not_as_a_pass() -> None:
    # Many overlapping writes and reads: a tiny budget cannot settle it.
    ops = [put(c, "k", f"v{c}", 0, 100) for c in range(12)]
    ops.append(get(99, "k", "v3", 101, 102))
    result = check_history(ops, max_states=5)
    assert result.verdict is Verdict.UNKNOWN
    assert result.ok
    assert check_history(ops).verdict is Verdict.LINEARIZABLE


def test_many_concurrent_writers_are_checked_quickly() -> None:
    # 14 writers all overlapping, then one reader: memoization keeps this small.
    ops = [put(c, "k", f"v{c}", 0, 100) for c in range(14)]
    ops.append(get(99, "k", "v13", 101, 102))
    ops.append(get(99, "k", "v2", 103, 104))
    result = check_history(ops)
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    assert result.states_explored < 200_000


def test_history_recorder_keeps_open_operations_as_maybe() -> None:
    history = History()
    first = history.invoke(client=1, kind=OpKind.PUT, key="k", value="a", now_ms=0)
    history.complete(first, result=None, now_ms=3)
    history.invoke(client=2, kind=OpKind.PUT, key="k", value="b", now_ms=4)
    dropped = history.invoke(client=3, kind=OpKind.PUT, key="k", value="c", now_ms=4)
    history.fail(dropped)
    read = history.invoke(client=1, kind=OpKind.GET, key="k", now_ms=10)
    history.complete(read, result="b", now_ms=11)
    ops = history.operations()
    assert [op.returned for op in ops] == [True, True, False]
    result: CheckResult = check_history(ops)
    assert result.verdict is Verdict.LINEARIZABLE
    # The failed write of c certainly did not happen, so reading c is not linearizable.
    bad = history.invoke(client=1, kind=OpKind.GET, key="k", now_ms=20)
    history.complete(bad, result="c", now_ms=21)
    assert check_history(history.operations()).verdict is Verdict.NOT_LINEARIZABLE


# -- the simulated read paths -------------------------------------------------------------

SEEDS = range(40)


@pytest.mark.sim
def test_read_index_path_is_linearizable_under_faults() -> None:
    for seed in SEEDS:
        result = run_seed(SimConfig(seed=seed, steps=2000))
        assert result.ok, result.report()


@pytest.mark.sim
@pytest.mark.parametrize("mode", [ReadMode.FOLLOWER_LOCAL, ReadMode.LEADER_LOCAL])
def test_broken_read_path_is_caught(mode: ReadMode) -> None:
    # Same seeds, same faults: only the read path differs from the test above.
    caught = [
        result
        for seed in SEEDS
        if not (result := run_seed(SimConfig(seed=seed, steps=2000, read_mode=mode))).ok
    ]
    assert caught, f"no seed caught reads served by {mode.value}"
    for result in caught:
        assert result.failure is not None
        assert "linearizability" in result.failure, result.report()
