"""Worker commands: register (and reconcile), disconnect, loss, drain, deregister."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentflow.errors import ConflictError, NotFoundError
from agentflow.state.commands import (
    DeregisterWorker,
    MarkWorkersLost,
    RegisterWorker,
    SetWorkerDraining,
    WorkerDisconnected,
)
from agentflow.state.events import WorkerChanged
from agentflow.state.records import Drain, TaskStatus, WorkerRecord, WorkerState
from agentflow.state.tasks import requeue_lost

if TYPE_CHECKING:
    from agentflow.state.machine import StateMachine

__all__ = [
    "admits",
    "deregister",
    "disconnected",
    "mark_lost",
    "register",
    "set_draining",
]


def admits(worker: WorkerRecord | None, secret_hash: str) -> bool:
    """May a session holding ``secret_hash`` register as ``worker``?

    The instance that holds the worker's secret always may (it resumes). Anyone else only once
    the id holds nothing: unknown, declared lost (its attempts were requeued), offline with no
    attempt, or registered before session secrets existed.
    """
    if worker is None or not worker.secret_hash or secret_hash == worker.secret_hash:
        return True
    if worker.state is WorkerState.LOST:
        return True
    return worker.state is WorkerState.OFFLINE and not worker.running


def register(sm: StateMachine, index: int, cmd: RegisterWorker) -> dict[str, Any]:
    """(Re)register a worker and reconcile what it runs with what the state says.

    Attempts the state gave this worker but that it no longer runs are requeued; attempts it
    runs that are superseded (or unknown) are returned under ``"cancel"`` for the shell to kill.
    A new instance (another secret) ends the drain the previous one asked for itself; an
    operator's drain stays, and ``"drain"`` tells the shell which one holds.
    A session that may not take the worker's id (see :func:`admits`) changes nothing.
    """
    worker = sm.workers.get(cmd.worker_id)
    if not admits(worker, cmd.secret_hash):
        raise ConflictError(
            f"worker id {cmd.worker_id} is held by another live instance",
            worker_id=cmd.worker_id,
        )
    if worker is None:
        worker = WorkerRecord(
            id=cmd.worker_id,
            group=cmd.group,
            slots=cmd.slots,
            resources=dict(cmd.resources),
            labels=dict(cmd.labels),
            hostname=cmd.hostname,
            registered_at=cmd.now_ms,
            prefetch=cmd.prefetch,
            gpus=list(cmd.gpus),
            secret_hash=cmd.secret_hash,
            pickled_functions=cmd.pickled_functions,
        )
        sm.workers[worker.id] = worker
    else:
        if cmd.secret_hash != worker.secret_hash and worker.drain is Drain.WORKER:
            worker.drain = Drain.NONE  # the instance that asked for it has ended
        worker.group = cmd.group
        worker.slots = cmd.slots
        worker.resources = dict(cmd.resources)
        worker.labels = dict(cmd.labels)
        worker.hostname = cmd.hostname
        worker.prefetch = cmd.prefetch
        worker.gpus = list(cmd.gpus)
        worker.secret_hash = cmd.secret_hash
        worker.pickled_functions = cmd.pickled_functions
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
    _set_state(sm, worker, WorkerState.DRAINING if worker.draining else WorkerState.ACTIVE, index)
    sm.refresh_worker(worker, index)
    return {"worker_id": worker.id, "cancel": cancel, "drain": worker.drain.value}


def _lose_attempt(sm: StateMachine, index: int, now_ms: int, task_id: str) -> None:
    task = sm.tasks[task_id]
    if task.status in (TaskStatus.ASSIGNED, TaskStatus.RUNNING) or task.cancel_requested:
        requeue_lost(sm, index, now_ms, task)
        task.cancel_requested = False


def _set_state(sm: StateMachine, worker: WorkerRecord, state: WorkerState, index: int) -> None:
    if worker.state is not state:
        worker.state = state
        sm.events.append(WorkerChanged(index=index, worker_id=worker.id, state=state.value))


def disconnected(sm: StateMachine, index: int, cmd: WorkerDisconnected) -> None:
    worker = sm.workers.get(cmd.worker_id)
    if worker is not None and worker.state is not WorkerState.LOST:
        worker.last_seen_at = cmd.now_ms
        _set_state(sm, worker, WorkerState.OFFLINE, index)


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
        worker.running.clear()
        worker.lost_at = cmd.now_ms
        _set_state(sm, worker, WorkerState.LOST, index)
    return requeued


def set_draining(sm: StateMachine, index: int, cmd: SetWorkerDraining) -> str:
    """Drain or activate a worker. A worker's own drain never weakens an operator's."""
    worker = sm.workers.get(cmd.worker_id)
    if worker is None:
        raise NotFoundError(f"no worker {cmd.worker_id}", worker_id=cmd.worker_id)
    if not cmd.draining:
        worker.drain = Drain.NONE
    elif not cmd.by_worker:
        worker.drain = Drain.OPERATOR
    elif worker.drain is Drain.NONE:
        worker.drain = Drain.WORKER
    if worker.state in (WorkerState.ACTIVE, WorkerState.BUSY, WorkerState.DRAINING):
        state = WorkerState.DRAINING if worker.draining else WorkerState.ACTIVE
        _set_state(sm, worker, state, index)
        sm.refresh_worker(worker, index)
    return worker.state.value


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
    del sm.workers[worker.id]
    sm.departed.append(
        {
            "id": worker.id,
            "group": worker.group,
            "hostname": worker.hostname,
            "registered_at": worker.registered_at,
            "lost_at": worker.lost_at,
            "departed_at": cmd.now_ms,
            "completed": worker.completed,
            "failed": worker.failed,
        }
    )
    return worker.id
