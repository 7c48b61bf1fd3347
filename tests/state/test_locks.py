"""The lock table: mutual exclusion, FIFO waiters, fencing tokens, expiry, deadlock cycles."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from agentflow.errors import ConflictError, StaleTokenError, ValidationError
from agentflow.state.locks import Grant, LockEventKind, LockLimits, LockTable, Waiting

TTL = 1_000


def grant(table: LockTable, name: str, session: str, index: int, **kw: object) -> Grant:
    kw.setdefault("now_ms", 0)
    kw.setdefault("ttl_ms", TTL)
    got = table.acquire(name, session, index=index, **kw)  # type: ignore[arg-type]
    assert isinstance(got, Grant)
    return got


def wait(table: LockTable, name: str, session: str, index: int, **kw: object) -> Waiting:
    kw.setdefault("now_ms", 0)
    kw.setdefault("ttl_ms", TTL)
    got = table.acquire(name, session, wait=True, index=index, **kw)  # type: ignore[arg-type]
    assert isinstance(got, Waiting)
    return got


def test_exclusive_grants_exclude_each_other() -> None:
    t = LockTable()
    g = grant(t, "x", "a", 1)
    assert g.token == 1 and g.expiry_ms == TTL
    with pytest.raises(ConflictError) as err:
        t.acquire("x", "b", ttl_ms=TTL, now_ms=0, index=2)
    assert err.value.extra["holders"] == ["a"]
    assert [h.session for h in t.holders("x")] == ["a"]


def test_shared_grants_coexist_and_exclude_exclusive() -> None:
    t = LockTable()
    grant(t, "x", "a", 1, mode="shared")
    grant(t, "x", "b", 2, mode="shared")
    with pytest.raises(ConflictError):
        t.acquire("x", "c", ttl_ms=TTL, now_ms=0, index=3)
    grant(t, "y", "c", 4)
    with pytest.raises(ConflictError):
        t.acquire("y", "a", mode="shared", ttl_ms=TTL, now_ms=0, index=5)


def test_semaphore_never_over_limit() -> None:
    t = LockTable()
    for i, s in enumerate("abc", start=1):
        grant(t, "pool", s, i, limit=3)
    with pytest.raises(ConflictError):
        t.acquire("pool", "d", limit=3, ttl_ms=TTL, now_ms=0, index=4)
    with pytest.raises(ConflictError):  # a different limit for a live lock is refused
        t.acquire("pool", "d", limit=4, ttl_ms=TTL, now_ms=0, index=5)
    assert len(t.holders("pool")) == 3


def test_waiters_are_woken_in_fifo_order_one_at_a_time() -> None:
    t = LockTable()
    a = grant(t, "x", "a", 1)
    for i, s in enumerate("bcd", start=2):
        wait(t, "x", s, i)
    changes = t.release("x", "a", a.token, index=10, now_ms=5)
    assert [g.session for g in changes.granted] == ["b"]
    assert changes.granted[0].token == 10  # the index of the releasing command
    assert changes.granted[0].expiry_ms == 5 + TTL
    assert [w.session for w in t.waiters("x")] == ["c", "d"]
    b = changes.granted[0]
    assert [g.session for g in t.release("x", "b", b.token, index=11, now_ms=6).granted] == ["c"]


def test_shared_waiters_at_head_granted_together() -> None:
    t = LockTable()
    a = grant(t, "x", "a", 1)
    wait(t, "x", "r1", 2, mode="shared")
    wait(t, "x", "r2", 3, mode="shared")
    wait(t, "x", "w", 4)
    wait(t, "x", "r3", 5, mode="shared")
    changes = t.release("x", "a", a.token, index=6, now_ms=0)
    assert [g.session for g in changes.granted] == ["r1", "r2"]
    assert [w.session for w in t.waiters("x")] == ["w", "r3"]


def test_new_request_does_not_jump_the_queue() -> None:
    t = LockTable()
    grant(t, "x", "a", 1, mode="shared")
    wait(t, "x", "w", 2)
    with pytest.raises(ConflictError):  # shared would fit the holders, but a writer waits first
        t.acquire("x", "r", mode="shared", ttl_ms=TTL, now_ms=0, index=3)


def test_tokens_rise() -> None:
    t = LockTable()
    tokens = []
    for i in range(1, 6):
        g = grant(t, "x", f"s{i}", i * 3)
        tokens.append(g.token)
        t.release("x", g.session, g.token, index=i * 3 + 1, now_ms=0)
    assert tokens == sorted(set(tokens))
    with pytest.raises(ValidationError):
        t.acquire("x", "late", ttl_ms=TTL, now_ms=0, index=2)


def test_renew_and_expiry_never_early() -> None:
    t = LockTable()
    g = grant(t, "x", "a", 1, now_ms=0)
    assert t.expire(now_ms=TTL - 1, index=2).ended == ()
    renewed = t.renew("x", "a", g.token, ttl_ms=TTL, now_ms=TTL - 1)
    assert renewed.expiry_ms == 2 * TTL - 1 and renewed.token == g.token
    assert t.expire(now_ms=2 * TTL - 2, index=3).ended == ()
    changes = t.expire(now_ms=2 * TTL - 1, index=4)
    assert [e.session for e in changes.ended] == ["a"]
    assert t.holders("x") == ()
    assert t.history[-1].kind is LockEventKind.EXPIRED


def test_renew_after_expiry_time_refused() -> None:
    t = LockTable()
    g = grant(t, "x", "a", 1)
    with pytest.raises(StaleTokenError):
        t.renew("x", "a", g.token, ttl_ms=TTL, now_ms=TTL)


def test_release_with_stale_token_refused() -> None:
    t = LockTable()
    old = grant(t, "x", "a", 1)
    t.release("x", "a", old.token, index=2, now_ms=0)
    grant(t, "x", "a", 3)
    with pytest.raises(StaleTokenError):
        t.release("x", "a", old.token, index=4, now_ms=0)
    with pytest.raises(StaleTokenError):
        t.release("x", "b", 3, index=4, now_ms=0)
    assert len(t.holders("x")) == 1


def test_acquire_idempotent_by_request_id() -> None:
    t = LockTable()
    g = grant(t, "x", "a", 1, request_id="r1")
    again = t.acquire("x", "a", ttl_ms=TTL, request_id="r1", now_ms=1, index=2)
    assert again == g
    w = wait(t, "x", "b", 3, request_id="r2")
    assert t.acquire("x", "b", wait=True, ttl_ms=TTL, request_id="r2", now_ms=0, index=4) == w
    woken = t.release("x", "a", g.token, index=5, now_ms=0).granted[0]
    assert t.acquire("x", "b", wait=True, ttl_ms=TTL, request_id="r2", now_ms=0, index=6) == woken
    with pytest.raises(ValidationError):
        t.acquire("y", "b", ttl_ms=TTL, request_id="r2", now_ms=0, index=7)


def test_session_ended_releases_holds_and_waits() -> None:
    t = LockTable()
    grant(t, "x", "a", 1)
    grant(t, "y", "a", 2)
    wait(t, "x", "b", 3)
    grant(t, "z", "c", 4)
    wait(t, "z", "a", 5)
    changes = t.session_ended("a", index=6, now_ms=0)
    assert sorted(g.name for g in changes.ended) == ["x", "y"]
    assert [w.name for w in changes.dropped] == ["z"]
    assert [(g.name, g.session, g.token) for g in changes.granted] == [("x", "b", 6)]
    assert t.waiters("z") == () and t.names() == ["x", "z"]


def test_lock_delay_after_a_lost_holder() -> None:
    t = LockTable(LockLimits(lock_delay_ms=500))
    g = grant(t, "x", "a", 1)
    wait(t, "x", "b", 2)
    t.session_ended("a", index=3, now_ms=100, lost=True)
    assert t.holders("x") == ()
    with pytest.raises(ConflictError):
        t.acquire("x", "c", ttl_ms=TTL, now_ms=599, index=5)
    assert t.expire(now_ms=599, index=6).granted == ()
    woken = t.expire(now_ms=600, index=7).granted
    assert [(w.session, w.token) for w in woken] == [("b", 7)]
    t.release("x", "b", 7, index=8, now_ms=601)  # a clean release arms no delay
    assert grant(t, "x", "c", 9, now_ms=601).token == 9
    assert g.token == 1


def test_deadlock_cycle_of_two_refused() -> None:
    t = LockTable()
    grant(t, "x", "A", 1)
    grant(t, "y", "B", 2)
    wait(t, "y", "A", 3)
    with pytest.raises(ConflictError) as err:
        t.acquire("x", "B", wait=True, ttl_ms=TTL, now_ms=0, index=4)
    assert err.value.extra["cycle"] == ["B", "A"]
    assert err.value.extra["locks"] == ["x", "y"]
    assert t.waiters("x") == ()


def test_deadlock_cycle_of_three_refused() -> None:
    t = LockTable()
    for i, (s, n) in enumerate([("A", "x"), ("B", "y"), ("C", "z")], start=1):
        grant(t, n, s, i)
    wait(t, "y", "A", 4)
    wait(t, "z", "B", 5)
    with pytest.raises(ConflictError) as err:
        t.acquire("x", "C", wait=True, ttl_ms=TTL, now_ms=0, index=6)
    assert err.value.extra["cycle"] == ["C", "A", "B"]
    assert err.value.extra["locks"] == ["x", "y", "z"]
    wait(t, "x", "D", 7)  # no cycle: D holds nothing


def test_history_is_bounded_and_snapshot_round_trips() -> None:
    t = LockTable(LockLimits(history_max=4, lock_delay_ms=10))
    g = grant(t, "x", "a", 1, request_id="r")
    wait(t, "x", "b", 2, mode="shared", wait_timeout_ms=50)
    grant(t, "y", "c", 3)
    t.session_ended("c", index=4, now_ms=0, lost=True)
    assert len(t.history) == 4
    data = msgpack.unpackb(msgpack.packb(t.snapshot()), strict_map_key=False)
    copy = LockTable(LockLimits(history_max=4, lock_delay_ms=10))
    copy.restore(data)
    assert copy.snapshot() == t.snapshot()
    assert copy.release("x", "a", g.token, index=5, now_ms=1) == t.release(
        "x", "a", g.token, index=5, now_ms=1
    )
    assert copy.snapshot() == t.snapshot()


def test_wait_timeout_drops_the_waiter() -> None:
    t = LockTable()
    grant(t, "x", "a", 1)
    wait(t, "x", "b", 2, wait_timeout_ms=100)
    assert t.expire(now_ms=99, index=3).dropped == ()
    assert [w.session for w in t.expire(now_ms=100, index=4).dropped] == ["b"]
    assert t.waiters("x") == ()


# -- stateful ---------------------------------------------------------------------------------

SESSIONS = ["s0", "s1", "s2", "s3"]
NAMES = ["x", "y", "sem"]
LIMITS = {"x": 1, "y": 1, "sem": 2}


class LockTableMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.table = LockTable(LockLimits(lock_delay_ms=30))
        self.index = 0
        self.now_ms = 0
        self.issued: dict[str, list[int]] = {n: [] for n in NAMES}  # grant tokens, in order
        self.seen: set[tuple[str, str, int]] = set()
        self.fifo: dict[str, list[str]] = {n: [] for n in NAMES}  # sessions in join order

    def _step(self) -> int:
        self.index += 1
        return self.index

    def _note(self, grants: tuple[Grant, ...]) -> None:
        for g in grants:
            assert g.token == self.index
            if self.fifo[g.name]:
                assert self.fifo[g.name][0] == g.session, "woken out of FIFO order"
                self.fifo[g.name].pop(0)
            self.issued[g.name].append(g.token)
            self.seen.add((g.name, g.session, g.token))

    @rule(
        name=st.sampled_from(NAMES),
        session=st.sampled_from(SESSIONS),
        shared=st.booleans(),
        wait=st.booleans(),
        ttl_ms=st.integers(1, 100),
        wait_ms=st.none() | st.integers(1, 100),
    )
    def acquire(
        self, name: str, session: str, shared: bool, wait: bool, ttl_ms: int, wait_ms: int | None
    ) -> None:
        mode = "shared" if shared else "exclusive"
        try:
            got = self.table.acquire(
                name,
                session,
                mode=mode,
                limit=LIMITS[name],
                ttl_ms=ttl_ms,
                wait=wait,
                wait_timeout_ms=wait_ms,
                now_ms=self.now_ms,
                index=self._step(),
            )
        except ConflictError:
            return
        if isinstance(got, Grant):
            assert not self.fifo[name], "a new grant jumped the queue"
            self._note((got,))
        else:
            self.fifo[name].append(session)

    @rule(name=st.sampled_from(NAMES), data=st.data())
    def release(self, name: str, data: st.DataObject) -> None:
        holders = self.table.holders(name)
        if not holders:
            return
        g = data.draw(st.sampled_from(holders))
        self._note(
            self.table.release(
                name, g.session, g.token, index=self._step(), now_ms=self.now_ms
            ).granted
        )

    @rule(name=st.sampled_from(NAMES), session=st.sampled_from(SESSIONS), token=st.integers(0, 50))
    def release_stale(self, name: str, session: str, token: int) -> None:
        if any(g.session == session and g.token == token for g in self.table.holders(name)):
            return
        with pytest.raises(StaleTokenError):
            self.table.release(name, session, token, index=self._step(), now_ms=self.now_ms)

    @rule(dt=st.integers(0, 60))
    def tick(self, dt: int) -> None:
        self.now_ms += dt
        changes = self.table.expire(now_ms=self.now_ms, index=self._step())
        assert all(self.now_ms >= g.expiry_ms for g in changes.ended), "expired early"
        for w in changes.dropped:
            assert w.deadline_ms is not None and self.now_ms >= w.deadline_ms, "wait ended early"
            self.fifo[w.name].remove(w.session)
        self._note(changes.granted)

    @rule(name=st.sampled_from(NAMES), data=st.data(), ttl_ms=st.integers(1, 100))
    def renew(self, name: str, data: st.DataObject, ttl_ms: int) -> None:
        holders = [g for g in self.table.holders(name) if self.now_ms < g.expiry_ms]
        if holders:
            g = data.draw(st.sampled_from(holders))
            renewed = self.table.renew(name, g.session, g.token, ttl_ms=ttl_ms, now_ms=self.now_ms)
            assert renewed.token == g.token and renewed.expiry_ms == self.now_ms + ttl_ms

    @rule(name=st.sampled_from(NAMES), session=st.sampled_from(SESSIONS))
    def cancel_wait(self, name: str, session: str) -> None:
        if session in self.fifo[name]:
            self.fifo[name].remove(session)
        changes = self.table.cancel_wait(name, session, index=self._step(), now_ms=self.now_ms)
        self._note(changes.granted)

    @rule()
    def new_leader(self) -> None:
        before = {(g.name, g.session): g for n in NAMES for g in self.table.holders(n)}
        self.table.rearm(now_ms=self.now_ms)
        for n in NAMES:
            for g in self.table.holders(n):
                assert g.expiry_ms == self.now_ms + g.ttl_ms
                assert (g.name, g.session) in before

    @rule(session=st.sampled_from(SESSIONS), lost=st.booleans())
    def end_session(self, session: str, lost: bool) -> None:
        for queue in self.fifo.values():
            if session in queue:
                queue.remove(session)
        changes = self.table.session_ended(
            session, index=self._step(), now_ms=self.now_ms, lost=lost
        )
        self._note(changes.granted)

    @rule(name=st.sampled_from(NAMES))
    def force(self, name: str) -> None:
        if self.table.holders(name) or self.table.waiters(name):
            self._note(
                self.table.force_release(name, index=self._step(), now_ms=self.now_ms).granted
            )

    @invariant()
    def mutual_exclusion_and_limits(self) -> None:
        for name in NAMES:
            holders = self.table.holders(name)
            exclusive = [g for g in holders if g.mode == "exclusive"]
            assert len(exclusive) <= LIMITS[name]
            assert not (exclusive and len(exclusive) != len(holders)), "shared beside exclusive"
            assert len({g.session for g in holders}) == len(holders)

    @invariant()
    def tokens_rise(self) -> None:
        for tokens in self.issued.values():
            assert tokens == sorted(tokens)
        for name in NAMES:
            for g in self.table.holders(name):
                assert (name, g.session, g.token) in self.seen

    @invariant()
    def waiters_fifo(self) -> None:
        for name in NAMES:
            assert [w.session for w in self.table.waiters(name)] == self.fifo[name]

    @invariant()
    def wait_for_graph_acyclic(self) -> None:
        graph = self.table.wait_for_graph()
        state: dict[str, int] = {}

        def visit(node: str) -> None:
            state[node] = 1
            for nxt in graph.get(node, ()):
                assert state.get(nxt) != 1, f"wait-for cycle through {nxt}"
                if nxt not in state:
                    visit(nxt)
            state[node] = 2

        for node in graph:
            if node not in state:
                visit(node)

    @invariant()
    def next_deadline_is_exact(self) -> None:
        due = [g.expiry_ms for n in NAMES for g in self.table.holders(n)]
        due += [w.deadline_ms for n in NAMES for w in self.table.waiters(n) if w.deadline_ms]
        due += [
            self.table.delayed_until(n) for n in NAMES if self.table.delayed_until(n) > self.now_ms
        ]
        expected = min(due, default=None)
        got = self.table.next_deadline_ms()
        # A lock-delay already passed is still due until the next expire pass clears it.
        passed = {self.table.delayed_until(n) for n in NAMES} - {0}
        passed = {t for t in passed if t <= self.now_ms}
        assert got == expected or (got in passed and (expected is None or got < expected))

    @invariant()
    def snapshot_round_trips(self) -> None:
        copy = LockTable(self.table.limits)
        copy.restore(msgpack.unpackb(msgpack.packb(self.table.snapshot()), strict_map_key=False))
        assert copy.snapshot() == self.table.snapshot()


LockTableMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
test_lock_table_stateful = LockTableMachine.TestCase
