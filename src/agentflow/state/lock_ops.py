"""Lock commands applied to the state machine's :class:`LockTable`.

Sessions are strings. An agent's session is any name it picks; a task attempt's is
``task:<task id>:<fencing token>``, accepted only while that attempt is live and ended by the
state machine when the attempt ends (finished, cancelled, or its worker lost).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentflow.errors import StaleTokenError, ValidationError
from agentflow.state.commands import (
    AcquireLock,
    CancelLockWait,
    Command,
    EndLockSession,
    ExpireLocks,
    ForceReleaseLock,
    RearmLocks,
    ReleaseLock,
    RenewLock,
)
from agentflow.state.locks import TASK_SESSION_PREFIX, Grant, LockChanges, Waiting, task_session
from agentflow.state.records import TaskStatus

if TYPE_CHECKING:
    from agentflow.state.handlers import Handler
    from agentflow.state.machine import StateMachine

__all__ = [
    "HANDLERS",
    "TASK_SESSION_PREFIX",
    "acquire",
    "attempt_ended",
    "cancel_wait",
    "end_session",
    "expire",
    "force_release",
    "rearm",
    "release",
    "renew",
    "task_session",
]

_LIVE = (TaskStatus.ASSIGNED, TaskStatus.RUNNING)


def _check_task_session(sm: StateMachine, session: str) -> None:
    task_id, _, token = session[len(TASK_SESSION_PREFIX) :].rpartition(":")
    if not task_id or not token.isdigit():
        raise ValidationError(f"task session {session!r} is not task:<task id>:<fencing token>")
    task = sm.tasks.get(task_id)
    if (
        task is None
        or task.fencing_token != int(token)
        or task.status not in _LIVE
        or task.cancel_requested
    ):
        raise StaleTokenError(f"attempt {token} of task {task_id} is not running", task_id=task_id)


def acquire(sm: StateMachine, index: int, cmd: AcquireLock) -> Grant | Waiting:
    if cmd.session.startswith(TASK_SESSION_PREFIX):
        _check_task_session(sm, cmd.session)
    return sm.locks.acquire(
        cmd.name,
        cmd.session,
        mode=cmd.mode,
        limit=cmd.limit,
        ttl_ms=cmd.ttl_ms,
        wait=cmd.wait,
        wait_timeout_ms=cmd.wait_timeout_ms,
        request_id=cmd.request_id,
        owner=cmd.owner,
        metadata=cmd.metadata,
        now_ms=cmd.now_ms,
        index=index,
    )


def renew(sm: StateMachine, index: int, cmd: RenewLock) -> Grant:
    return sm.locks.renew(cmd.name, cmd.session, cmd.token, ttl_ms=cmd.ttl_ms, now_ms=cmd.now_ms)


def release(sm: StateMachine, index: int, cmd: ReleaseLock) -> LockChanges:
    return sm.locks.release(cmd.name, cmd.session, cmd.token, index=index, now_ms=cmd.now_ms)


def force_release(sm: StateMachine, index: int, cmd: ForceReleaseLock) -> LockChanges:
    return sm.locks.force_release(cmd.name, index=index, now_ms=cmd.now_ms, reason=cmd.reason)


def cancel_wait(sm: StateMachine, index: int, cmd: CancelLockWait) -> LockChanges:
    return sm.locks.cancel_wait(cmd.name, cmd.session, index=index, now_ms=cmd.now_ms)


def end_session(sm: StateMachine, index: int, cmd: EndLockSession) -> LockChanges:
    return sm.locks.session_ended(cmd.session, index=index, now_ms=cmd.now_ms)


def expire(sm: StateMachine, index: int, cmd: ExpireLocks) -> LockChanges:
    return sm.locks.expire(now_ms=cmd.now_ms, index=index)


def rearm(sm: StateMachine, index: int, cmd: RearmLocks) -> int:
    sm.locks.rearm(now_ms=cmd.now_ms)
    return sum(len(sm.locks.holders(n)) for n in sm.locks.names())


def attempt_ended(
    sm: StateMachine, index: int, now_ms: int, task_id: str, fencing_token: int, *, lost: bool
) -> None:
    """A task attempt is over: its session's locks go (``lost`` arms the lock-delay)."""
    session = task_session(task_id, fencing_token)
    if sm.locks.held_by(session) or sm.locks.waiting_for(session) is not None:
        sm.locks.session_ended(session, index=index, now_ms=now_ms, lost=lost)


HANDLERS: dict[type[Command], Handler] = {
    AcquireLock: acquire,
    RenewLock: renew,
    ReleaseLock: release,
    ForceReleaseLock: force_release,
    CancelLockWait: cancel_wait,
    EndLockSession: end_session,
    ExpireLocks: expire,
    RearmLocks: rearm,
}
