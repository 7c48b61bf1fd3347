"""Lock commands through the replicated state machine: log-index tokens, task sessions, events."""

from agentflow.errors import StaleTokenError
from agentflow.state import StateMachine
from agentflow.state.commands import (
    AcquireLock,
    AssignTasks,
    CancelLockWait,
    EndLockSession,
    ExpireLocks,
    ForceReleaseLock,
    MarkWorkersLost,
    RearmLocks,
    ReleaseLock,
    RenewLock,
    SubmitTasks,
)
from agentflow.state.events import LockChanged
from agentflow.state.lock_ops import task_session
from agentflow.state.locks import Grant, LockLimits, Waiting
from tests.state.test_machine import Log, done, new, worker


def kinds(sm: StateMachine) -> list[tuple[str, str, str]]:
    return [(e.kind, e.name, e.session) for e in sm.drain_events() if isinstance(e, LockChanged)]


def test_tokens_are_log_indexes_and_release_wakes_the_next_waiter() -> None:
    log = Log()
    a = log(AcquireLock(now_ms=0, name="x", session="a", ttl_ms=1000))
    assert isinstance(a, Grant) and a.token == 1
    b = log(AcquireLock(now_ms=1, name="x", session="b", ttl_ms=1000, wait=True))
    assert isinstance(b, Waiting)
    assert kinds(log.sm) == [("granted", "x", "a"), ("waiting", "x", "b")]
    log(ReleaseLock(now_ms=2, name="x", session="a", token=1))
    (grant,) = log.sm.locks.holders("x")
    assert (grant.session, grant.token) == ("b", 3)
    assert kinds(log.sm) == [("released", "x", "a"), ("granted", "x", "b")]
    refused = log(ReleaseLock(now_ms=3, name="x", session="a", token=1))
    assert isinstance(refused, StaleTokenError)


def test_expiry_is_never_early_and_rearm_gives_the_full_ttl_again() -> None:
    log = Log()
    log(AcquireLock(now_ms=0, name="x", session="a", ttl_ms=1000))
    assert log.sm.locks.next_deadline_ms() == 1000
    log(ExpireLocks(now_ms=999))
    assert log.sm.locks.holders("x")
    log(RearmLocks(now_ms=900))  # a new leader: 1000 ms from its clock
    log(ExpireLocks(now_ms=1500))
    assert log.sm.locks.holders("x")
    log(ExpireLocks(now_ms=1900))
    assert not log.sm.locks.holders("x")
    assert log.sm.locks.next_deadline_ms() is None


def test_renew_and_force_release_are_recorded() -> None:
    log = Log()
    log(AcquireLock(now_ms=0, name="x", session="a", ttl_ms=1000))
    renewed = log(RenewLock(now_ms=500, name="x", session="a", token=1, ttl_ms=2000))
    assert isinstance(renewed, Grant) and renewed.expiry_ms == 2500
    log(ForceReleaseLock(now_ms=600, name="x", reason="stuck deploy"))
    forced = [e for e in log.sm.locks.history if e.kind == "forced"]
    assert forced[0].detail == "stuck deploy"


def test_cancelled_wait_keeps_what_the_session_holds() -> None:
    log = Log()
    log(AcquireLock(now_ms=0, name="x", session="a", ttl_ms=1000))
    log(AcquireLock(now_ms=0, name="y", session="b", ttl_ms=1000))
    log(AcquireLock(now_ms=0, name="x", session="b", ttl_ms=1000, wait=True))
    log(CancelLockWait(now_ms=1, name="x", session="b"))
    assert log.sm.locks.waiting_for("b") is None
    assert [g.name for g in log.sm.locks.held_by("b")] == ["y"]
    log(EndLockSession(now_ms=2, session="b"))
    assert log.sm.locks.held_by("b") == []


def _running_task(log: Log) -> int:
    worker(log)
    log(SubmitTasks(now_ms=1, tasks=[new("t1")]))
    log(AssignTasks(now_ms=2, assignments=[("t1", "w1")]))
    token = log.sm.tasks["t1"].fencing_token
    assert token is not None
    return token


def test_a_task_attempt_holds_locks_until_it_finishes() -> None:
    log = Log()
    token = _running_task(log)
    session = task_session("t1", token)
    grant = log(AcquireLock(now_ms=3, name="x", session=session, ttl_ms=60_000))
    assert isinstance(grant, Grant)
    stale = log(AcquireLock(now_ms=3, name="y", session=task_session("t1", token - 1), ttl_ms=1))
    assert isinstance(stale, StaleTokenError)
    done(log, "t1", token)
    assert log.sm.locks.holders("x") == ()


def test_a_lost_worker_loses_its_attempts_locks_with_the_lock_delay() -> None:
    log = Log()
    log.sm = StateMachine(lock_limits=LockLimits(lock_delay_ms=5000))
    token = _running_task(log)
    log(AcquireLock(now_ms=3, name="x", session=task_session("t1", token), ttl_ms=60_000))
    log(MarkWorkersLost(now_ms=30_000, worker_ids=["w1"]))
    assert log.sm.locks.holders("x") == ()
    assert log.sm.locks.delayed_until("x") == 35_000
    late = log(AcquireLock(now_ms=31_000, name="x", session="other", ttl_ms=1000, wait=True))
    assert isinstance(late, Waiting)  # the lock-delay holds new grants back
    log(ExpireLocks(now_ms=35_000))
    assert [g.session for g in log.sm.locks.holders("x")] == ["other"]


def test_snapshot_carries_the_lock_table() -> None:
    log = Log()
    log(AcquireLock(now_ms=0, name="x", session="a", ttl_ms=1000, metadata={"why": "deploy"}))
    log(AcquireLock(now_ms=0, name="x", session="b", ttl_ms=1000, wait=True, wait_timeout_ms=50))
    copy = StateMachine()
    copy.restore(log.sm.snapshot())
    assert copy.digest() == log.sm.digest()
    assert copy.locks.holders("x")[0].metadata == {"why": "deploy"}
    assert copy.locks.next_deadline_ms() == 50
