"""The ready queue orders by static key: priority, then age, then retries, FIFO on ties."""

from hypothesis import given
from hypothesis import strategies as st

from agentflow.state.queue import PriorityPolicy, ReadyQueue
from agentflow.state.records import Priority

POLICY = PriorityPolicy()


def order(q: ReadyQueue, group: str = "default") -> list[str]:
    return list(q.ordered(group))


def test_levels_order_urgent_first() -> None:
    q = ReadyQueue()
    for i, level in enumerate([Priority.LOW, Priority.MEDIUM, Priority.URGENT, Priority.HIGH]):
        q.push("default", level.value, POLICY.static_key(level, 1000 + i, 0))
    assert order(q) == ["urgent", "high", "medium", "low"]


def test_fifo_on_equal_keys() -> None:
    q = ReadyQueue()
    for name in ["a", "b", "c"]:
        q.push("default", name, POLICY.static_key(Priority.MEDIUM, 5000, 0))
    assert order(q) == ["a", "b", "c"]


def test_old_low_overtakes_new_high_after_configured_time() -> None:
    # low=250, high=750, +10/s: the low task must wait 50 s to tie, so after 51 s it leads.
    q = ReadyQueue()
    q.push("default", "old-low", POLICY.static_key(Priority.LOW, 0, 0))
    q.push("default", "new-high", POLICY.static_key(Priority.HIGH, 49_000, 0))
    assert order(q) == ["new-high", "old-low"]
    q2 = ReadyQueue()
    q2.push("default", "old-low", POLICY.static_key(Priority.LOW, 0, 0))
    q2.push("default", "new-high", POLICY.static_key(Priority.HIGH, 51_000, 0))
    assert order(q2) == ["old-low", "new-high"]


def test_retries_lower_the_score() -> None:
    q = ReadyQueue()
    q.push("default", "retried", POLICY.static_key(Priority.MEDIUM, 0, 1))
    q.push("default", "fresh", POLICY.static_key(Priority.MEDIUM, 0, 0))
    assert order(q) == ["fresh", "retried"]


def test_remove_and_reprioritise_are_lazy_but_exact() -> None:
    q = ReadyQueue()
    for i in range(10):
        q.push("default", f"t{i}", POLICY.static_key(Priority.MEDIUM, i, 0))
    q.remove("default", "t0")
    q.push("default", "t9", POLICY.static_key(Priority.URGENT, 9, 0))
    assert order(q)[:2] == ["t9", "t1"]
    assert len(q) == 9
    assert "t0" not in q


def test_groups_are_separate() -> None:
    q = ReadyQueue()
    q.push("gpu", "g", POLICY.static_key(Priority.LOW, 0, 0))
    q.push("default", "d", POLICY.static_key(Priority.URGENT, 0, 0))
    assert order(q, "gpu") == ["g"]
    assert sorted(q.groups()) == ["default", "gpu"]


@given(
    st.lists(
        st.tuples(st.sampled_from(list(Priority)), st.integers(0, 10**7), st.integers(0, 5)),
        max_size=60,
    ),
    st.sets(st.integers(0, 59)),
)
def test_walk_matches_a_full_sort(items: list[tuple[Priority, int, int]], gone: set[int]) -> None:
    q = ReadyQueue()
    keyed = []
    for i, (level, at, retries) in enumerate(items):
        key = POLICY.static_key(level, at, retries)
        q.push("default", f"t{i}", key)
        keyed.append((key, i))
    for i in gone:
        if i < len(items):
            q.remove("default", f"t{i}")
    expected = [f"t{i}" for key, i in sorted(keyed) if i not in gone]
    assert order(q) == expected
