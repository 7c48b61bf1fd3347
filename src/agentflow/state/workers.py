"""Worker commands: register (and reconcile), disconnect, loss, drain, deregister.

The workers themselves are the :class:`~agentflow.state.workertable.WorkerTable`'s; what these
commands do beyond it is to the tasks a worker held (requeued when it is lost or no longer runs
them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentflow.errors import ConflictError, NotFoundError
from agentflow.state.commands import (
    Command,
    DeregisterWorker,
    MarkWorkersLost,
    RegisterWorker,
    SetWorkerDraining,
    WorkerDisconnected,
)
from agentflow.state.records import TaskStatus, WorkerState
from agentflow.state.tasks import requeue_lost
from agentflow.state.workertable import admits

if TYPE_CHECKING:
    from agentflow.state.handlers import Handler
    from agentflow.state.machine import StateMachine

__all__ = [
    "HANDLERS",
    "admits",
    "deregister",
    "disconnected",
    "mark_lost",
    "register",
    "set_draining",
]


def register(sm: StateMachine, index: int, cmd: RegisterWorker) -> dict[str, Any]:
    """(Re)register a worker and reconcile what it runs with what the state says.

    Attempts the state gave this worker but that it no longer runs are requeued; attempts it
    runs that are superseded (or unknown) are returned under ``"cancel"`` for the shell to kill.
    A new instance (another secret) ends the drain the previous one asked for itself; an
    operator's drain stays, and ``"drain"`` tells the shell which one holds.
    A session that may not take the worker's id (see :func:`admits`) changes nothing.
    """
    if not sm.workers.admits(cmd.worker_id, cmd.secret_hash):
        raise ConflictError(
            f"worker id {cmd.worker_id} is held by another live instance",
            worker_id=cmd.worker_id,
        )
    worker = sm.workers.register(cmd)
    reported = dict(cmd.running)
    for task_id, token in list(worker.running.items()):
        if reported.get(task_id) != token:
            del worker.running[task_id]
            task = sm.tasks.get(task_id)
            if task is not None and task.fencing_token == token:
                _lose_attempt(sm, index, cmd.now_ms, task_id)
    cancel = [
        (task_id, token) for task_id, token in cmd.running if worker.running.get(task_id) != token
    ]
    worker.last_seen_at = cmd.now_ms
    worker.lost_at = None
    state = WorkerState.DRAINING if worker.draining else WorkerState.ACTIVE
    sm.workers.set_state(worker, state, index)
    sm.workers.refresh(worker, index)
    return {"worker_id": worker.id, "cancel": cancel, "drain": worker.drain.value}


def _lose_attempt(sm: StateMachine, index: int, now_ms: int, task_id: str) -> None:
    task = sm.tasks[task_id]
    if task.status in (TaskStatus.ASSIGNED, TaskStatus.RUNNING) or task.cancel_requested:
        requeue_lost(sm, index, now_ms, task)
        task.cancel_requested = False


def disconnected(sm: StateMachine, index: int, cmd: WorkerDisconnected) -> None:
    worker = sm.workers.get(cmd.worker_id)
    if worker is not None and worker.state is not WorkerState.LOST:
        worker.last_seen_at = cmd.now_ms
        sm.workers.set_state(worker, WorkerState.OFFLINE, index)


def mark_lost(sm: StateMachine, index: int, cmd: MarkWorkersLost) -> list[str]:
    """Declare workers lost; every attempt they held is requeued. Returns the requeued ids."""
    requeued: list[str] = []
    for worker_id in cmd.worker_ids:
        worker = sm.workers.get(worker_id)
        if worker is None or worker.state is WorkerState.LOST:
            continue
        for task_id, token in list(worker.running.items()):
            task = sm.tasks.get(task_id)
            if task is not None and task.fencing_token == token:
                _lose_attempt(sm, index, cmd.now_ms, task_id)
                requeued.append(task_id)
        sm.workers.lost(worker, cmd.now_ms, index)
    return requeued


def set_draining(sm: StateMachine, index: int, cmd: SetWorkerDraining) -> str:
    """Drain or activate a worker. A worker's own drain never weakens an operator's."""
    return sm.workers.drain(
        cmd.worker_id, draining=cmd.draining, by_worker=cmd.by_worker, index=index
    )


def deregister(sm: StateMachine, index: int, cmd: DeregisterWorker) -> str:
    worker = sm.workers.get(cmd.worker_id)
    if worker is None:
        raise NotFoundError(f"no worker {cmd.worker_id}", worker_id=cmd.worker_id)
    if worker.running and not cmd.force:
        raise ConflictError(
            f"worker {worker.id} runs {len(worker.running)} task(s); drain it or force",
            worker_id=worker.id,
        )
    mark_lost(sm, index, MarkWorkersLost(now_ms=cmd.now_ms, worker_ids=[worker.id]))
    return sm.workers.depart(worker.id, cmd.now_ms).id


HANDLERS: dict[type[Command], Handler] = {
    RegisterWorker: register,
    WorkerDisconnected: disconnected,
    MarkWorkersLost: mark_lost,
    SetWorkerDraining: set_draining,
    DeregisterWorker: deregister,
}
